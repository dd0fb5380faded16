//! Storage: growing the broker volumes' claims, and refusing a resize the storage class
//! cannot do.

use super::*;

fn storage_class(api: &FakeApi, name: &str, expandable: bool) {
    api.insert(
        &coll(NS, "storageclasses"),
        json!({
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": { "name": name }, "provisioner": "example.com/disk",
            "allowVolumeExpansion": expandable
        }),
    );
}

fn claim_size(api: &FakeApi, name: &str) -> Value {
    api.get(&coll(NS, "persistentvolumeclaims"), name)
        .expect("pvc")["spec"]["resources"]["requests"]["storage"]
        .clone()
}

fn template_size(api: &FakeApi) -> Value {
    api.get(&coll(NS, "statefulsets"), "demo-broker")
        .expect("sts")["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]
        ["storage"]
        .clone()
}

#[tokio::test]
async fn a_larger_size_grows_the_claims_when_the_class_allows_expansion() {
    let (api, ctx) = ready_basic_cluster().await;
    storage_class(&api, "fast", true);
    edit_spec(&api, |spec| {
        spec["brokers"]["storage"]["size"] = json!("20Gi")
    });
    for pass in 0..3 {
        let action = reconcile_once(&api, &ctx)
            .await
            .unwrap_or_else(|e| panic!("pass {pass}: {e}: {:?}", std::error::Error::source(&e)));
        assert_eq!(action, Action::requeue(REQUEUE_READY), "pass {pass}");
    }
    for i in 0..3 {
        assert_eq!(claim_size(&api, &format!("data-demo-broker-{i}")), "20Gi");
    }
    assert_eq!(
        template_size(&api),
        "10Gi",
        "the immutable template is kept"
    );
    assert_eq!(
        events_with_reason(&api, "VolumeResized").len(),
        3,
        "one per claim, once"
    );
    assert_eq!(condition(&api, "Degraded")["status"], "False");
    // the volume driver reports the old capacity until it is done
    let progressing = condition(&api, "Progressing");
    assert_eq!(progressing["reason"], "VolumesResizing", "{progressing}");
    assert!(
        progressing["message"]
            .as_str()
            .unwrap_or("")
            .contains("data-demo-broker-0 (capacity 10Gi of 20Gi)"),
        "{progressing}"
    );
    for i in 0..3 {
        let name = format!("data-demo-broker-{i}");
        let mut pvc = api
            .get(&coll(NS, "persistentvolumeclaims"), &name)
            .expect("pvc");
        pvc["status"]["capacity"]["storage"] = json!("20Gi");
        api.insert(&coll(NS, "persistentvolumeclaims"), pvc);
    }
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "Progressing")["reason"], "UpToDate");
    let kc = api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc");
    assert_eq!(kc["status"]["observedGeneration"], 4);
}

#[tokio::test]
async fn a_resize_the_class_cannot_do_is_refused_without_wedging_the_cluster() {
    let (api, ctx) = ready_basic_cluster().await;
    storage_class(&api, "fast", false);
    edit_spec(&api, |spec| {
        spec["brokers"]["storage"]["size"] = json!("20Gi");
        spec["brokers"]["config"]["log.cleaner.backoff.ms"] = json!("1000");
    });
    for pass in 0..3 {
        reconcile_once(&api, &ctx)
            .await
            .unwrap_or_else(|e| panic!("pass {pass}: {e}: {:?}", std::error::Error::source(&e)));
    }
    assert_eq!(claim_size(&api, "data-demo-broker-0"), "10Gi");
    let degraded = condition(&api, "Degraded");
    assert_eq!(degraded["reason"], "StorageResizeRefused", "{degraded}");
    assert_eq!(degraded["observedGeneration"], 4);
    assert!(
        degraded["message"]
            .as_str()
            .unwrap_or("")
            .contains("allowVolumeExpansion"),
        "{degraded}"
    );
    assert_eq!(events_with_reason(&api, "StorageResizeRefused").len(), 1);
    // the rest of the spec still applies
    let sts = api
        .get(&coll(NS, "statefulsets"), "demo-broker")
        .expect("sts");
    let outdated =
        api.get(&coll(NS, "kafkaclusters"), "demo").expect("kc")["status"]["outdatedPods"].clone();
    assert!(sts["spec"]["template"].is_object());
    // the config change is rolled out: the operator restarted demo-broker-0 (deleted; nothing
    // recreates pods here), the others wait for it
    assert_eq!(
        outdated,
        json!(["demo-broker-1", "demo-broker-2"]),
        "{outdated}"
    );
    assert!(api.get(&coll(NS, "pods"), "demo-broker-0").is_none());

    // a changed class and a smaller size are refused too
    edit_spec(&api, |spec| {
        spec["brokers"]["storage"]["storageClassName"] = json!("slow")
    });
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(
        condition(&api, "Degraded")["reason"],
        "StorageClassChangeRefused"
    );
    edit_spec(&api, |spec| {
        spec["brokers"]["storage"]["storageClassName"] = json!("fast");
        spec["brokers"]["storage"]["size"] = json!("5Gi");
    });
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(
        condition(&api, "Degraded")["reason"],
        "StorageShrinkRefused"
    );
    edit_spec(&api, |spec| {
        spec["brokers"]["storage"]["size"] = json!("10Gi")
    });
    reconcile_once(&api, &ctx).await.expect("reconcile");
    assert_eq!(condition(&api, "Degraded")["status"], "False");
}
