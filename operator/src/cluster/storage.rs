//! What to do when a pool's `storage` differs from the volume claim template its StatefulSet was
//! created with. The API server refuses any change of `volumeClaimTemplates` (HTTP 422), so the
//! StatefulSet always keeps the template it has; the claims themselves are grown in place when
//! their StorageClass allows expansion (`allowVolumeExpansion`), and every other change (a
//! smaller size, another class, a class that cannot expand) is refused with a reason. Pure: the
//! reconciler reads the StatefulSet and the StorageClass and patches the claims.

use super::validate::Refusal;

/// The size and class a StatefulSet's `data` claim template has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTemplate {
    pub size: String,
    pub class: Option<String>,
}

/// The decision for one pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageDecision {
    /// The spec matches the template.
    Unchanged,
    /// Grow every claim of the pool to `size` (the template keeps its old size: claims created
    /// later are grown on the next pass).
    Resize { size: String },
    /// The change cannot be made.
    Refuse(Refusal),
}

/// Compares the spec's storage with the existing template. `expandable` is the class's
/// `allowVolumeExpansion` (`None` when the class could not be found).
pub fn plan_storage(
    pool: &str,
    desired: &ClaimTemplate,
    existing: &ClaimTemplate,
    expandable: Option<bool>,
) -> StorageDecision {
    if desired.class.is_some() && desired.class != existing.class {
        return StorageDecision::Refuse(Refusal::new(
            "StorageClassChangeRefused",
            format!(
                "{pool}.storage.storageClassName {:?} differs from the class the volumes were created with ({}): moving data to another class is not supported; the volumes stay",
                desired.class.as_deref().unwrap_or_default(),
                existing.class.as_deref().unwrap_or("the cluster default")
            ),
        ));
    }
    let (Some(want), Some(have)) = (
        parse_quantity(&desired.size),
        parse_quantity(&existing.size),
    ) else {
        return StorageDecision::Unchanged;
    };
    if want == have {
        return StorageDecision::Unchanged;
    }
    if want < have {
        return StorageDecision::Refuse(Refusal::new(
            "StorageShrinkRefused",
            format!(
                "{pool}.storage.size {} is smaller than the volumes' {}: volumes cannot shrink; they stay",
                desired.size, existing.size
            ),
        ));
    }
    let class = existing.class.as_deref().unwrap_or("(the default class)");
    match expandable {
        Some(true) => StorageDecision::Resize {
            size: desired.size.clone(),
        },
        Some(false) => StorageDecision::Refuse(Refusal::new(
            "StorageResizeRefused",
            format!(
                "{pool}.storage.size {} needs the volumes to grow from {}, but StorageClass {class} does not set allowVolumeExpansion; the volumes stay",
                desired.size, existing.size
            ),
        )),
        None => StorageDecision::Refuse(Refusal::new(
            "StorageResizeRefused",
            format!(
                "{pool}.storage.size {} needs the volumes to grow from {}, but StorageClass {class} was not found; the volumes stay",
                desired.size, existing.size
            ),
        )),
    }
}

/// Bytes of a Kubernetes quantity as storage sizes use it (`10Gi`, `500M`, `1.5Ti`, `1024`).
pub fn parse_quantity(s: &str) -> Option<u128> {
    const UNITS: &[(&str, u128)] = &[
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("Pi", 1 << 50),
        ("Ei", 1 << 60),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
        ("P", 1_000_000_000_000_000),
        ("E", 1_000_000_000_000_000_000),
    ];
    let (num, unit) = UNITS
        .iter()
        .find_map(|(suffix, mult)| s.strip_suffix(suffix).map(|n| (n, *mult)))
        .unwrap_or((s, 1));
    let (int, frac) = num.split_once('.').unwrap_or((num, ""));
    if int.is_empty() || !int.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let int: u128 = int.parse().ok()?;
    let scale = 10u128.checked_pow(u32::try_from(frac.len()).ok()?)?;
    let frac_value: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    Some(int * unit + frac_value * unit / scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(size: &str, class: Option<&str>) -> ClaimTemplate {
        ClaimTemplate {
            size: size.into(),
            class: class.map(Into::into),
        }
    }

    #[test]
    fn quantities_compare_by_bytes() {
        assert_eq!(parse_quantity("1Gi"), Some(1 << 30));
        assert_eq!(parse_quantity("1.5Ki"), Some(1536));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("1024"), Some(1024));
        assert_eq!(parse_quantity("Gi"), None);
        assert!(parse_quantity("1Gi") > parse_quantity("1000M"));
    }

    #[test]
    fn growing_needs_an_expandable_class_and_other_changes_are_refused() {
        let have = t("10Gi", Some("fast"));
        assert_eq!(
            plan_storage("brokers", &t("10Gi", Some("fast")), &have, None),
            StorageDecision::Unchanged
        );
        assert_eq!(
            plan_storage("brokers", &t("10240Mi", None), &have, None),
            StorageDecision::Unchanged,
            "same size written differently, class omitted"
        );
        assert_eq!(
            plan_storage("brokers", &t("20Gi", Some("fast")), &have, Some(true)),
            StorageDecision::Resize {
                size: "20Gi".into()
            }
        );
        let reason = |d: StorageDecision| match d {
            StorageDecision::Refuse(r) => r.reason,
            other => panic!("not refused: {other:?}"),
        };
        assert_eq!(
            reason(plan_storage(
                "brokers",
                &t("20Gi", None),
                &have,
                Some(false)
            )),
            "StorageResizeRefused"
        );
        assert_eq!(
            reason(plan_storage("brokers", &t("20Gi", None), &have, None)),
            "StorageResizeRefused"
        );
        assert_eq!(
            reason(plan_storage("brokers", &t("5Gi", None), &have, Some(true))),
            "StorageShrinkRefused"
        );
        assert_eq!(
            reason(plan_storage(
                "brokers",
                &t("10Gi", Some("slow")),
                &have,
                Some(true)
            )),
            "StorageClassChangeRefused"
        );
    }
}
