//! Fuzzes record-level reading of batches (what produce does to batches for compacted topics,
//! before their CRC is checked, and what the cleaner does): arbitrary bytes must never panic
//! or allocate without bound, and a batch that parses must rebuild into one that parses to
//! the same records.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_log::records::{all_records_keyed, BatchRecords};
use tributary_log::BatchIter;

fuzz_target!(|data: &[u8]| {
    let _ = all_records_keyed(data);
    for (_, bytes) in BatchIter::new(data).flatten() {
        let Ok(parsed) = BatchRecords::parse(bytes) else {
            continue;
        };
        let all: Vec<usize> = (0..parsed.records.len()).collect();
        let rebuilt = parsed.rebuild(&all).expect("a parsed batch rebuilds");
        let again = BatchRecords::parse(&rebuilt).expect("a rebuilt batch parses");
        assert_eq!(again.body, parsed.body);
        assert_eq!(again.records, parsed.records);
    }
});
