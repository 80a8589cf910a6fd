//! SASL authentication for the Kafka listener (per connection, on the connection's shard):
//! mechanism names, PLAIN, and the SCRAM exchange. The Kafka framing (SaslHandshake,
//! SaslAuthenticate, re-authentication) is in `kafka/sasl.rs`; credentials come from the
//! cluster metadata, where the controller keeps them salted and hashed.

pub mod inter_broker;
pub mod plain;
pub mod scram;

use std::fmt;

use skein_controller::image::{ScramCredential, ScramMechanismCode};

/// Kafka's `security.protocol` of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Kafka's name, as listeners are written (`SSL://host:port`).
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        [
            SecurityProtocol::Plaintext,
            SecurityProtocol::SaslPlaintext,
            SecurityProtocol::Ssl,
            SecurityProtocol::SaslSsl,
        ]
        .into_iter()
        .find(|p| p.name() == name)
    }
}

/// A SASL mechanism this broker can serve, by Kafka's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 3] = [
        Mechanism::Plain,
        Mechanism::ScramSha256,
        Mechanism::ScramSha512,
    ];
    pub const SCRAM: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    /// Kafka's names are case-sensitive (upper case).
    pub fn parse(name: &str) -> Option<Mechanism> {
        Mechanism::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Kafka's ScramMechanism code (AlterUserScramCredentials); PLAIN has none.
    pub fn scram_code(self) -> Option<ScramMechanismCode> {
        match self {
            Mechanism::Plain => None,
            Mechanism::ScramSha256 => Some(1),
            Mechanism::ScramSha512 => Some(2),
        }
    }

    pub fn from_scram_code(code: ScramMechanismCode) -> Option<Mechanism> {
        Mechanism::SCRAM
            .into_iter()
            .find(|m| m.scram_code() == Some(code))
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `sasl.enabled.mechanisms`: a comma-separated list of Kafka mechanism names.
pub fn parse_mechanisms(text: &str) -> Result<Vec<Mechanism>, String> {
    let mut out = Vec::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let m = Mechanism::parse(name).ok_or_else(|| {
            format!("unsupported SASL mechanism `{name}` (supported: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)")
        })?;
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err("names no mechanism".into());
    }
    Ok(out)
}

/// Why an exchange failed. Messages go to the client: never a password or key in them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// Wrong user or password, or a malformed message (Kafka: SASL_AUTHENTICATION_FAILED).
    #[error("{0}")]
    Failed(String),
    /// A message out of order (Kafka: ILLEGAL_SASL_STATE).
    #[error("{0}")]
    IllegalState(String),
}

impl SaslError {
    pub fn malformed(why: &str) -> Self {
        SaslError::Failed(format!(
            "Authentication failed: invalid SASL message: {why}"
        ))
    }
}

/// Where a mechanism's credentials come from: the cluster metadata, by (user, SCRAM code).
pub trait CredentialStore {
    fn scram_credential(&self, user: &str, code: ScramMechanismCode) -> Option<ScramCredential>;
}

/// One mechanism's server side, for one authentication on one connection.
pub enum Authenticator {
    Plain {
        done: bool,
    },
    /// Boxed: the exchange state is large and lives only while a client authenticates.
    Scram(Box<scram::ScramServer>),
}

/// The answer to one client token.
pub enum Step {
    /// Send this token and wait for the next.
    Continue(Vec<u8>),
    /// Authenticated as `user`; send the final token (empty for PLAIN).
    Done { user: String, token: Vec<u8> },
}

impl Authenticator {
    pub fn new(mechanism: Mechanism) -> Self {
        match mechanism {
            Mechanism::Plain => Authenticator::Plain { done: false },
            m => Authenticator::Scram(Box::new(scram::ScramServer::new(m))),
        }
    }

    pub fn step(&mut self, token: &[u8], store: &dyn CredentialStore) -> Result<Step, SaslError> {
        match self {
            Authenticator::Plain { done } => {
                if std::mem::replace(done, true) {
                    return Err(SaslError::IllegalState(
                        "the PLAIN exchange is already over".into(),
                    ));
                }
                let msg = plain::parse(token)?;
                if plain::verify(&msg, store) {
                    Ok(Step::Done {
                        user: msg.user.to_string(),
                        token: Vec::new(),
                    })
                } else {
                    Err(SaslError::Failed(
                        "Authentication failed: Invalid username or password".into(),
                    ))
                }
            }
            Authenticator::Scram(server) => {
                let code = server.mechanism().scram_code();
                let lookup = |user: &str| code.and_then(|c| store.scram_credential(user, c));
                match server.step(token, lookup, &scram::new_nonce())? {
                    scram::ScramStep::Challenge(t) => Ok(Step::Continue(t)),
                    scram::ScramStep::Success { user, server_final } => Ok(Step::Done {
                        user,
                        token: server_final,
                    }),
                }
            }
        }
    }
}
