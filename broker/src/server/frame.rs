//! Kafka request framing: a 4-byte big-endian size, then the request. Oversized frames are
//! refused from their size prefix alone, before any of the body is read into memory.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The smallest possible request: api key, api version, correlation id, client id length.
pub const MIN_REQUEST_LEN: usize = 10;

/// Why a connection's framing failed; each closes that connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("request of {size} bytes exceeds socket.request.max.bytes ({max})")]
    TooLarge { size: usize, max: usize },
    #[error("invalid request size {0}")]
    InvalidSize(i32),
    #[error("connection closed in the middle of a request")]
    Truncated,
    #[error("failed to read from the connection")]
    Io(#[source] std::io::Error),
}

/// Checks a frame's size prefix against the limits.
pub fn check_size(size: i32, max: usize) -> Result<usize, FrameError> {
    let len = usize::try_from(size).map_err(|_| FrameError::InvalidSize(size))?;
    if len < MIN_REQUEST_LEN {
        return Err(FrameError::InvalidSize(size));
    }
    if len > max {
        return Err(FrameError::TooLarge { size: len, max });
    }
    Ok(len)
}

/// Reads one frame; `Ok(None)` at a clean end of stream between requests.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = read_size(reader, max).await? else {
        return Ok(None);
    };
    // Read into spare capacity: no zero-filling of a buffer about to be overwritten.
    let mut buf = BytesMut::with_capacity(len);
    read_body(reader, &mut buf, len).await?;
    Ok(Some(buf.freeze()))
}

/// Like [`read_frame`], but reads into `buf`, which a connection keeps between frames: once the
/// previous frame's bytes are dropped, the next frame reuses the same memory instead of a fresh
/// allocation (for a follower's megabyte responses, fresh pages the kernel must zero each time).
pub async fn read_frame_reusing<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    read_frame_reusing_up_to(reader, buf, max, max).await
}

/// [`read_frame_reusing`] for frames of at most `reuse_max` bytes; a larger one (up to `max`)
/// is read into a buffer of its own, so `buf` never grows past `reuse_max`.
pub async fn read_frame_reusing_up_to<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    reuse_max: usize,
    max: usize,
) -> Result<Option<Bytes>, FrameError> {
    let Some(len) = read_size(reader, max).await? else {
        return Ok(None);
    };
    if len > reuse_max {
        let mut own = BytesMut::with_capacity(len);
        read_body(reader, &mut own, len).await?;
        return Ok(Some(own.freeze()));
    }
    buf.clear();
    buf.reserve(len);
    read_body(reader, buf, len).await?;
    Ok(Some(buf.split_to(len).freeze()))
}

/// The next frame's checked size; `None` at a clean end of stream between frames.
async fn read_size<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<usize>, FrameError> {
    let mut size = [0u8; 4];
    match reader.read_exact(&mut size[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(FrameError::Io(e)),
    }
    reader
        .read_exact(&mut size[1..])
        .await
        .map_err(eof_is_truncated)?;
    let len = check_size(i32::from_be_bytes(size), max)?;
    Ok(Some(len))
}

async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    len: usize,
) -> Result<(), FrameError> {
    while buf.len() < len {
        let mut limited = (&mut *reader).take((len - buf.len()) as u64);
        if limited.read_buf(buf).await.map_err(FrameError::Io)? == 0 {
            return Err(FrameError::Truncated);
        }
    }
    Ok(())
}

fn eof_is_truncated(e: std::io::Error) -> FrameError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        FrameError::Truncated
    } else {
        FrameError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reused_buffer_serves_the_next_frame_from_the_same_memory_up_to_its_cap() {
        let frame = |n: usize| {
            let mut f = (n as u32).to_be_bytes().to_vec();
            f.extend(std::iter::repeat_n(7u8, n));
            f
        };
        let mut data: Vec<u8> = [frame(1000), frame(900), frame(5000)].concat();
        let mut input: &[u8] = &mut data;
        let mut buf = BytesMut::new();
        let first = read_frame_reusing_up_to(&mut input, &mut buf, 2000, 10_000)
            .await
            .expect("read")
            .expect("a frame");
        let at = first.as_ptr();
        drop(first);
        // The first frame's bytes are gone: the second lands where they were.
        let second = read_frame_reusing_up_to(&mut input, &mut buf, 2000, 10_000)
            .await
            .expect("read")
            .expect("a frame");
        assert_eq!((second.len(), second.as_ptr()), (900, at));
        // Above the cap: a buffer of its own, and the reused one does not grow.
        let third = read_frame_reusing_up_to(&mut input, &mut buf, 2000, 10_000)
            .await
            .expect("read")
            .expect("a frame");
        assert_eq!(third.len(), 5000);
        assert!(buf.capacity() <= 2000);
        assert!(read_frame_reusing_up_to(&mut input, &mut buf, 2000, 10_000)
            .await
            .expect("end")
            .is_none());
    }

    #[tokio::test]
    async fn frames_are_read_whole_and_limits_hold() {
        let mut data: &[u8] = &[0, 0, 0, 10, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        let f = read_frame(&mut data, 100)
            .await
            .expect("frame")
            .expect("some");
        assert_eq!(f.len(), 10);
        assert!(read_frame(&mut data, 100).await.expect("eof").is_none());

        let mut big: &[u8] = &[0x7f, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut big, 100).await,
            Err(FrameError::TooLarge { .. })
        ));
        let mut neg: &[u8] = &[0xff, 0xff, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut neg, 100).await,
            Err(FrameError::InvalidSize(-1))
        ));
        let mut short: &[u8] = &[0, 0, 0, 12, 1, 2];
        assert!(matches!(
            read_frame(&mut short, 100).await,
            Err(FrameError::Truncated)
        ));
    }

    #[tokio::test]
    async fn a_kept_buffer_is_reused_once_the_previous_frame_is_dropped() {
        let mut data = Vec::new();
        for fill in [1u8, 2, 3] {
            data.extend_from_slice(&4096u32.to_be_bytes());
            data.extend(std::iter::repeat_n(fill, 4096));
        }
        let mut reader: &[u8] = &data;
        let mut buf = BytesMut::new();
        let first = read_frame_reusing(&mut reader, &mut buf, 1 << 20)
            .await
            .expect("frame")
            .expect("some");
        assert!(first.len() == 4096 && first.iter().all(|&b| b == 1));
        let at = first.as_ptr();
        drop(first);
        let second = read_frame_reusing(&mut reader, &mut buf, 1 << 20)
            .await
            .expect("frame")
            .expect("some");
        assert!(second.len() == 4096 && second.iter().all(|&b| b == 2));
        assert_eq!(second.as_ptr(), at, "the same memory holds the next frame");
        // While a frame is still held, the next one goes elsewhere and neither is overwritten.
        let third = read_frame_reusing(&mut reader, &mut buf, 1 << 20)
            .await
            .expect("frame")
            .expect("some");
        assert!(second.iter().all(|&b| b == 2) && third.iter().all(|&b| b == 3));
        assert!(read_frame_reusing(&mut reader, &mut buf, 1 << 20)
            .await
            .expect("eof")
            .is_none());
    }
}
