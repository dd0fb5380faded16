//! Pure checks and planning for controller operations: topic names, replica placement.
//!
//! Placement spreads new replicas and leaders evenly over the active (registered, unfenced,
//! not shutting down) brokers, and puts the replicas of one partition in distinct racks
//! (`broker.rack`) while the racks allow.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;

use super::ApiError;
use crate::metadata::image::MetadataImage;

/// Kafka's longest legal topic name.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name as Kafka does: 1–249 of `[a-zA-Z0-9._-]`, not `.` or `..`.
pub fn topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |why: String| ApiError::new(ResponseError::InvalidTopicException, why);
    if name.is_empty() || name == "." || name == ".." {
        return Err(invalid(format!("topic name {name:?} is illegal")));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return Err(invalid(format!(
            "topic name is longer than {MAX_TOPIC_NAME_LEN} characters"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(invalid(format!(
            "topic name {name:?} contains {c:?}; legal characters are ASCII alphanumerics, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Kafka forbids two topics whose names differ only in '.' versus '_' (metric names collide).
pub fn collides(a: &str, b: &str) -> bool {
    a != b && a.replace('.', "_") == b.replace('.', "_")
}

/// Assigns `count` new partitions (numbered from `first`) with `rf` replicas each over the
/// active brokers of `image` that are not cordoned (see [`place`]).
pub fn assign_replicas(
    image: &MetadataImage,
    first: i32,
    count: i32,
    rf: i16,
) -> Result<Vec<Vec<i32>>, ApiError> {
    let brokers: Vec<(i32, Option<String>)> = image
        .brokers
        .values()
        .filter(|b| b.is_active() && !cordoned(image, b.broker_id))
        .map(|b| (b.broker_id, b.rack.clone()))
        .collect();
    place(&brokers, first, count, rf)
}

/// KIP-1066: a broker whose `cordoned.log.dirs` (its own dynamic config, else the cluster
/// default) is set receives no new replica while its existing ones keep serving. A Tributary
/// broker has one log directory, so any value (`*`, or that directory's path) cordons it.
pub fn cordoned(image: &MetadataImage, broker: i32) -> bool {
    const KEY: &str = "cordoned.log.dirs";
    let value = image
        .broker_configs
        .get(&Some(broker))
        .and_then(|m| m.get(KEY))
        .or_else(|| image.broker_configs.get(&None).and_then(|m| m.get(KEY)));
    value.is_some_and(|v| !v.trim().is_empty())
}

/// Places partitions over `brokers` (id, rack): brokers are ordered so that racks alternate,
/// partition `p`'s replicas start at position `p` of that order (leaders rotate evenly) and
/// take the next brokers whose rack the partition does not use yet, then any when every rack
/// is used.
pub fn place(
    brokers: &[(i32, Option<String>)],
    first: i32,
    count: i32,
    rf: i16,
) -> Result<Vec<Vec<i32>>, ApiError> {
    let rf = usize::try_from(rf).unwrap_or(0);
    if rf == 0 || rf > brokers.len() {
        return Err(ApiError::new(
            ResponseError::InvalidReplicationFactor,
            format!(
                "replication factor {rf} must be between 1 and the number of available brokers ({})",
                brokers.len()
            ),
        ));
    }
    Ok(spread(&rack_alternating(brokers), first, count, rf))
}

/// The placement itself, over brokers already in rack-alternating order.
fn spread(order: &[(i32, Option<String>)], first: i32, count: i32, rf: usize) -> Vec<Vec<i32>> {
    let n = order.len();
    let all_racks: BTreeSet<_> = order.iter().map(|(_, r)| r.clone()).collect();
    (first..first + count)
        .map(|p| {
            let start = usize::try_from(p).unwrap_or(0) % n;
            let mut chosen: Vec<i32> = Vec::with_capacity(rf);
            let mut racks = BTreeSet::new();
            for step in 0..2 * n {
                if chosen.len() == rf {
                    break;
                }
                let (id, rack) = &order[(start + step) % n];
                if chosen.contains(id) {
                    continue;
                }
                // First pass: distinct racks only; once every rack is used, any broker.
                if step < n && racks.contains(rack) && racks.len() < all_racks.len() {
                    continue;
                }
                racks.insert(rack.clone());
                chosen.push(*id);
            }
            chosen
        })
        .collect()
}

/// Brokers sorted by id within each rack, racks interleaved: a1, b1, c1, a2, b2, …
fn rack_alternating(brokers: &[(i32, Option<String>)]) -> Vec<(i32, Option<String>)> {
    let mut by_rack: BTreeMap<Option<String>, Vec<i32>> = BTreeMap::new();
    for (id, rack) in brokers {
        by_rack.entry(rack.clone()).or_default().push(*id);
    }
    for ids in by_rack.values_mut() {
        ids.sort_unstable();
    }
    let longest = by_rack.values().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::with_capacity(brokers.len());
    for i in 0..longest {
        for (rack, ids) in &by_rack {
            if let Some(id) = ids.get(i) {
                out.push((*id, rack.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "a b", "t/1", "ü"] {
            let err = topic_name(bad).expect_err(bad);
            assert_eq!(err.code, ResponseError::InvalidTopicException);
        }
        assert!(topic_name(&"x".repeat(249)).is_ok());
        assert!(topic_name(&"x".repeat(250)).is_err());
        assert!(collides("a.b", "a_b"));
        assert!(!collides("a.b", "a.b"));
    }

    fn plain(ids: &[i32]) -> Vec<(i32, Option<String>)> {
        ids.iter().map(|i| (*i, None)).collect()
    }

    #[test]
    fn leaders_rotate_over_the_brokers_and_rf_is_checked() {
        let a = place(&plain(&[3, 1, 2]), 0, 4, 1).expect("assign");
        assert_eq!(a, vec![vec![1], vec![2], vec![3], vec![1]]);
        let a = place(&plain(&[1, 2, 3]), 2, 2, 1).expect("assign from 2");
        assert_eq!(a, vec![vec![3], vec![1]]);
        let err = place(&plain(&[1]), 0, 1, 2).expect_err("rf too big");
        assert_eq!(err.code, ResponseError::InvalidReplicationFactor);
        assert!(place(&plain(&[1]), 0, 1, 0).is_err());
        let a = place(&plain(&[1, 2, 3]), 0, 3, 3).expect("rf 3");
        assert_eq!(a, vec![vec![1, 2, 3], vec![2, 3, 1], vec![3, 1, 2]]);
    }

    #[test]
    fn racks_alternate_so_consecutive_brokers_differ_in_rack() {
        let brokers = vec![
            (1, Some("a".to_owned())),
            (2, Some("a".to_owned())),
            (3, Some("b".to_owned())),
            (4, Some("b".to_owned())),
            (5, Some("c".to_owned())),
        ];
        let order: Vec<i32> = rack_alternating(&brokers).iter().map(|b| b.0).collect();
        assert_eq!(order, vec![1, 3, 5, 2, 4]);
        // Leaders of 5 partitions land on 5 distinct brokers.
        let a = place(&brokers, 0, 5, 1).expect("assign");
        let leaders: BTreeSet<i32> = a.iter().map(|r| r[0]).collect();
        assert_eq!(leaders.len(), 5);
        // Three replicas always span the three racks (ready for replication).
        let rack = |id: i32| brokers.iter().find(|b| b.0 == id).map(|b| b.1.clone());
        for replicas in spread(&rack_alternating(&brokers), 0, 10, 3) {
            let racks: BTreeSet<_> = replicas.iter().map(|id| rack(*id)).collect();
            assert_eq!((replicas.len(), racks.len()), (3, 3), "{replicas:?}");
        }
        // Two racks, three replicas: both racks used, no broker twice.
        let two = &brokers[..4];
        for replicas in spread(&rack_alternating(two), 0, 4, 3) {
            let unique: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(unique.len(), 3, "{replicas:?}");
        }
    }

    #[test]
    fn fenced_brokers_get_nothing() {
        use crate::metadata::records::BrokerRegistration;
        let mut image = MetadataImage::default();
        for (id, fenced) in [(1, false), (2, true), (3, false)] {
            image.brokers.insert(
                id,
                BrokerRegistration {
                    broker_id: id,
                    incarnation_id: uuid::Uuid::nil(),
                    host: "h".into(),
                    port: 1,
                    rack: None,
                    epoch: 0,
                    fenced,
                    in_controlled_shutdown: false,
                },
            );
        }
        let a = assign_replicas(&image, 0, 6, 1).expect("assign");
        assert!(a.iter().all(|r| r[0] != 2), "{a:?}");
        assert_eq!(a.iter().filter(|r| r[0] == 1).count(), 3);
    }
}
