//! A small blocking Kafka-protocol client for the admin commands: one connection per broker,
//! ApiVersions on connect, and every request at the highest version both sides speak within the
//! range the command was written for. It talks to Kafka as well as to Skein.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse, RequestKind, ResponseKind,
    SaslAuthenticateRequest, SaslHandshakeRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use skein_net::client::{decodable_response_versions, decode_response, encode_request};
use skein_net::{request_api_key, CorrelationId, RequestHeader};

use crate::sasl::scram::{self, ScramClient};
use crate::sasl::Mechanism;

/// The largest response the client accepts (a broken peer must not make it allocate without
/// bound).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
const CLIENT_ID: &str = "skein-admin";

/// Where requests go: the broker first reached, a broker by id, or the active controller.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Any,
    Node(i32),
    Controller,
}

/// Who the client authenticates as on a SASL listener.
#[derive(Clone)]
pub struct SaslLogin {
    pub mechanism: Mechanism,
    pub user: String,
    pub password: String,
}

/// How the client reaches a listener: SASL (SASL_PLAINTEXT), TLS (SSL), or both (SASL_SSL).
#[derive(Clone, Default)]
pub struct Security {
    pub login: Option<SaslLogin>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// A connection to one broker, under TLS or not.
trait Io: Read + Write {}
impl<T: Read + Write> Io for T {}

struct Conn {
    stream: Box<dyn Io>,
    /// Each API's version range as this broker advertised it.
    versions: HashMap<i16, (i16, i16)>,
}

pub struct Client {
    timeout: Duration,
    /// The first broker that answered, by address.
    bootstrap: String,
    brokers: BTreeMap<i32, String>,
    controller: Option<i32>,
    /// By node id; the bootstrap connection is `-1` until the metadata names it.
    conns: HashMap<i32, Conn>,
    correlation: i32,
    security: Security,
}

impl Client {
    /// Connects to the first reachable address of `bootstrap` (comma-separated host:port).
    pub fn connect(bootstrap: &str, timeout: Duration, security: Security) -> Result<Client> {
        let mut errors = Vec::new();
        for addr in bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            let mut client = Client {
                timeout,
                bootstrap: addr.to_string(),
                brokers: BTreeMap::new(),
                controller: None,
                conns: HashMap::new(),
                correlation: 0,
                security: security.clone(),
            };
            match client.open(addr) {
                Ok(conn) => {
                    client.conns.insert(-1, conn);
                    return Ok(client);
                }
                Err(e) => errors.push(format!("{addr}: {e:#}")),
            }
        }
        if errors.is_empty() {
            bail!("no bootstrap server given");
        }
        bail!("no broker reachable: {}", errors.join("; "))
    }

    fn open(&mut self, addr: &str) -> Result<Conn> {
        let sock = addr
            .to_socket_addrs()
            .with_context(|| format!("resolve {addr}"))?
            .next()
            .ok_or_else(|| anyhow!("{addr} resolves to no address"))?;
        let stream = TcpStream::connect_timeout(&sock, self.timeout)
            .with_context(|| format!("connect to {addr}"))?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        stream.set_nodelay(true)?;
        let stream: Box<dyn Io> = match &self.security.tls {
            Some(config) => {
                // The host as written (the broker's certificate names it), without the port.
                let host = addr
                    .rsplit_once(':')
                    .map_or(addr, |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let name = rustls::pki_types::ServerName::try_from(host.to_string())
                    .with_context(|| format!("`{host}` as a TLS server name"))?;
                let session = rustls::ClientConnection::new(config.clone(), name)
                    .with_context(|| format!("TLS to {addr}"))?;
                // The handshake runs with the first request (and fails it, if it fails).
                Box::new(rustls::StreamOwned::new(session, stream))
            }
            None => Box::new(stream),
        };
        let mut conn = Conn {
            stream,
            versions: HashMap::new(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 first; a broker that does not know it answers with v0's layout and its ranges.
        let mut answer = self.exchange(&mut conn, 3, RequestKind::ApiVersions(request.clone()));
        if !matches!(&answer, Ok(ResponseKind::ApiVersions(r)) if r.error_code == 0) {
            answer = self.exchange(&mut conn, 0, RequestKind::ApiVersions(request));
        }
        let ResponseKind::ApiVersions(r) =
            answer.with_context(|| format!("ApiVersions to {addr}"))?
        else {
            bail!("{addr} answered ApiVersions with another response");
        };
        if r.error_code != 0 {
            bail!("{addr} refused ApiVersions: {}", error_name(r.error_code));
        }
        for k in r.api_keys {
            conn.versions
                .insert(k.api_key, (k.min_version, k.max_version));
        }
        if let Some(login) = self.security.login.clone() {
            self.authenticate(&mut conn, &login)
                .with_context(|| format!("SASL {} login to {addr}", login.mechanism))?;
        }
        Ok(conn)
    }

    /// SaslHandshake v1, then the mechanism's tokens in SaslAuthenticate requests.
    fn authenticate(&mut self, conn: &mut Conn, login: &SaslLogin) -> Result<()> {
        let handshake = SaslHandshakeRequest::default()
            .with_mechanism(StrBytes::from_static_str(login.mechanism.name()));
        let ResponseKind::SaslHandshake(r) =
            self.exchange(conn, 1, RequestKind::SaslHandshake(handshake))?
        else {
            bail!("SaslHandshake answered with another response");
        };
        if r.error_code != 0 {
            let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!(
                "{} (the broker offers {})",
                error_name(r.error_code),
                offered.join(", ")
            );
        }
        let version = self.version(conn, ApiKey::SaslAuthenticate, (0, 2))?;
        match login.mechanism {
            Mechanism::Plain => {
                let token = format!("\0{}\0{}", login.user, login.password);
                self.sasl_token(conn, version, token.into_bytes())?;
            }
            m => {
                let mut scram =
                    ScramClient::new(m, &login.user, &login.password, scram::new_nonce());
                let server_first = self.sasl_token(conn, version, scram.client_first())?;
                let client_final = scram.client_final(&server_first)?;
                let server_final = self.sasl_token(conn, version, client_final)?;
                scram.verify_server_final(&server_final)?;
            }
        }
        Ok(())
    }

    fn sasl_token(&mut self, conn: &mut Conn, version: i16, token: Vec<u8>) -> Result<Bytes> {
        let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
        let ResponseKind::SaslAuthenticate(r) =
            self.exchange(conn, version, RequestKind::SaslAuthenticate(request))?
        else {
            bail!("SaslAuthenticate answered with another response");
        };
        if r.error_code != 0 {
            bail!(
                "{}: {}",
                error_name(r.error_code),
                r.error_message.as_deref().unwrap_or("")
            );
        }
        Ok(r.auth_bytes)
    }

    fn exchange(
        &mut self,
        conn: &mut Conn,
        version: i16,
        body: RequestKind,
    ) -> Result<ResponseKind> {
        let api_key = request_api_key(&body).ok_or_else(|| anyhow!("not a request"))?;
        self.correlation = self.correlation.wrapping_add(1);
        let header = RequestHeader {
            api_key,
            api_version: version,
            correlation_id: CorrelationId(self.correlation),
            client_id: Some(StrBytes::from_static_str(CLIENT_ID)),
        };
        let frame = encode_request(&header, &body)
            .with_context(|| format!("encode {api_key:?} v{version}"))?;
        conn.stream
            .write_all(&frame)
            .and_then(|()| conn.stream.flush())
            .with_context(|| format!("send {api_key:?}"))?;
        let mut size = [0u8; 4];
        conn.stream
            .read_exact(&mut size)
            .with_context(|| format!("read the {api_key:?} response"))?;
        let size = usize::try_from(i32::from_be_bytes(size))
            .map_err(|_| anyhow!("negative response size"))?;
        if size > RESPONSE_BYTES_MAX {
            bail!("{api_key:?} response of {size} bytes is over {RESPONSE_BYTES_MAX}");
        }
        let mut body = vec![0u8; size];
        conn.stream
            .read_exact(&mut body)
            .with_context(|| format!("read the {api_key:?} response"))?;
        let decoded = decode_response(api_key, version, Bytes::from(body))
            .with_context(|| format!("decode the {api_key:?} v{version} response"))?;
        if decoded.correlation_id != header.correlation_id {
            bail!("{api_key:?}: the response answers another request");
        }
        Ok(decoded.body)
    }

    /// Sends `body` to `target` at the highest version in `want` both sides speak.
    pub fn send(
        &mut self,
        target: Target,
        want: (i16, i16),
        body: RequestKind,
    ) -> Result<ResponseKind> {
        let api_key = request_api_key(&body).ok_or_else(|| anyhow!("not a request"))?;
        let node = match target {
            Target::Any => -1,
            Target::Node(id) => id,
            Target::Controller => self.controller()?,
        };
        let mut conn = self.conn(node)?;
        let result = self
            .version(&conn, api_key, want)
            .and_then(|version| self.exchange(&mut conn, version, body));
        // A connection that failed mid-request is not reused.
        if result.is_ok() {
            self.conns.insert(node, conn);
        }
        result
    }

    /// The version [`Client::send`] would use for `api_key` on `target`, or why there is none.
    pub fn supports(&mut self, target: Target, api_key: ApiKey, want: (i16, i16)) -> Result<i16> {
        let node = match target {
            Target::Any => -1,
            Target::Node(id) => id,
            Target::Controller => self.controller()?,
        };
        let conn = self.conn(node)?;
        let v = self.version(&conn, api_key, want);
        self.conns.insert(node, conn);
        v
    }

    fn version(&self, conn: &Conn, api_key: ApiKey, want: (i16, i16)) -> Result<i16> {
        let Some(&(lo, hi)) = conn.versions.get(&(api_key as i16)) else {
            bail!("the broker does not support {api_key:?}");
        };
        let ours = decodable_response_versions(api_key)
            .ok_or_else(|| anyhow!("{api_key:?} responses cannot be decoded"))?;
        let top = hi.min(want.1).min(ours.max);
        let bottom = lo.max(want.0).max(ours.min);
        if top < bottom {
            bail!(
                "the broker speaks {api_key:?} v{lo}-{hi}; this tool needs v{}-{}",
                want.0,
                want.1
            );
        }
        Ok(top)
    }

    fn conn(&mut self, node: i32) -> Result<Conn> {
        if let Some(c) = self.conns.remove(&node) {
            return Ok(c);
        }
        let addr = if node == -1 {
            self.bootstrap.clone()
        } else {
            if !self.brokers.contains_key(&node) {
                self.metadata(Some(Vec::new()))?;
            }
            self.brokers
                .get(&node)
                .cloned()
                .ok_or_else(|| anyhow!("broker {node} is not in the cluster metadata"))?
        };
        self.open(&addr)
    }

    /// Metadata for `topics` (`None`: every topic; empty: brokers only). Remembers the brokers
    /// and the controller.
    pub fn metadata(&mut self, topics: Option<Vec<String>>) -> Result<MetadataResponse> {
        let request = MetadataRequest::default()
            .with_topics(topics.map(|names| {
                names
                    .into_iter()
                    .map(|n| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(n))))
                    })
                    .collect()
            }))
            .with_allow_auto_topic_creation(false);
        let ResponseKind::Metadata(md) =
            self.send(Target::Any, (1, 12), RequestKind::Metadata(request))?
        else {
            bail!("Metadata answered with another response");
        };
        self.brokers = md
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        self.controller = (md.controller_id.0 >= 0).then_some(md.controller_id.0);
        Ok(md)
    }

    pub fn controller(&mut self) -> Result<i32> {
        if self.controller.is_none() {
            self.metadata(Some(Vec::new()))?;
        }
        self.controller
            .ok_or_else(|| anyhow!("the cluster names no controller"))
    }

    pub fn broker_ids(&mut self) -> Result<Vec<i32>> {
        if self.brokers.is_empty() {
            self.metadata(Some(Vec::new()))?;
        }
        Ok(self.brokers.keys().copied().collect())
    }
}

/// Kafka's name for an error code (`NONE` for 0).
pub fn error_name(code: i16) -> String {
    if code == 0 {
        return "NONE".into();
    }
    let Some(e) = ResponseError::try_from_code(code) else {
        return format!("error {code}");
    };
    // The enum's names are Kafka's in CamelCase: UnknownTopicOrPartition.
    let mut name = String::new();
    for (i, c) in format!("{e:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}
