//! A connection that is TLS or not, behind one type, so a listener's code is the same for both
//! (per connection, on the shard that owns it).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

/// A plain stream, or the same stream under TLS (either side of the handshake).
pub enum MaybeTls<S> {
    Plain(S),
    /// Boxed: a TLS session's buffers are large, and most connections in a plaintext
    /// deployment never hold one.
    Tls(Box<futures_rustls::TlsStream<S>>),
}

impl<S> MaybeTls<S> {
    /// The stream under the TLS layer (for socket options, peer address).
    pub fn get_ref(&self) -> &S {
        match self {
            MaybeTls::Plain(s) => s,
            MaybeTls::Tls(t) => t.get_ref().0,
        }
    }

    /// Queues TLS's close_notify (sent with the next flush), so the peer can tell the end of
    /// the stream from a cut connection. Nothing for a plain stream.
    pub fn queue_close_notify(&mut self) {
        if let MaybeTls::Tls(t) = self {
            match t.as_mut() {
                futures_rustls::TlsStream::Client(c) => c.get_mut().1.send_close_notify(),
                futures_rustls::TlsStream::Server(s) => s.get_mut().1.send_close_notify(),
            }
        }
    }

    /// The certificate the peer proved it holds (its leaf first), if it sent one.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            MaybeTls::Plain(_) => None,
            MaybeTls::Tls(t) => t
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .map(|c| c.as_ref()),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    /// TLS keeps written records until they reach the socket: a reply is complete only after a
    /// flush.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_close(cx),
            MaybeTls::Tls(t) => Pin::new(t.as_mut()).poll_close(cx),
        }
    }
}
