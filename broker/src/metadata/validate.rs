//! Pure checks and planning for controller operations: topic names, replica assignment.

use kafka_protocol::ResponseError;

use super::controller::ApiError;

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

/// Assigns `count` new partitions (numbered from `first`) over `brokers` with `rf` replicas
/// each, round-robin so that leaders and replicas spread evenly.
pub fn assign_replicas(
    brokers: &[i32],
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
    let n = brokers.len();
    Ok((first..first + count)
        .map(|p| {
            let start = usize::try_from(p).unwrap_or(0) % n;
            (0..rf).map(|r| brokers[(start + r) % n]).collect()
        })
        .collect())
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

    #[test]
    fn assignment_round_robins_and_checks_rf() {
        let a = assign_replicas(&[1, 2, 3], 0, 4, 2).expect("assign");
        assert_eq!(a, vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 2]]);
        let err = assign_replicas(&[1], 0, 1, 2).expect_err("rf too big");
        assert_eq!(err.code, ResponseError::InvalidReplicationFactor);
        assert!(assign_replicas(&[1], 0, 1, 0).is_err());
    }
}
