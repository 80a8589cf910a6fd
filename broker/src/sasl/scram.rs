//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): key derivation, the server's side of
//! the exchange (one per connection, on its shard) and the client's side for `skein` commands.
//! No channel binding (Kafka has none either) and no extensions beyond ignoring unknown ones.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use skein_controller::image::ScramCredential;
use subtle::ConstantTimeEq;

use super::{Mechanism, SaslError};

/// Kafka's bounds on SCRAM iterations (4096 is RFC 7677's minimum).
pub const ITERATIONS_MIN: i32 = 4096;
pub const ITERATIONS_MAX: i32 = 16384;
/// Kafka's default for `kafka-configs --add-config 'SCRAM-SHA-256=[password=...]'`.
pub const ITERATIONS_DEFAULT: i32 = 4096;
/// Random bytes in a fresh salt and in a server nonce.
pub const SALT_BYTES: usize = 32;
pub const NONCE_BYTES: usize = 24;

fn hmac(mechanism: Mechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so new_from_slice cannot fail.
    match mechanism {
        Mechanism::ScramSha512 => {
            let mut m =
                <Hmac<Sha512> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
        _ => {
            let mut m =
                <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts any key length");
            m.update(data);
            m.finalize().into_bytes().to_vec()
        }
    }
}

fn hash(mechanism: Mechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        Mechanism::ScramSha512 => Sha512::digest(data).to_vec(),
        _ => Sha256::digest(data).to_vec(),
    }
}

/// Hi(password, salt, i): PBKDF2 with the mechanism's HMAC.
pub fn salted_password(
    mechanism: Mechanism,
    password: &[u8],
    salt: &[u8],
    iterations: i32,
) -> Vec<u8> {
    let rounds = u32::try_from(iterations.max(1)).unwrap_or(1);
    match mechanism {
        Mechanism::ScramSha512 => {
            let mut out = vec![0; 64];
            pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, rounds, &mut out);
            out
        }
        _ => {
            let mut out = vec![0; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, rounds, &mut out);
            out
        }
    }
}

/// What the server stores, from a SaltedPassword (AlterUserScramCredentials carries one).
pub fn credential_from_salted(
    mechanism: Mechanism,
    salt: Vec<u8>,
    iterations: i32,
    salted: &[u8],
) -> ScramCredential {
    let client_key = hmac(mechanism, salted, b"Client Key");
    ScramCredential {
        salt,
        iterations,
        stored_key: hash(mechanism, &client_key),
        server_key: hmac(mechanism, salted, b"Server Key"),
    }
}

/// A fresh credential for `password` with a random salt.
pub fn new_credential(mechanism: Mechanism, password: &str, iterations: i32) -> ScramCredential {
    let salt = random_bytes(SALT_BYTES);
    let salted = salted_password(mechanism, password.as_bytes(), &salt, iterations);
    credential_from_salted(mechanism, salt, iterations, &salted)
}

/// Whether `password` matches `credential` (used by PLAIN), compared in constant time.
pub fn password_matches(
    mechanism: Mechanism,
    credential: &ScramCredential,
    password: &str,
) -> bool {
    let salted = salted_password(
        mechanism,
        password.as_bytes(),
        &credential.salt,
        credential.iterations,
    );
    let derived = credential_from_salted(mechanism, Vec::new(), 0, &salted);
    bool::from(derived.stored_key.ct_eq(&credential.stored_key))
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut out = vec![0; n];
    rand::rngs::OsRng.fill_bytes(&mut out);
    out
}

/// A printable nonce (base64 has no ',').
pub fn new_nonce() -> String {
    B64.encode(random_bytes(NONCE_BYTES))
}

/// SCRAM's `saslname`: ',' and '=' are escaped as "=2C" and "=3D".
fn decode_saslname(name: &str) -> Result<String, SaslError> {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3);
        match code {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(SaslError::malformed("bad escape in user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

pub fn encode_saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

/// `key=value` attributes of a SCRAM message, in order.
fn attributes(message: &str) -> impl Iterator<Item = (char, &str)> {
    message.split(',').map(|part| {
        let mut chars = part.chars();
        let key = chars.next().unwrap_or('\0');
        let value = part.get(2..).unwrap_or("");
        (key, value)
    })
}

/// The server's side of one exchange.
pub struct ScramServer {
    mechanism: Mechanism,
    state: ServerState,
}

enum ServerState {
    /// Waiting for client-first.
    Initial,
    /// server-first was sent; waiting for client-final.
    Challenged {
        user: String,
        credential: ScramCredential,
        /// Client nonce + server nonce.
        nonce: String,
        /// The gs2 header the client must echo (base64) in `c=`.
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
    },
    /// Finished (well or not): every further message is refused, so a client-final cannot be
    /// replayed on the same exchange.
    Done,
}

/// What the server answers to a client message.
pub enum ScramStep {
    /// server-first: send it and wait for client-final.
    Challenge(Vec<u8>),
    /// server-final: the client is `user`.
    Success { user: String, server_final: Vec<u8> },
}

impl ScramServer {
    pub fn new(mechanism: Mechanism) -> Self {
        ScramServer {
            mechanism,
            state: ServerState::Initial,
        }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Takes the next client message. `lookup` finds a user's credential for this mechanism;
    /// `server_nonce` is fresh randomness (a parameter so tests can use RFC 7677's).
    pub fn step(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<ScramStep, SaslError> {
        let state = std::mem::replace(&mut self.state, ServerState::Done);
        let message = std::str::from_utf8(message)
            .map_err(|_| SaslError::malformed("SCRAM message is not UTF-8"))?;
        match state {
            ServerState::Initial => self.client_first(message, lookup, server_nonce),
            ServerState::Challenged {
                user,
                credential,
                nonce,
                gs2_header,
                client_first_bare,
                server_first,
            } => {
                let auth = Challenge {
                    credential: &credential,
                    nonce: &nonce,
                    gs2_header: &gs2_header,
                    client_first_bare: &client_first_bare,
                    server_first: &server_first,
                };
                let server_final = self.client_final(message, &auth)?;
                Ok(ScramStep::Success { user, server_final })
            }
            ServerState::Done => Err(SaslError::IllegalState(
                "the SCRAM exchange is already over".into(),
            )),
        }
    }

    fn client_first(
        &mut self,
        message: &str,
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
        server_nonce: &str,
    ) -> Result<ScramStep, SaslError> {
        // gs2-header: "n,," or "y,," (no channel binding), optionally "n,a=authzid,".
        let mut parts = message.splitn(3, ',');
        let cbind = parts.next().unwrap_or("");
        let authzid = parts.next();
        let Some(client_first_bare) = parts.next() else {
            return Err(SaslError::malformed("client-first has no gs2 header"));
        };
        if cbind != "n" && cbind != "y" {
            return Err(SaslError::malformed("channel binding is not supported"));
        }
        let authzid = match authzid {
            Some("") | None => None,
            Some(a) => match a.strip_prefix("a=") {
                Some(a) => Some(decode_saslname(a)?),
                None => return Err(SaslError::malformed("bad authzid")),
            },
        };
        let gs2_header = message
            .get(..message.len() - client_first_bare.len())
            .unwrap_or("")
            .to_string();
        let mut user = None;
        let mut client_nonce = None;
        for (key, value) in attributes(client_first_bare) {
            match key {
                'n' => user = Some(decode_saslname(value)?),
                'r' => client_nonce = Some(value),
                'm' => return Err(SaslError::malformed("mandatory extension not supported")),
                _ => {}
            }
        }
        let (Some(user), Some(client_nonce)) = (user, client_nonce) else {
            return Err(SaslError::malformed("client-first lacks n= or r="));
        };
        if client_nonce.is_empty() {
            return Err(SaslError::malformed("empty client nonce"));
        }
        if authzid.as_ref().is_some_and(|a| *a != user) {
            return Err(SaslError::Failed(
                "authorization id must equal the user name".into(),
            ));
        }
        let Some(credential) = lookup(&user) else {
            return Err(SaslError::Failed(format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {}",
                self.mechanism.name()
            )));
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&credential.salt),
            credential.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::Challenged {
            user,
            credential,
            nonce,
            gs2_header,
            client_first_bare: client_first_bare.to_string(),
            server_first,
        };
        Ok(ScramStep::Challenge(reply))
    }

    fn client_final(&self, message: &str, auth: &Challenge<'_>) -> Result<Vec<u8>, SaslError> {
        let failed = || {
            SaslError::Failed(format!(
                "Authentication failed during authentication due to invalid credentials with \
                 SASL mechanism {}",
                self.mechanism.name()
            ))
        };
        let Some(proof_at) = message.rfind(",p=") else {
            return Err(SaslError::malformed("client-final has no proof"));
        };
        let without_proof = &message[..proof_at];
        let proof = B64
            .decode(&message[proof_at + 3..])
            .map_err(|_| SaslError::malformed("proof is not base64"))?;
        let mut channel_binding = None;
        let mut nonce = None;
        for (key, value) in attributes(without_proof) {
            match key {
                'c' => channel_binding = Some(value),
                'r' => nonce = Some(value),
                _ => {}
            }
        }
        let expected_binding = B64.encode(auth.gs2_header);
        if channel_binding != Some(expected_binding.as_str()) {
            return Err(SaslError::malformed("channel binding does not match"));
        }
        // Nonces are public; a plain comparison is fine.
        if nonce != Some(auth.nonce) {
            return Err(SaslError::Failed("nonce does not match".into()));
        }
        let auth_message = format!(
            "{},{},{}",
            auth.client_first_bare, auth.server_first, without_proof
        );
        let stored_key = &auth.credential.stored_key;
        let client_signature = hmac(self.mechanism, stored_key, auth_message.as_bytes());
        if proof.len() != client_signature.len() {
            return Err(failed());
        }
        let client_key: Vec<u8> = proof
            .iter()
            .zip(&client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        let derived = hash(self.mechanism, &client_key);
        if !bool::from(derived.ct_eq(stored_key)) {
            return Err(failed());
        }
        let server_signature = hmac(
            self.mechanism,
            &auth.credential.server_key,
            auth_message.as_bytes(),
        );
        Ok(format!("v={}", B64.encode(server_signature)).into_bytes())
    }
}

struct Challenge<'a> {
    credential: &'a ScramCredential,
    nonce: &'a str,
    gs2_header: &'a str,
    client_first_bare: &'a str,
    server_first: &'a str,
}

/// The client's side of one exchange (for `skein` commands).
pub struct ScramClient {
    mechanism: Mechanism,
    password: String,
    client_first_bare: String,
    client_nonce: String,
    /// The ServerSignature expected in server-final, once client-final is sent.
    server_signature: Option<Vec<u8>>,
}

impl ScramClient {
    pub fn new(mechanism: Mechanism, user: &str, password: &str, client_nonce: String) -> Self {
        ScramClient {
            mechanism,
            password: password.to_string(),
            client_first_bare: format!("n={},r={client_nonce}", encode_saslname(user)),
            client_nonce,
            server_signature: None,
        }
    }

    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// client-final for the server's server-first.
    pub fn client_final(&mut self, server_first: &[u8]) -> Result<Vec<u8>, SaslError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| SaslError::malformed("server-first is not UTF-8"))?;
        let (mut nonce, mut salt, mut iterations) = (None, None, None);
        for (key, value) in attributes(server_first) {
            match key {
                'r' => nonce = Some(value),
                's' => salt = B64.decode(value).ok(),
                'i' => iterations = value.parse::<i32>().ok(),
                'e' => return Err(SaslError::Failed(format!("server error: {value}"))),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(SaslError::malformed("server-first lacks r=, s= or i="));
        };
        if !nonce.starts_with(&self.client_nonce) || nonce.len() == self.client_nonce.len() {
            return Err(SaslError::malformed("server nonce does not extend ours"));
        }
        if iterations < ITERATIONS_MIN {
            return Err(SaslError::Failed(format!(
                "server asks for {iterations} iterations, fewer than {ITERATIONS_MIN}"
            )));
        }
        // A follower computes this on its shard: a peer must not make it hash for minutes.
        if iterations > ITERATIONS_MAX {
            return Err(SaslError::Failed(format!(
                "server asks for {iterations} iterations, more than {ITERATIONS_MAX}"
            )));
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let salted = salted_password(self.mechanism, self.password.as_bytes(), &salt, iterations);
        let client_key = hmac(self.mechanism, &salted, b"Client Key");
        let stored_key = hash(self.mechanism, &client_key);
        let signature = hmac(self.mechanism, &stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac(self.mechanism, &salted, b"Server Key");
        self.server_signature = Some(hmac(self.mechanism, &server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks server-final: the server proves it knows the credential.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), SaslError> {
        let text = std::str::from_utf8(server_final)
            .map_err(|_| SaslError::malformed("server-final is not UTF-8"))?;
        if let Some(e) = text.strip_prefix("e=") {
            return Err(SaslError::Failed(format!("server error: {e}")));
        }
        let got = text
            .strip_prefix("v=")
            .and_then(|v| B64.decode(v).ok())
            .ok_or_else(|| SaslError::malformed("server-final lacks v="))?;
        match &self.server_signature {
            Some(want) if bool::from(want.ct_eq(&got)) => Ok(()),
            _ => Err(SaslError::Failed("the server's signature is wrong".into())),
        }
    }
}

#[cfg(test)]
mod tests;
