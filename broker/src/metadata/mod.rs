//! Cluster metadata: the records of the metadata log, the image built from them, the Raft quorum
//! that replicates the log, and the controller that validates operations and writes records.

pub mod controller;
pub mod image;
pub mod raft;
pub mod raft_log;
pub mod records;
pub mod validate;

pub use controller::{ApiError, Controller, NewTopic, QuorumConfig};
pub use image::{MetadataImage, TopicImage};
