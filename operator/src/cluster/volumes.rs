//! The I/O half of storage changes (`storage` decides): keeps the existing StatefulSets' volume
//! claim templates in the desired ones, reads the StorageClass, and grows the pool's claims.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;
use serde_json::json;
use tracing::info;

use super::build::{pod_name, DesiredObjects};
use super::storage::{parse_quantity, plan_storage, ClaimTemplate, StorageDecision};
use super::validate::{Pool, Refusal, Role, ValidatedCluster};
use crate::context::Context;
use crate::crd::cluster::KafkaCluster;
use crate::error::{Error, Result};

/// Keeps each existing StatefulSet's volume claim templates in the desired one (the API server
/// refuses to change them), grows the pool's claims when `storage.size` grew and the class
/// allows it, and returns what cannot be done (see `storage::plan_storage`).
pub(crate) async fn reconcile_storage(
    ctx: &Context,
    kc: &KafkaCluster,
    vc: &ValidatedCluster,
    desired: &mut DesiredObjects,
    existing: &[StatefulSet],
) -> Result<StorageOutcome> {
    let mut out = StorageOutcome::default();
    for (pool, sts) in vc.pools.iter().zip(desired.stateful_sets.iter_mut()) {
        let name = sts.name_any();
        let Some(current) = existing.iter().find(|e| e.name_any() == name) else {
            continue;
        };
        let templates = current
            .spec
            .as_ref()
            .and_then(|s| s.volume_claim_templates.clone());
        let Some(have) = templates.as_deref().and_then(data_template) else {
            continue;
        };
        if let Some(spec) = sts.spec.as_mut() {
            spec.volume_claim_templates = templates.clone();
        }
        let field = if pool.role == Role::Controller {
            "controllers"
        } else {
            "brokers"
        };
        let want = ClaimTemplate {
            size: pool.spec.storage.size.clone(),
            class: pool.spec.storage.storage_class_name.clone(),
        };
        let needs_class = parse_quantity(&want.size) > parse_quantity(&have.size);
        let expandable = if needs_class {
            class_allows_expansion(ctx, have.class.as_deref()).await?
        } else {
            None
        };
        match plan_storage(field, &want, &have, expandable) {
            StorageDecision::Unchanged => {}
            StorageDecision::Refuse(r) => out.refusals.push(r),
            StorageDecision::Resize { size } => out
                .resizing
                .extend(resize_claims(ctx, kc, vc, pool, &size).await?),
        }
    }
    Ok(out)
}

/// What the storage step refused, and which claims are still growing.
#[derive(Debug, Default)]
pub(crate) struct StorageOutcome {
    pub(crate) refusals: Vec<Refusal>,
    /// `data-<pod> (capacity C of S)` for claims whose volume has not grown to the request yet.
    pub(crate) resizing: Vec<String>,
}

/// Size and class of the `data` claim template.
fn data_template(templates: &[PersistentVolumeClaim]) -> Option<ClaimTemplate> {
    let t = templates
        .iter()
        .find(|t| t.metadata.name.as_deref() == Some("data"))?;
    let spec = t.spec.as_ref()?;
    let size = spec.resources.as_ref()?.requests.as_ref()?.get("storage")?;
    Some(ClaimTemplate {
        size: size.0.clone(),
        class: spec.storage_class_name.clone(),
    })
}

/// `allowVolumeExpansion` of the named class, or of the cluster's default class; `None` when
/// there is no such class.
async fn class_allows_expansion(ctx: &Context, class: Option<&str>) -> Result<Option<bool>> {
    const DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
    let api: Api<StorageClass> = Api::all(ctx.client.clone());
    let found = match class {
        Some(name) => api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("get StorageClass {name}")))?,
        None => api
            .list(&ListParams::default())
            .await
            .map_err(Error::kube("list StorageClass"))?
            .items
            .into_iter()
            .find(|c| c.annotations().get(DEFAULT_CLASS).map(String::as_str) == Some("true")),
    };
    Ok(found.map(|c| c.allow_volume_expansion == Some(true)))
}

/// Grows every existing claim of `pool` (`data-<pod>`) that requests less than `size`; returns
/// the claims whose reported capacity is still below `size`.
async fn resize_claims(
    ctx: &Context,
    kc: &KafkaCluster,
    vc: &ValidatedCluster,
    pool: &Pool,
    size: &str,
) -> Result<Vec<String>> {
    let mut resizing = Vec::new();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &vc.namespace);
    for ordinal in 0..pool.replicas {
        let name = format!("data-{}", pod_name(vc, pool, ordinal));
        let Some(pvc) = api
            .get_opt(&name)
            .await
            .map_err(Error::kube(format!("get PersistentVolumeClaim {name}")))?
        else {
            continue;
        };
        let requested = pvc
            .spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default();
        let capacity = pvc
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .and_then(|c| c.get("storage"))
            .map(|q| q.0.clone());
        if capacity
            .as_deref()
            .is_some_and(|c| parse_quantity(c) < parse_quantity(size))
        {
            let capacity = capacity.unwrap_or_default();
            resizing.push(format!("{name} (capacity {capacity} of {size})"));
        }
        if parse_quantity(&requested) >= parse_quantity(size) {
            continue;
        }
        let patch = json!({ "spec": { "resources": { "requests": { "storage": size } } } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(Error::kube(format!("resize PersistentVolumeClaim {name}")))?;
        let note = format!("resized PersistentVolumeClaim {name} from {requested} to {size}");
        info!(claim = %name, from = %requested, to = %size, "resized volume claim");
        ctx.publish(kc, EventType::Normal, "VolumeResized", "Resize", Some(note))
            .await;
    }
    Ok(resizing)
}
