//! The test API server itself (`common::fake_api` over `common::api_server`), through a kube
//! client over HTTP: a list's resourceVersion, a watch from it seeing ADDED, MODIFIED and DELETED
//! in order with its label selector applied, a watch without resourceVersion starting with the
//! current objects, 410 Gone for a resourceVersion older than the kept history, and lists across
//! all namespaces.

mod common;

use std::time::Duration;

use common::api_server::ApiServer;
use common::coll;
use common::fake_api::{watch::HISTORY, FakeApi};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

const NS: &str = "kafka";

async fn http_client(server: &ApiServer) -> (kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kubeconfig");
    server.kubeconfig(&path, NS);
    let kc = Kubeconfig::read_from(&path).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config");
    (kube::Client::try_from(cfg).expect("client"), dir)
}

fn cm(name: &str, labelled: bool) -> serde_json::Value {
    let labels = if labelled {
        json!({ "app": "x" })
    } else {
        json!({})
    };
    json!({ "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": { "name": name, "namespace": NS, "labels": labels }, "data": { "k": "1" } })
}

/// Type and name of a watch event.
fn seen(e: &WatchEvent<ConfigMap>) -> (String, String) {
    match e {
        WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap_or_default()),
        WatchEvent::Modified(o) => (
            "MODIFIED".into(),
            o.metadata.name.clone().unwrap_or_default(),
        ),
        WatchEvent::Deleted(o) => (
            "DELETED".into(),
            o.metadata.name.clone().unwrap_or_default(),
        ),
        other => (format!("{other:?}"), String::new()),
    }
}

#[tokio::test]
async fn watch_from_a_list_sees_every_later_change_of_matching_objects() {
    let server = ApiServer::start(FakeApi::default()).await;
    let (client, _dir) = http_client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    server
        .api
        .insert(&coll(NS, "configmaps"), cm("before", true));
    let list = cms
        .list(&ListParams::default().labels("app"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 1);
    let rv = list
        .metadata
        .resource_version
        .expect("list resourceVersion");

    let wp = WatchParams::default().labels("app").timeout(5);
    let mut events = cms.watch(&wp, &rv).await.expect("watch").boxed();
    server.api.insert(&coll(NS, "configmaps"), cm("a", true));
    server
        .api
        .insert(&coll(NS, "configmaps"), cm("unlabelled", false));
    let edit = json!({ "data": { "k": "2" } });
    cms.patch("a", &PatchParams::default(), &Patch::Merge(&edit))
        .await
        .expect("patch");
    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let mut got = Vec::new();
    while got.len() < 3 {
        let next = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await;
        let e = next.expect("event in time").expect("event").expect("open");
        got.push(seen(&e));
    }
    let want = [("ADDED", "a"), ("MODIFIED", "a"), ("DELETED", "a")];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(t, n)| ((*t).to_owned(), (*n).to_owned()))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn watch_without_version_starts_with_current_objects() {
    let server = ApiServer::start(FakeApi::default()).await;
    let (client, _dir) = http_client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    server.api.insert(&coll(NS, "configmaps"), cm("old", true));
    let wp = WatchParams::default().timeout(5);
    let mut events = cms.watch(&wp, "0").await.expect("watch").boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), events.try_next()).await;
    let first = first.expect("in time").expect("event").expect("open");
    assert_eq!(seen(&first), ("ADDED".to_owned(), "old".to_owned()));
}

#[tokio::test]
async fn watch_older_than_the_history_is_gone() {
    let server = ApiServer::start(FakeApi::default()).await;
    let (client, _dir) = http_client(&server).await;
    let cms: Api<ConfigMap> = Api::namespaced(client, NS);
    // versions 1..=HISTORY+2: the changes after version 1 are no longer all kept
    for i in 0..HISTORY + 2 {
        server
            .api
            .insert(&coll(NS, "configmaps"), cm(&format!("c{i}"), true));
    }
    let wp = WatchParams::default().timeout(5);
    match cms.watch(&wp, "1").await {
        Err(kube::Error::Api(s)) => assert_eq!((s.code, s.reason.as_str()), (410, "Expired")),
        Ok(_) => panic!("a watch from an evicted resourceVersion was accepted"),
        Err(e) => panic!("unexpected error {e}"),
    }
    let recent = (HISTORY / 2).to_string();
    assert!(
        cms.watch(&wp, &recent).await.is_ok(),
        "recent versions watch"
    );
}

#[tokio::test]
async fn all_namespaces_paths_list_every_namespace() {
    let server = ApiServer::start(FakeApi::default()).await;
    let (client, _dir) = http_client(&server).await;
    for ns in ["a", "b"] {
        let mut obj = cm(&format!("in-{ns}"), true);
        obj["metadata"]["namespace"] = json!(ns);
        server.api.insert(&coll(ns, "configmaps"), obj);
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let names: Vec<String> = all
        .list(&ListParams::default())
        .await
        .expect("list all")
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(names, ["in-a", "in-b"]);
    let one: Api<ConfigMap> = Api::namespaced(client, "a");
    assert_eq!(
        one.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        1
    );
}
