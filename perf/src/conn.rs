//! Kafka connections of the load generator, one per producer or consumer, on its shard.
//!
//! [`FrameReader`] reads response frames into one reusable buffer and hands out each frame as a
//! borrowed slice, so a consumer pays the kernel's copy and nothing else per byte. [`Admin`]
//! is the slow path (metadata, topic creation, offsets) through `skein-net`'s generic codecs.

use std::net::SocketAddr;

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use kafka_protocol::protocol::StrBytes;
use skein_net::{decode_response, encode_request, CorrelationId, RequestHeader};

/// Frames larger than this are refused: a broken broker must not make us allocate without end.
pub const RESPONSE_BYTES_MAX: usize = 256 << 20;
/// Read buffer a connection starts with; it grows to the largest frame seen.
const READ_BUFFER_BYTES: usize = 4 << 20;
pub const CLIENT_ID: &str = "skein-perf";

/// Response frames off one connection, read into a buffer that is reused frame after frame.
pub struct FrameReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: vec![0; READ_BUFFER_BYTES],
            start: 0,
            end: 0,
        }
    }

    /// The connection, for writing requests between frames.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The next frame's body (after the size prefix), valid until the next call.
    pub async fn next(&mut self) -> Result<&[u8]> {
        loop {
            let have = self.end - self.start;
            if have >= 4 {
                let prefix: [u8; 4] = self.buf[self.start..self.start + 4]
                    .try_into()
                    .context("frame prefix")?;
                let size = usize::try_from(i32::from_be_bytes(prefix))
                    .context("negative response frame size")?;
                ensure!(size <= RESPONSE_BYTES_MAX, "response frame of {size} bytes");
                let total = size + 4;
                if have >= total {
                    let body = self.start + 4..self.start + total;
                    self.start += total;
                    return Ok(&self.buf[body]);
                }
                self.make_room(total);
            } else {
                self.make_room(4);
            }
            let n = self
                .inner
                .read(&mut self.buf[self.end..])
                .await
                .context("reading from the broker")?;
            if n == 0 {
                bail!("the broker closed the connection");
            }
            self.end += n;
        }
    }

    /// Ensures a frame of `total` bytes starting at `start` fits, moving the partial frame to
    /// the front (and growing the buffer) only when it would not.
    fn make_room(&mut self, total: usize) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.start + total <= self.buf.len() && self.end < self.buf.len() {
            return;
        }
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if total > self.buf.len() {
            self.buf.resize(total, 0);
        }
    }
}

/// Opens a connection with Nagle off: requests are whole frames written at once.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| anyhow::anyhow!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// One request at a time over its own connection, through the generic codecs.
pub struct Admin {
    addr: SocketAddr,
    reader: FrameReader<TcpStream>,
    next_correlation_id: i32,
}

impl Admin {
    pub async fn connect(addr: SocketAddr) -> Result<Admin> {
        Ok(Admin {
            addr,
            reader: FrameReader::new(connect(addr).await?),
            next_correlation_id: 1,
        })
    }

    pub async fn call(&mut self, version: i16, body: RequestKind) -> Result<ResponseKind> {
        let api_key = api_key_of(&body)?;
        let correlation_id = CorrelationId(self.next_correlation_id);
        self.next_correlation_id += 1;
        let header = RequestHeader {
            api_key,
            api_version: version,
            correlation_id,
            client_id: Some(StrBytes::from_static_str(CLIENT_ID)),
        };
        let frame = encode_request(&header, &body)
            .with_context(|| format!("encoding {api_key:?} v{version}"))?;
        self.reader
            .inner
            .write_all(&frame)
            .await
            .with_context(|| format!("sending {api_key:?} to {}", self.addr))?;
        let frame = Bytes::copy_from_slice(self.reader.next().await?);
        let response = decode_response(api_key, version, frame)
            .with_context(|| format!("decoding the {api_key:?} v{version} response"))?;
        ensure!(
            response.correlation_id == correlation_id,
            "{api_key:?} answered with correlation id {}, expected {correlation_id}",
            response.correlation_id
        );
        Ok(response.body)
    }
}

fn api_key_of(body: &RequestKind) -> Result<ApiKey> {
    Ok(match body {
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::Produce(_) => ApiKey::Produce,
        other => bail!("the admin path does not send {other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that returns its bytes in small, uneven pieces, like a socket.
    struct Trickle {
        data: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut [u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = self.step.min(buf.len()).min(self.data.len() - self.at);
            let at = self.at;
            buf[..n].copy_from_slice(&self.data[at..at + n]);
            self.at += n;
            // Uneven sizes, from one byte to about 100 KB.
            self.step = (self.step * 7919) % 100_003 + 1;
            std::task::Poll::Ready(Ok(n))
        }
    }

    #[test]
    fn frames_come_out_whole_across_reads_and_buffer_growth() {
        let sizes = [
            0usize,
            5,
            READ_BUFFER_BYTES + 3,
            17,
            READ_BUFFER_BYTES - 1,
            1,
        ];
        let mut data = Vec::new();
        for (i, &s) in sizes.iter().enumerate() {
            data.extend_from_slice(&(s as i32).to_be_bytes());
            data.extend((0..s).map(|k| (k + i) as u8));
        }
        let mut r = FrameReader::new(Trickle {
            data,
            at: 0,
            step: 1 << 20,
        });
        futures_lite::future::block_on(async {
            for (i, &s) in sizes.iter().enumerate() {
                let f = r.next().await.unwrap();
                assert_eq!(f.len(), s);
                assert!(f.iter().enumerate().all(|(k, &b)| b == (k + i) as u8));
            }
            assert!(r.next().await.is_err()); // end of stream
        });
    }

    #[test]
    fn oversized_and_negative_frames_are_refused() {
        for prefix in [-1i32, (RESPONSE_BYTES_MAX + 1) as i32] {
            let mut r = FrameReader::new(Trickle {
                data: prefix.to_be_bytes().to_vec(),
                at: 0,
                step: 4,
            });
            assert!(futures_lite::future::block_on(r.next()).is_err());
        }
    }
}
