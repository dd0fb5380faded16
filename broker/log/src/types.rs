//! Identifier and position newtypes shared by the log and its callers: [`Offset`] and
//! [`TopicPartition`] (with the `<topic>-<partition>` directory-name form).

use std::fmt;

use thiserror::Error;

/// A record offset within one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset(pub i64);

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Offset {
    /// The offset `n` records later.
    pub fn plus(self, n: i64) -> Offset {
        Offset(self.0.saturating_add(n))
    }
}

/// A topic and partition number. Displays as Kafka's directory name, `topic-partition`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

/// A directory name that is not `<topic>-<partition>`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{name:?} is not a <topic>-<partition> name")]
pub struct ParseTopicPartitionError {
    pub name: String,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Parses a partition directory name. Topics may contain `-`; the partition number is
    /// after the last one. Rejects an empty topic and a negative or non-numeric partition.
    pub fn parse_dir_name(name: &str) -> Result<TopicPartition, ParseTopicPartitionError> {
        let err = || ParseTopicPartitionError {
            name: name.to_string(),
        };
        let (topic, partition) = name.rsplit_once('-').ok_or_else(err)?;
        if topic.is_empty()
            || partition.is_empty()
            || !partition.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        let partition: i32 = partition.parse().map_err(|_| err())?;
        Ok(TopicPartition::new(topic, partition))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_name_round_trips_with_dashes_in_topic() {
        // A topic may even end in a dash: the partition is after the last one.
        assert_eq!(
            TopicPartition::parse_dir_name("topic--1"),
            Ok(TopicPartition::new("topic-", 1))
        );
        let tp = TopicPartition::new("my-topic-v2", 12);
        assert_eq!(tp.to_string(), "my-topic-v2-12");
        assert_eq!(TopicPartition::parse_dir_name("my-topic-v2-12"), Ok(tp));
        assert_eq!(
            TopicPartition::parse_dir_name("__consumer_offsets-0"),
            Ok(TopicPartition::new("__consumer_offsets", 0))
        );
    }

    #[test]
    fn rejects_names_without_a_partition() {
        for bad in ["topic", "-3", "topic-", "topic-x", "t-99999999999"] {
            assert!(TopicPartition::parse_dir_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets_order_and_display() {
        assert!(Offset(3) < Offset(10));
        assert_eq!(Offset(5).plus(2), Offset(7));
        assert_eq!(Offset(-1).to_string(), "-1");
    }
}
