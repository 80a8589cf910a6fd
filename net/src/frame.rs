//! Length-prefixed Kafka frames read off a connection, and written to one; one reader and one
//! writer per connection, on its shard.
//!
//! Every Kafka request and response is a big-endian `i32` size followed by that many bytes.
//! A request's body is read in bounded steps, so memory follows the bytes that actually arrived:
//! a peer that announces 100 MB and then stalls holds [`FRAME_READ_CHUNK_BYTES`], not 100 MB.
//! An answer to a request of ours ([`read_answer`]) gets its whole buffer at once instead.

use std::io;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::FrameError;
use crate::limits::{FRAME_READ_CHUNK_BYTES, FRAME_SIZE_PREFIX_BYTES};

/// Writes `bytes` whole and pushes them out. Over TLS written records wait in the session
/// until a flush, so every frame a peer waits for goes through here (a plain socket's flush is
/// free).
pub async fn write_flush<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> io::Result<()> {
    w.write_all(bytes).await?;
    w.flush().await
}

/// Reads one frame and returns its body (without the size prefix).
///
/// `Ok(None)` when the peer closed the connection cleanly between frames. A frame larger than
/// `max_bytes` is refused before any of its body is read; the caller closes the connection, as
/// Kafka does past `socket.request.max.bytes`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    read_with(r, max_bytes, Reserve::AsItArrives).await
}

/// Reads the answer to a request this side sent, like [`read_frame`], but with the body's
/// buffer reserved whole up front.
///
/// Growing it with the arrivals reallocates, and so copies, all but the last step of a large
/// frame: 7 of every 8 MiB of a follower's fetch answers. An answer's size follows from what
/// was asked (a fetch's `max_bytes`), and reserving only takes address space: pages are
/// still touched as the bytes arrive.
pub async fn read_answer<R: AsyncRead + Unpin>(
    r: &mut R,
    max_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    read_with(r, max_bytes, Reserve::Whole).await
}

#[derive(Clone, Copy)]
enum Reserve {
    AsItArrives,
    Whole,
}

async fn read_with<R: AsyncRead + Unpin>(
    r: &mut R,
    max_bytes: usize,
    reserve: Reserve,
) -> Result<Option<Bytes>, FrameError> {
    let mut prefix = [0u8; FRAME_SIZE_PREFIX_BYTES];
    let received = read_full(r, &mut prefix).await?;
    if received == 0 {
        return Ok(None);
    }
    if received < FRAME_SIZE_PREFIX_BYTES {
        return Err(FrameError::TruncatedPrefix { received });
    }
    let size = i32::from_be_bytes(prefix);
    let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize { size })?;
    if size > max_bytes {
        return Err(FrameError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    let mut body = Vec::new();
    if let Reserve::Whole = reserve {
        body.try_reserve_exact(size)
            .map_err(|_| FrameError::OutOfMemory { size })?;
    }
    read_body(r, size, &mut body).await?;
    debug_assert_eq!(body.len(), size);
    Ok(Some(Bytes::from(body)))
}

/// Fills `buf` as far as the stream allows; returns how many bytes arrived (short only at EOF).
async fn read_full<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]).await {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads exactly `size` bytes into `body`, growing it only ahead of the bytes that arrived.
///
/// The buffer grows in steps of `max(FRAME_READ_CHUNK_BYTES, bytes so far)`, clipped to what is
/// left of the frame: its capacity stays below twice what was received plus one chunk (or what
/// the caller reserved), it ends exactly `size` bytes long, and each byte is zeroed once before
/// the read overwrites it.
async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    size: usize,
    body: &mut Vec<u8>,
) -> Result<(), FrameError> {
    let mut filled = 0;
    while filled < size {
        if filled == body.len() {
            let step = (size - body.len()).min(FRAME_READ_CHUNK_BYTES.max(body.len()));
            body.reserve_exact(step);
            body.resize(body.len() + step, 0);
        }
        match r.read(&mut body[filled..]).await {
            Ok(0) => {
                return Err(FrameError::Truncated {
                    expected: size,
                    received: filled,
                })
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FrameError::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use futures_lite::future::block_on;

    use super::*;
    use crate::limits::REQUEST_BYTES_MAX_DEFAULT;

    /// Hands out its bytes `step` at a time, then EOF; `interrupt` first fails with EINTR.
    struct Dribble {
        data: Vec<u8>,
        at: usize,
        step: usize,
        interrupt: bool,
    }

    impl Dribble {
        fn new(data: Vec<u8>, step: usize) -> Self {
            Dribble {
                data,
                at: 0,
                step,
                interrupt: false,
            }
        }
    }

    impl AsyncRead for Dribble {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut [u8],
        ) -> Poll<io::Result<usize>> {
            if self.interrupt {
                self.interrupt = false;
                return Poll::Ready(Err(io::ErrorKind::Interrupted.into()));
            }
            let n = buf.len().min(self.step).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Poll::Ready(Ok(n))
        }
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn reads_consecutive_frames_then_clean_eof() {
        let mut wire = framed(b"hello");
        wire.extend(framed(b""));
        wire.extend(framed(&[7u8; 200_000]));
        let mut r = Dribble::new(wire, 7_000);
        r.interrupt = true;
        block_on(async {
            let max = REQUEST_BYTES_MAX_DEFAULT;
            assert_eq!(
                read_frame(&mut r, max).await.unwrap().unwrap(),
                &b"hello"[..]
            );
            assert_eq!(read_frame(&mut r, max).await.unwrap().unwrap().len(), 0);
            let big = read_frame(&mut r, max).await.unwrap().unwrap();
            assert_eq!(big.len(), 200_000);
            assert!(big.iter().all(|&b| b == 7));
            assert!(read_frame(&mut r, max).await.unwrap().is_none());
        });
    }

    #[test]
    fn one_byte_at_a_time() {
        let body: Vec<u8> = (0..=255).collect();
        let mut r = Dribble::new(framed(&body), 1);
        let got = block_on(read_frame(&mut r, 1024)).unwrap().unwrap();
        assert_eq!(&got[..], &body[..]);
    }

    #[test]
    fn eof_inside_prefix_is_truncated_prefix() {
        let mut r = Dribble::new(vec![0, 0], 1);
        let err = block_on(read_frame(&mut r, 1024)).unwrap_err();
        assert!(
            matches!(err, FrameError::TruncatedPrefix { received: 2 }),
            "{err}"
        );
    }

    #[test]
    fn eof_inside_body_is_truncated() {
        let mut wire = framed(&[1u8; 100]);
        wire.truncate(54);
        let mut r = Dribble::new(wire, 16);
        let err = block_on(read_frame(&mut r, 1024)).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    expected: 100,
                    received: 50
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn negative_and_oversized_frames_are_refused_before_the_body() {
        let mut r = Dribble::new((-5i32).to_be_bytes().to_vec(), 4);
        let err = block_on(read_frame(&mut r, 1024)).unwrap_err();
        assert!(
            matches!(err, FrameError::NegativeSize { size: -5 }),
            "{err}"
        );

        let mut wire = 1025i32.to_be_bytes().to_vec();
        wire.extend([0u8; 8]);
        let mut r = Dribble::new(wire, 64);
        let err = block_on(read_frame(&mut r, 1024)).unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::TooLarge {
                    size: 1025,
                    max: 1024
                }
            ),
            "{err}"
        );
        assert_eq!(r.at, 4, "nothing past the prefix was read");
    }

    #[test]
    fn a_stalled_100mb_announcement_costs_one_chunk() {
        let mut body = Vec::new();
        let mut r = Dribble::new(vec![9u8; 10], 10);
        let err = block_on(read_body(&mut r, REQUEST_BYTES_MAX_DEFAULT, &mut body)).unwrap_err();
        assert!(
            matches!(err, FrameError::Truncated { received: 10, .. }),
            "{err}"
        );
        assert!(
            body.capacity() <= FRAME_READ_CHUNK_BYTES,
            "{}",
            body.capacity()
        );
    }

    #[test]
    fn an_answer_is_read_into_its_first_buffer() {
        let size = 3 * FRAME_READ_CHUNK_BYTES + 12_345;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut body = Vec::new();
        body.try_reserve_exact(size).unwrap();
        let first = body.as_ptr();
        let mut r = Dribble::new(data.clone(), 64 * 1024);
        block_on(read_body(&mut r, size, &mut body)).unwrap();
        assert_eq!(
            body.as_ptr(),
            first,
            "the body was reallocated while it arrived"
        );
        assert_eq!(body, data);

        let mut r = Dribble::new(framed(&data), 64 * 1024);
        let got = block_on(read_answer(&mut r, size)).unwrap().unwrap();
        assert_eq!(&got[..], &data[..]);
        let mut r = Dribble::new(framed(&data), 64 * 1024);
        let err = block_on(read_answer(&mut r, size - 1)).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn buffer_growth_follows_arrivals_and_ends_exact() {
        let size = 1_000_000;
        let sent = 300_000;
        let mut body = Vec::new();
        let mut r = Dribble::new(vec![1u8; sent], 4096);
        let _ = block_on(read_body(&mut r, size, &mut body));
        assert!(
            body.capacity() <= 2 * sent + FRAME_READ_CHUNK_BYTES,
            "{}",
            body.capacity()
        );

        let mut body = Vec::new();
        let mut r = Dribble::new(vec![1u8; size], 4096);
        block_on(read_body(&mut r, size, &mut body)).unwrap();
        assert_eq!(body.len(), size);
        assert_eq!(body.capacity(), size);
    }
}
