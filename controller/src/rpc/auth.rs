//! Who may use the internal listener: with a cluster secret configured, every connection starts
//! with a mutual challenge-response (HMAC-SHA256 over fresh nonces from both sides, so neither
//! a replay nor a reflected answer passes) before any frame is read. A process without the
//! secret cannot register a broker, fetch metadata or send a Raft message, and a node does not
//! talk to a listener that cannot prove it holds the secret either.
//!
//! ```text
//! client -> server   "SKAU" | version u8 (1) | client nonce [16]
//! server -> client   server nonce [16] | HMAC(secret, "skein server" | client nonce | server nonce)
//! client -> server   HMAC(secret, "skein client" | server nonce | client nonce)
//! ```
//! The server says nothing more on failure: it closes the connection.

use std::time::Duration;

use futures_lite::AsyncReadExt;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{with_timeout, Stream};

const MAGIC: &[u8; 4] = b"SKAU";
const VERSION: u8 = 1;
const NONCE_BYTES: usize = 16;
const MAC_BYTES: usize = 32;
/// The shortest secret accepted: 128 bits, if it is random.
pub const SECRET_BYTES_MIN: usize = 16;
/// A handshake that takes longer is dropped (a silent peer must not hold a connection slot).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster's shared secret (from `[controller] secret_file`).
#[derive(Clone)]
pub struct ClusterSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The secret as a file holds it (surrounding whitespace is not part of it).
    pub fn new(bytes: &[u8]) -> Result<ClusterSecret, String> {
        let key = bytes.trim_ascii().to_vec();
        if key.len() < SECRET_BYTES_MIN {
            return Err(format!(
                "the cluster secret has {} bytes; it needs at least {SECRET_BYTES_MIN} (e.g. \
                 `head -c 32 /dev/urandom | base64`)",
                key.len()
            ));
        }
        Ok(ClusterSecret { key })
    }

    fn mac(&self, label: &[u8], first: &[u8], second: &[u8]) -> [u8; MAC_BYTES] {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        let mut m = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => return [0; MAC_BYTES],
        };
        m.update(label);
        m.update(first);
        m.update(second);
        m.finalize().into_bytes().into()
    }

    fn check(&self, got: &[u8], label: &[u8], first: &[u8], second: &[u8]) -> bool {
        bool::from(self.mac(label, first, second).ct_eq(got))
    }
}

fn nonce() -> [u8; NONCE_BYTES] {
    // A v4 UUID is 122 bits from the OS's random source.
    *uuid::Uuid::new_v4().as_bytes()
}

async fn read_exact(stream: &mut Stream, buf: &mut [u8]) -> Result<(), String> {
    stream
        .read_exact(buf)
        .await
        .map_err(|e| format!("reading the handshake: {e}"))
}

async fn write_all(stream: &mut Stream, buf: &[u8]) -> Result<(), String> {
    skein_net::write_flush(stream, buf)
        .await
        .map_err(|e| format!("writing the handshake: {e}"))
}

/// The connecting side: proves it holds the secret and checks that the listener does too.
pub async fn client_handshake(stream: &mut Stream, secret: &ClusterSecret) -> Result<(), String> {
    let work = async {
        let client_nonce = nonce();
        let mut hello = Vec::with_capacity(MAGIC.len() + 1 + NONCE_BYTES);
        hello.extend_from_slice(MAGIC);
        hello.push(VERSION);
        hello.extend_from_slice(&client_nonce);
        write_all(stream, &hello).await?;
        let mut challenge = [0u8; NONCE_BYTES + MAC_BYTES];
        read_exact(stream, &mut challenge)
            .await
            .map_err(|e| format!("{e} (does the listener expect the cluster secret?)"))?;
        let (server_nonce, server_mac) = challenge.split_at(NONCE_BYTES);
        if !secret.check(server_mac, b"skein server", &client_nonce, server_nonce) {
            return Err("the listener does not hold the cluster secret".to_string());
        }
        let proof = secret.mac(b"skein client", server_nonce, &client_nonce);
        write_all(stream, &proof).await
    };
    with_timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .unwrap_or_else(|| Err("the handshake timed out".to_string()))
}

/// The listening side: the peer must prove it holds the secret before anything else is read.
pub async fn server_handshake(stream: &mut Stream, secret: &ClusterSecret) -> Result<(), String> {
    let work = async {
        let mut hello = [0u8; 4 + 1 + NONCE_BYTES];
        read_exact(stream, &mut hello).await?;
        if &hello[..4] != MAGIC || hello[4] != VERSION {
            return Err("the peer did not start the cluster-secret handshake".to_string());
        }
        let client_nonce = &hello[5..];
        let server_nonce = nonce();
        let mut challenge = Vec::with_capacity(NONCE_BYTES + MAC_BYTES);
        challenge.extend_from_slice(&server_nonce);
        challenge.extend_from_slice(&secret.mac(b"skein server", client_nonce, &server_nonce));
        write_all(stream, &challenge).await?;
        let mut proof = [0u8; MAC_BYTES];
        read_exact(stream, &mut proof).await?;
        if !secret.check(&proof, b"skein client", &server_nonce, client_nonce) {
            return Err("the peer does not hold the cluster secret".to_string());
        }
        Ok(())
    };
    with_timeout(HANDSHAKE_TIMEOUT, work)
        .await
        .unwrap_or_else(|| Err("the handshake timed out".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_secrets_are_refused_and_whitespace_is_not_part_of_one() {
        assert!(ClusterSecret::new(b"too short").is_err());
        let a = ClusterSecret::new(b"0123456789abcdef\n").expect("16 bytes");
        let b = ClusterSecret::new(b"  0123456789abcdef").expect("16 bytes");
        assert_eq!(a.mac(b"l", b"x", b"y"), b.mac(b"l", b"x", b"y"));
        assert_eq!(format!("{a:?}"), "ClusterSecret(..)", "never printed");
    }

    #[test]
    fn macs_bind_the_label_the_nonces_and_their_order() {
        let s = ClusterSecret::new(b"0123456789abcdef").expect("secret");
        let m = s.mac(b"skein server", b"aa", b"bb");
        assert!(s.check(&m, b"skein server", b"aa", b"bb"));
        assert!(!s.check(&m, b"skein client", b"aa", b"bb"), "no reflection");
        assert!(!s.check(&m, b"skein server", b"bb", b"aa"), "order matters");
        let other = ClusterSecret::new(b"fedcba9876543210").expect("secret");
        assert!(!other.check(&m, b"skein server", b"aa", b"bb"));
        assert!(!s.check(&m[..31], b"skein server", b"aa", b"bb"));
    }
}
