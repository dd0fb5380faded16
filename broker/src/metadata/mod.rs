//! Cluster metadata: the records of the metadata log and the image built from them
//! (`records`, `image`); the follower every node runs to apply the committed log
//! (`follower`); on controller nodes, the Raft quorum that replicates the log (`quorum`) and
//! the controller that decides what goes into it (`controller`); the controller listener that
//! serves voters and brokers (`listener`); and the channel a broker reaches the active
//! controller through (`channel`), with the requests that travel between nodes (`rpc`).

pub mod channel;
pub mod controller;
pub mod follower;
pub mod image;
pub mod listener;
pub mod quorum;
pub mod records;
pub mod rpc;

pub use controller::{ApiError, NewTopic, QuorumController};
pub use follower::MetadataFollower;
pub use image::{MetadataImage, TopicImage};
