//! Fuzzes the v2 batch-header reader and the batch iterator: arbitrary bytes must never panic,
//! every yielded batch must be whole and inside the buffer, and iteration must end.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_log::batch::{set_log_append_time, verify_crc, BatchHeader};
use tributary_log::BatchIter;

fuzz_target!(|data: &[u8]| {
    let _ = BatchHeader::parse(data);
    let mut it = BatchIter::new(data);
    let mut covered = 0usize;
    for (steps, item) in it.by_ref().enumerate() {
        assert!(steps <= data.len(), "iterator made no progress");
        if let Ok((header, bytes)) = item {
            assert_eq!(bytes.len(), header.size());
            covered += bytes.len();
            if verify_crc(bytes).is_ok() {
                let mut copy = bytes.to_vec();
                set_log_append_time(&mut copy, 1).expect("whole valid batch");
                verify_crc(&copy).expect("patch recomputes the crc");
            }
        }
    }
    assert_eq!(covered, it.position());
    if let Some(tail) = it.truncated_tail() {
        assert_eq!(tail.position + tail.available, data.len());
    }
});
