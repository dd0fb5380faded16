//! Generator for checked-in artefacts.
//!
//! - `crdgen` prints the CRDs as YAML (`scripts/check-crds.sh` diffs them against `crds/`).
//! - `crdgen render FILE` prints the objects the operator would create for the `KafkaCluster` in
//!   FILE (its namespace defaults to `default`), so they can be reviewed or schema-validated.

use anyhow::Context as _;
use kube::ResourceExt;
use operator::cluster::build::build_all;
use operator::cluster::validate::validate;
use operator::crd::KafkaCluster;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => print!("{}", operator::crd::crds_yaml()?),
        [cmd, file] if cmd == "render" => {
            let text = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
            let mut kc: KafkaCluster =
                serde_yaml::from_str(&text).with_context(|| format!("parse {file}"))?;
            if kc.namespace().is_none() {
                kc.metadata.namespace = Some("default".to_owned());
            }
            let vc = validate(&kc).with_context(|| format!("validate {file}"))?;
            let d = build_all(&vc);
            let mut docs = Vec::new();
            for v in d.config_maps.iter().map(serde_yaml::to_string) {
                docs.push(v?);
            }
            for v in d.services.iter().map(serde_yaml::to_string) {
                docs.push(v?);
            }
            for v in d.stateful_sets.iter().map(serde_yaml::to_string) {
                docs.push(v?);
            }
            for v in d.pdbs.iter().map(serde_yaml::to_string) {
                docs.push(v?);
            }
            for doc in docs {
                print!("---\n{doc}");
            }
        }
        _ => anyhow::bail!("usage: crdgen [render KAFKACLUSTER.yaml]"),
    }
    Ok(())
}
