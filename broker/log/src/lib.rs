//! Tributary's partition log: Kafka's on-disk layout (segments of v2 record batches with sparse
//! offset and time indexes), offset assignment by patching batch headers, recovery and retention.
//! It knows nothing of the wire protocol beyond the v2 record-batch header.
