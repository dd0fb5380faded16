//! Framing of a buffer of concatenated v2 batches: yields whole batches and tells a truncated
//! tail ("need more bytes", normal at the end of a socket read or a file being written) apart
//! from an invalid batch (bad magic, impossible length).
//!
//! It reads headers only; CRCs are the caller's choice ([`crate::batch::verify_crc`]).

use crate::batch::{
    peek_batch_length, peek_magic, BatchError, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD,
    MAGIC_V2, MIN_BATCH_LENGTH,
};

/// Default upper bound on one batch's size: the largest size Kafka's `int` length allows.
pub const MAX_BATCH_SIZE: usize = i32::MAX as usize;

/// The bytes left over after the last whole batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncatedTail {
    /// Where the partial batch starts in the buffer.
    pub position: usize,
    /// Bytes present from `position` to the end of the buffer.
    pub available: usize,
    /// Size of the whole batch if its length field was readable.
    pub needed: Option<usize>,
}

/// Outcome of reading one batch at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole batch and its bytes (header included).
    Batch(BatchHeader, &'a [u8]),
    /// More bytes are needed; `needed` is the whole batch size when known.
    Incomplete { needed: Option<usize> },
}

/// Reads the batch at the start of `buf`, which may be followed by more bytes.
///
/// Checks, as soon as the bytes are there: length ≥ header, length ≤ `max_size`, magic 2.
pub fn read_frame(buf: &[u8], max_size: usize) -> Result<Frame<'_>, BatchError> {
    let Some(batch_length) = peek_batch_length(buf) else {
        return Ok(Frame::Incomplete { needed: None });
    };
    if batch_length < MIN_BATCH_LENGTH {
        return Err(BatchError::InvalidLength { batch_length });
    }
    let size = batch_length as usize + LOG_OVERHEAD;
    if size > max_size {
        return Err(BatchError::InvalidLength { batch_length });
    }
    match peek_magic(buf) {
        None => return Ok(Frame::Incomplete { needed: Some(size) }),
        Some(magic) if magic != MAGIC_V2 => return Err(BatchError::UnsupportedMagic { magic }),
        Some(_) => {}
    }
    if buf.len() < size.max(BATCH_HEADER_LEN) {
        return Ok(Frame::Incomplete { needed: Some(size) });
    }
    let header = BatchHeader::parse(buf)?;
    Ok(Frame::Batch(header, &buf[..size]))
}

/// Iterator over the whole batches of a buffer.
///
/// Ends (`None`) at the end of the buffer or at a truncated tail, which
/// [`BatchIter::truncated_tail`] then describes. After an `Err` it is fused.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    position: usize,
    max_size: usize,
    tail: Option<TruncatedTail>,
    done: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        BatchIter {
            buf,
            position: 0,
            max_size: MAX_BATCH_SIZE,
            tail: None,
            done: false,
        }
    }

    /// Treats batches larger than `max_size` bytes as invalid.
    pub fn with_max_batch_size(mut self, max_size: usize) -> Self {
        self.max_size = max_size;
        self
    }

    /// Start of the next batch to read (after iteration: end of the last whole batch).
    pub fn position(&self) -> usize {
        self.position
    }

    /// The partial batch at the end of the buffer, once iteration has reached it.
    pub fn truncated_tail(&self) -> Option<TruncatedTail> {
        self.tail
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<(BatchHeader, &'a [u8]), BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.position >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.position..];
        match read_frame(rest, self.max_size) {
            Ok(Frame::Batch(header, bytes)) => {
                self.position += bytes.len();
                Some(Ok((header, bytes)))
            }
            Ok(Frame::Incomplete { needed }) => {
                self.done = true;
                self.tail = Some(TruncatedTail {
                    position: self.position,
                    available: rest.len(),
                    needed,
                });
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::verify_crc;
    use crate::testing::simple_batch;

    fn three_batches() -> (Vec<u8>, Vec<usize>) {
        let mut buf = Vec::new();
        let mut sizes = Vec::new();
        for n in 1..=3 {
            let b = simple_batch(n, 100 * n as i64);
            sizes.push(b.len());
            buf.extend_from_slice(&b);
        }
        (buf, sizes)
    }

    #[test]
    fn yields_each_whole_batch() {
        let (buf, sizes) = three_batches();
        let mut it = BatchIter::new(&buf);
        let got: Vec<_> = it.by_ref().map(|r| r.unwrap()).collect();
        assert_eq!(got.len(), 3);
        for (i, (h, bytes)) in got.iter().enumerate() {
            assert_eq!(h.records_count, i as i32 + 1);
            assert_eq!(bytes.len(), sizes[i]);
        }
        assert_eq!(it.truncated_tail(), None);
        assert_eq!(it.position(), buf.len());
    }

    #[test]
    fn truncated_tail_is_not_an_error() {
        let (buf, sizes) = three_batches();
        for cut in [1usize, 11, 12, 16, 17, 60, sizes[2] - 1] {
            let end = sizes[0] + sizes[1] + cut;
            let mut it = BatchIter::new(&buf[..end]);
            assert_eq!(it.by_ref().filter(|r| r.is_ok()).count(), 2);
            let tail = it.truncated_tail().unwrap();
            assert_eq!(tail.position, sizes[0] + sizes[1]);
            assert_eq!(tail.available, cut);
            let expect_needed = if cut >= 12 { Some(sizes[2]) } else { None };
            assert_eq!(tail.needed, expect_needed, "cut {cut}");
        }
    }

    #[test]
    fn invalid_batch_is_an_error_and_fuses() {
        let (mut buf, sizes) = three_batches();
        buf[sizes[0] + 16] = 0; // magic of the second batch
        let mut it = BatchIter::new(&buf);
        assert!(it.next().unwrap().is_ok());
        assert_eq!(
            it.next().unwrap().unwrap_err(),
            BatchError::UnsupportedMagic { magic: 0 }
        );
        assert!(it.next().is_none());
        assert_eq!(it.position(), sizes[0]);

        let (mut buf, _) = three_batches();
        buf[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert_eq!(
            BatchIter::new(&buf).next().unwrap().unwrap_err(),
            BatchError::InvalidLength { batch_length: 10 }
        );
        let (buf, sizes) = three_batches();
        let mut it = BatchIter::new(&buf).with_max_batch_size(sizes[0]);
        assert!(it.next().unwrap().is_ok());
        assert!(matches!(
            it.next().unwrap(),
            Err(BatchError::InvalidLength { .. })
        ));
    }

    /// A small xorshift generator so the test is deterministic without a dependency.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// The same code the fuzz target drives, over random and mutated buffers: it must not panic,
    /// must make progress, and every yielded batch must lie inside the buffer with its own size.
    #[test]
    fn random_and_mutated_buffers_never_panic_or_loop() {
        let (seed_buf, _) = three_batches();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for round in 0..4000 {
            let buf: Vec<u8> = if round % 2 == 0 {
                let mut b = seed_buf.clone();
                for _ in 0..=rng.below(4) {
                    let i = rng.below(b.len());
                    b[i] = rng.next() as u8;
                }
                b.truncate(rng.below(b.len() + 1));
                b
            } else {
                (0..rng.below(300)).map(|_| rng.next() as u8).collect()
            };
            let mut it = BatchIter::new(&buf);
            let mut seen = 0usize;
            let mut steps = 0;
            for item in it.by_ref() {
                steps += 1;
                assert!(steps <= buf.len(), "no progress");
                if let Ok((h, bytes)) = item {
                    assert_eq!(bytes.len(), h.size());
                    seen += bytes.len();
                    let _ = verify_crc(bytes);
                }
            }
            assert_eq!(seen, it.position());
            assert!(it.position() <= buf.len());
            let _ = BatchHeader::parse(&buf);
        }
    }
}
