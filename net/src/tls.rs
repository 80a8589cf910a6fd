//! TLS for a node's listeners and for the connections it makes itself (node-wide: one
//! [`TlsContext`] shared by every shard; each connection's session lives on its shard).
//!
//! rustls (ring provider) runs over any futures-io stream, glommio's `TcpStream` included, so a
//! handshake never leaves the shard. The node's key and certificates are PEM files (Kafka's
//! `ssl.keystore.type=PEM`), read at start and again by [`TlsContext::reload`] (the broker calls
//! it on SIGHUP): connections accepted or made after a reload use the new files, open ones keep
//! their session. A reload that fails keeps the configuration in force.

mod principal;
mod stream;
#[cfg(any(test, feature = "test-pki"))]
pub mod test_pki;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::{TlsAcceptor, TlsConnector};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};

pub use principal::subject_principal;
pub use stream::MaybeTls;

/// Why TLS could not be set up; each names the file or setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: String },
    #[error("{path}: {cause}")]
    Pem { path: PathBuf, cause: String },
    #[error("TLS configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Certificate(String),
}

/// Kafka's `ssl.client.auth`: whether a listener asks connecting clients for a certificate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// Kafka's default: no certificate asked for.
    #[default]
    None,
    /// Asked for; a client without one still connects (and is anonymous).
    Requested,
    /// A client without a certificate signed by the truststore is refused.
    Required,
}

impl ClientAuth {
    pub fn parse(text: &str) -> Result<ClientAuth, String> {
        match text.trim() {
            "none" => Ok(ClientAuth::None),
            "requested" => Ok(ClientAuth::Requested),
            "required" => Ok(ClientAuth::Required),
            other => Err(format!(
                "`{other}` is not one of \"none\", \"requested\", \"required\""
            )),
        }
    }
}

/// What a node's TLS is made of (Kafka's `ssl.*` settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsOptions {
    /// `ssl.keystore.location`: one PEM file with this node's private key and its certificate
    /// chain (leaf first).
    pub keystore: PathBuf,
    /// `ssl.truststore.location`: PEM CA certificates that sign the peers' certificates
    /// (clients' on a listener that asks for them, other brokers' when this node connects).
    pub truststore: Option<PathBuf>,
    /// `ssl.client.auth` of the Kafka listener.
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols`: TLSv1.2 and/or TLSv1.3.
    pub protocols: Vec<TlsVersion>,
    /// `ssl.endpoint.identification.algorithm=https` (the default): a node it connects to
    /// must hold a certificate for the host name or IP address it was reached at.
    pub verify_hostname: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

impl TlsVersion {
    /// Kafka's `ssl.enabled.protocols` list ("TLSv1.2,TLSv1.3").
    pub fn parse_list(text: &str) -> Result<Vec<TlsVersion>, String> {
        let mut out = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let v = match name {
                "TLSv1.2" => TlsVersion::Tls12,
                "TLSv1.3" => TlsVersion::Tls13,
                other => {
                    return Err(format!(
                        "`{other}` is not supported (TLSv1.2 and TLSv1.3 are)"
                    ))
                }
            };
            if !out.contains(&v) {
                out.push(v);
            }
        }
        if out.is_empty() {
            return Err("no protocol listed".into());
        }
        Ok(out)
    }

    fn rustls(self) -> &'static SupportedProtocolVersion {
        match self {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        }
    }
}

/// The configurations built from one reading of the files.
struct Loaded {
    /// The Kafka listener: client certificates as `ssl.client.auth` says.
    kafka: Arc<ServerConfig>,
    /// The metrics listener (HTTPS): scrapers are not asked for certificates.
    metrics: Arc<ServerConfig>,
    /// The internal listener: only cluster members, so a certificate is always required.
    /// `None` without a truststore.
    internal: Option<Arc<ServerConfig>>,
    /// This node's own connections (followers to leaders, controller RPC), presenting the
    /// keystore's certificate. `None` without a truststore.
    client: Option<Arc<ClientConfig>>,
}

/// A node's TLS: what its listeners accept with and what its connections present.
pub struct TlsContext {
    options: TlsOptions,
    /// Read once per connection (never per request), written only by a reload.
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Which of a node's listeners a connection arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Kafka,
    Internal,
    Metrics,
}

impl TlsContext {
    /// Reads the files; every problem is reported here, before a listener opens.
    pub fn load(options: TlsOptions) -> Result<TlsContext, TlsError> {
        let loaded = build(&options)?;
        Ok(TlsContext {
            options,
            current: RwLock::new(Arc::new(loaded)),
        })
    }

    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    /// Reads the files again and, if they make a valid configuration, uses it from the next
    /// connection on.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = Arc::new(build(&self.options)?);
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        Ok(())
    }

    fn loaded(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The server side of a handshake on `stream`.
    pub async fn accept<S>(&self, listener: Listener, stream: S) -> io::Result<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let loaded = self.loaded();
        let config = match listener {
            Listener::Kafka => loaded.kafka.clone(),
            Listener::Metrics => loaded.metrics.clone(),
            Listener::Internal => loaded.internal.clone().ok_or_else(|| {
                io::Error::other("the internal listener needs ssl.truststore.location")
            })?,
        };
        let tls = TlsAcceptor::from(config).accept(stream).await?;
        Ok(MaybeTls::Tls(Box::new(futures_rustls::TlsStream::Server(
            tls,
        ))))
    }

    /// [`TlsContext::accept`], given up when `deadline` (a timer on the caller's executor)
    /// fires first: a peer that stalls the handshake must not hold a connection slot.
    pub async fn accept_until<S>(
        &self,
        deadline: impl std::future::Future<Output = ()>,
        listener: Listener,
        stream: S,
    ) -> io::Result<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        futures_lite::future::or(self.accept(listener, stream), async {
            deadline.await;
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the TLS handshake timed out",
            ))
        })
        .await
    }

    /// The client side of a handshake on `stream`, to a node reached as `host` (a name or an
    /// IP address, checked against its certificate unless hostname checks are off).
    pub async fn connect<S>(&self, host: &str, stream: S) -> io::Result<MaybeTls<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let config =
            self.loaded().client.clone().ok_or_else(|| {
                io::Error::other("connecting over TLS needs ssl.truststore.location")
            })?;
        let name = ServerName::try_from(host.to_string()).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("host `{host}`: {e}"))
        })?;
        let tls = TlsConnector::from(config).connect(name, stream).await?;
        Ok(MaybeTls::Tls(Box::new(futures_rustls::TlsStream::Client(
            tls,
        ))))
    }
}

/// ring: it builds with the C compiler CI already has (aws-lc-rs, rustls' default, needs a
/// much longer C build). rustls 0.23.48 deprecates ring's provider only for lacking
/// post-quantum key exchange, which no Kafka client offers today.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(options: &TlsOptions) -> Result<Loaded, TlsError> {
    let (chain, key) = read_keystore(&options.keystore)?;
    let roots = options
        .truststore
        .as_deref()
        .map(read_truststore)
        .transpose()?;
    let versions: Vec<&'static SupportedProtocolVersion> =
        options.protocols.iter().map(|v| v.rustls()).collect();

    let server = |auth: ClientAuth| -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&versions)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match (auth, &roots) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (_, None) => {
                return Err(TlsError::Config(
                    "asking clients for certificates needs ssl.truststore.location".into(),
                ))
            }
            (auth, Some(roots)) => {
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider());
                let verifier = if auth == ClientAuth::Requested {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Config(format!("truststore: {e}")))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| keystore_error(&options.keystore, e))?;
        Ok(Arc::new(config))
    };
    let kafka = server(options.client_auth)?;
    let metrics = server(ClientAuth::None)?;
    let (internal, client) = match &roots {
        None => (None, None),
        Some(roots) => {
            let internal = server(ClientAuth::Required)?;
            let identity = Some((options.keystore.as_path(), chain, key));
            let client = client_config_with(roots, identity, &versions, options.verify_hostname)?;
            (Some(internal), Some(client))
        }
    };
    Ok(Loaded {
        kafka,
        metrics,
        internal,
        client,
    })
}

/// A client configuration for a program that is not a node (the admin CLI): it trusts the CAs
/// of `truststore` and, where the listener asks for one, presents the key and certificate of
/// `keystore` (PEM, as `ssl.keystore.location`).
pub fn client_config(
    truststore: &Path,
    keystore: Option<&Path>,
    verify_hostname: bool,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = read_truststore(truststore)?;
    let identity = match keystore {
        Some(path) => {
            let (chain, key) = read_keystore(path)?;
            Some((path, chain, key))
        }
        None => None,
    };
    let versions = [&rustls::version::TLS13, &rustls::version::TLS12];
    client_config_with(&roots, identity, &versions, verify_hostname)
}

/// The client side, with the keystore's path for its errors.
type Identity<'a> = (
    &'a Path,
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
);

fn client_config_with(
    roots: &Arc<RootCertStore>,
    identity: Option<Identity<'_>>,
    versions: &[&'static SupportedProtocolVersion],
    verify_hostname: bool,
) -> Result<Arc<ClientConfig>, TlsError> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
        .build()
        .map_err(|e| TlsError::Config(format!("truststore: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = if verify_hostname {
        verifier
    } else {
        Arc::new(ChainOnly(verifier))
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match identity {
        Some((path, chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| keystore_error(path, e))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

fn keystore_error(path: &Path, e: rustls::Error) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        cause: format!("the key does not go with the certificate, or is unusable: {e}"),
    }
}

fn read_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.to_path_buf(),
        cause: e.to_string(),
    })
}

fn read_certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |cause: String| TlsError::Pem {
        path: path.to_path_buf(),
        cause,
    };
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| pem_error(format!("bad PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(pem_error("no CERTIFICATE section".into()));
    }
    Ok(certificates)
}

/// The private key and certificate chain of a PEM keystore.
fn read_keystore(
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let pem = read_file(path)?;
    let chain = read_certificates(path, &pem)?;
    let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Pem {
        path: path.to_path_buf(),
        cause: format!("no usable private key (PKCS#8, PKCS#1 or SEC1, unencrypted): {e}"),
    })?;
    Ok((chain, key))
}

fn read_truststore(path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let pem = read_file(path)?;
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(path, &pem)? {
        roots.add(certificate).map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            cause: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// `ssl.endpoint.identification.algorithm=""`: the chain must lead to a trusted CA, but the
/// certificate need not name the host (Kafka's way to turn hostname checks off).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
