//! How a follower logs in to its leader's SASL listener (per fetcher connection, on the
//! follower's shard): Kafka's `sasl.mechanism.inter.broker.protocol` and the username and
//! password of `sasl.jaas.config`, sent as any client sends them: SaslHandshake v1, then the
//! mechanism's tokens in SaslAuthenticate v1 requests.

use std::fmt;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use kafka_protocol::protocol::StrBytes;
use skein_net::{decode_response, encode_request, read_frame, CorrelationId, RequestHeader};

use super::scram::{self, ScramClient};
use super::Mechanism;

const CLIENT_ID: &str = "skein-replica-fetcher";
/// Handshake and authenticate answers are small; a peer sending more is not a broker.
const ANSWER_BYTES_MAX: usize = 1 << 20;

/// Who followers log in as.
#[derive(Clone, PartialEq, Eq)]
pub struct InterBrokerLogin {
    pub mechanism: Mechanism,
    pub username: String,
    pub password: String,
}

// The password stays out of logs: settings are debug-printed at start-up.
impl fmt::Debug for InterBrokerLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InterBrokerLogin")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The username and password of a Kafka JAAS line:
/// `org.apache.kafka.common.security.scram.ScramLoginModule required username="b" password="p";`
/// (the login module class, its control flag, then `name = value` options, a value quoted
/// with `\"` escapes or a bare word, and a closing `;`).
pub fn parse_jaas(text: &str) -> Result<(String, String), String> {
    let mut rest = text.trim();
    rest = rest
        .strip_suffix(';')
        .ok_or("a JAAS entry ends with ';'")?
        .trim_end();
    // The module class and the control flag.
    for part in ["login module class", "control flag"] {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        if end == 0 {
            return Err(format!("no {part}"));
        }
        rest = rest[end..].trim_start();
    }
    let (mut username, mut password) = (None, None);
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once('=')
            .ok_or_else(|| format!("`{rest}` is not name=value"))?;
        let (value, after) = jaas_value(after.trim_start())?;
        match name.trim() {
            "username" => username = Some(value),
            "password" => password = Some(value),
            _ => {}
        }
        rest = after.trim_start();
    }
    match (username, password) {
        (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() => Ok((u, p)),
        _ => Err("needs non-empty username and password options".into()),
    }
}

/// One option value and what follows it.
fn jaas_value(text: &str) -> Result<(String, &str), String> {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(char::is_whitespace).unwrap_or(text.len());
        return Ok((text[..end].to_string(), &text[end..]));
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &quoted[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a quoted value is not closed".into())
}

/// Logs in on a fresh connection; `Err` says why (the leader's own message where it sent one).
pub async fn login<S>(stream: &mut S, login: &InterBrokerLogin) -> Result<(), String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut correlation = 0;
    let handshake = SaslHandshakeRequest::default()
        .with_mechanism(StrBytes::from_static_str(login.mechanism.name()));
    let ResponseKind::SaslHandshake(r) = exchange(
        stream,
        &mut correlation,
        ApiKey::SaslHandshake,
        1,
        RequestKind::SaslHandshake(handshake),
    )
    .await?
    else {
        return Err("SaslHandshake answered with another response".into());
    };
    if r.error_code != 0 {
        let offered: Vec<&str> = r.mechanisms.iter().map(|m| m.as_str()).collect();
        return Err(format!(
            "the leader does not take {} (error {}; it offers {})",
            login.mechanism,
            r.error_code,
            offered.join(", ")
        ));
    }
    match login.mechanism {
        Mechanism::Plain => {
            let token = format!("\0{}\0{}", login.username, login.password);
            token_exchange(stream, &mut correlation, token.into_bytes()).await?;
        }
        m => {
            let mut scram =
                ScramClient::new(m, &login.username, &login.password, scram::new_nonce());
            let server_first =
                token_exchange(stream, &mut correlation, scram.client_first()).await?;
            let client_final = scram
                .client_final(&server_first)
                .map_err(|e| e.to_string())?;
            let server_final = token_exchange(stream, &mut correlation, client_final).await?;
            scram
                .verify_server_final(&server_final)
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

async fn token_exchange<S>(
    stream: &mut S,
    correlation: &mut i32,
    token: Vec<u8>,
) -> Result<Bytes, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let ResponseKind::SaslAuthenticate(r) = exchange(
        stream,
        correlation,
        ApiKey::SaslAuthenticate,
        1,
        RequestKind::SaslAuthenticate(request),
    )
    .await?
    else {
        return Err("SaslAuthenticate answered with another response".into());
    };
    if r.error_code != 0 {
        return Err(format!(
            "login refused (error {}): {}",
            r.error_code,
            r.error_message.as_deref().unwrap_or("")
        ));
    }
    Ok(r.auth_bytes)
}

async fn exchange<S>(
    stream: &mut S,
    correlation: &mut i32,
    api_key: ApiKey,
    api_version: i16,
    body: RequestKind,
) -> Result<ResponseKind, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    *correlation += 1;
    let header = RequestHeader {
        api_key,
        api_version,
        correlation_id: CorrelationId(*correlation),
        client_id: Some(StrBytes::from_static_str(CLIENT_ID)),
    };
    let frame = encode_request(&header, &body).map_err(|e| format!("encoding {api_key:?}: {e}"))?;
    skein_net::write_flush(stream, &frame)
        .await
        .map_err(|e| format!("sending {api_key:?}: {e}"))?;
    let answer = read_frame(stream, ANSWER_BYTES_MAX)
        .await
        .map_err(|e| format!("reading the {api_key:?} answer: {e}"))?
        .ok_or_else(|| format!("the leader closed the connection during {api_key:?}"))?;
    let decoded = decode_response(api_key, api_version, answer)
        .map_err(|e| format!("decoding the {api_key:?} answer: {e}"))?;
    if decoded.correlation_id.0 != *correlation {
        return Err(format!("the {api_key:?} answer is for another request"));
    }
    Ok(decoded.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jaas_lines_as_kafka_writes_them() {
        let line = "org.apache.kafka.common.security.scram.ScramLoginModule required \
                    username=\"broker\" password=\"p4ss word\";";
        assert_eq!(
            parse_jaas(line),
            Ok(("broker".to_string(), "p4ss word".to_string()))
        );
        // Spaces around '=', escaped quotes, bare words, other options, a name ending in
        // "username".
        let line = "m.PlainLoginModule required serviceusername=\"x\" username = broker \
                    password = \"say \\\"hi\\\"\" user_broker=\"y\";";
        assert_eq!(
            parse_jaas(line),
            Ok(("broker".to_string(), "say \"hi\"".to_string()))
        );
        assert!(parse_jaas("ScramLoginModule required username=\"b\";").is_err());
        assert!(parse_jaas("M required username=\"b\" password=\"p;").is_err());
        assert!(parse_jaas("M required username=\"\" password=\"p\";").is_err());
        assert!(parse_jaas("M required username=\"b\" password=\"p\"").is_err());
        let debug = format!(
            "{:?}",
            InterBrokerLogin {
                mechanism: Mechanism::ScramSha512,
                username: "broker".into(),
                password: "p4ss".into(),
            }
        );
        assert!(!debug.contains("p4ss"), "{debug}");
    }
}
