//! Prints the CRDs as YAML to stdout (`cargo run -p operator --bin crdgen > crds/tributary.yaml`).

fn main() -> anyhow::Result<()> {
    print!("{}", operator::crd::crds_yaml()?);
    Ok(())
}
