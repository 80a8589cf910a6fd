//! SASL on a SASL_PLAINTEXT listener (per connection, on its shard): what a connection may send
//! before it is authenticated, SaslHandshake and SaslAuthenticate, the v0 raw-token framing,
//! session expiry and re-authentication (KIP-368). Kafka's rules: before authentication only
//! ApiVersions, SaslHandshake and SaslAuthenticate are served and anything else closes the
//! connection; a failed authentication is answered and then the connection is closed.
//!
//! A PLAINTEXT listener never creates a [`SaslConnection`]: its requests pay one branch.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use skein_net::{decode_request, DecodedRequest};

use super::dispatch::{self, Reply};
use crate::sasl::{Authenticator, CredentialStore, Mechanism, SaslError, Step};
use crate::settings::BrokerSettings;

/// What the connection does with a frame.
pub enum Gate {
    /// Serve it as a Kafka request.
    Pass(Bytes),
    /// Answer with this and read the next frame.
    Reply(Reply),
    /// Answer with this, then close (Kafka's order after a failed authentication).
    ReplyThenClose(Reply),
    Close,
}

enum State {
    /// Nothing but ApiVersions and SaslHandshake yet.
    Handshake,
    Authenticating {
        mechanism: Mechanism,
        auth: Authenticator,
        /// SaslHandshake v0: tokens come as raw length-prefixed frames, not SaslAuthenticate.
        raw_tokens: bool,
        /// Re-authentication: the session being renewed (its user must not change).
        renewing: Option<Session>,
    },
    Authenticated(Session),
}

#[derive(Clone)]
struct Session {
    /// Shared with every request's context, so serving a request allocates nothing for it.
    user: Rc<str>,
    /// When the client must have re-authenticated by; `None`: never.
    expires_at: Option<Instant>,
}

impl Session {
    fn expired(&self) -> bool {
        self.expires_at.is_some_and(|at| Instant::now() >= at)
    }
}

pub struct SaslConnection {
    state: State,
    enabled: Vec<Mechanism>,
    /// `connections.max.reauth.ms`; 0 = sessions do not expire.
    reauth_ms: u64,
}

/// The API key of a request frame, read without decoding it.
fn api_key_of(frame: &Bytes) -> Option<ApiKey> {
    let raw = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    ApiKey::try_from(raw).ok()
}

impl SaslConnection {
    pub fn new(settings: &BrokerSettings) -> Self {
        SaslConnection {
            state: State::Handshake,
            enabled: settings.sasl_enabled_mechanisms.clone(),
            reauth_ms: settings.connections_max_reauth_ms,
        }
    }

    /// The authenticated user (during a re-authentication, the session being renewed).
    pub fn user(&self) -> Option<&Rc<str>> {
        match &self.state {
            State::Authenticated(session) => Some(&session.user),
            State::Authenticating {
                renewing: Some(session),
                ..
            } => Some(&session.user),
            State::Handshake | State::Authenticating { .. } => None,
        }
    }

    pub fn gate(&mut self, frame: Bytes, store: &dyn CredentialStore) -> Gate {
        match &mut self.state {
            State::Authenticated(session) => match api_key_of(&frame) {
                Some(ApiKey::SaslHandshake) => {
                    let renewing = Some(session.clone());
                    self.handshake(frame, renewing)
                }
                _ if session.expired() => {
                    tracing::debug!(user = %session.user, "SASL session expired; closing");
                    Gate::Close
                }
                _ => Gate::Pass(frame),
            },
            State::Handshake => match api_key_of(&frame) {
                Some(ApiKey::ApiVersions) => Gate::Pass(frame),
                Some(ApiKey::SaslHandshake) => self.handshake(frame, None),
                Some(ApiKey::SaslAuthenticate) => match decode_request(frame) {
                    Ok(r) => Gate::ReplyThenClose(authenticate_reply(
                        &r,
                        Some(ResponseError::IllegalSaslState),
                        Some("SaslAuthenticate before SaslHandshake".into()),
                        Bytes::new(),
                        0,
                    )),
                    Err(_) => Gate::Close,
                },
                other => {
                    tracing::debug!(api = ?other, "request before SASL authentication; closing");
                    Gate::Close
                }
            },
            State::Authenticating {
                raw_tokens: true, ..
            } => self.raw_token(&frame, store),
            State::Authenticating { renewing, .. } => match api_key_of(&frame) {
                Some(ApiKey::SaslAuthenticate) => self.authenticate(frame, store),
                // A client renewing a live session may still have requests in flight.
                _ if renewing.as_ref().is_some_and(|s| !s.expired()) => Gate::Pass(frame),
                other => {
                    tracing::debug!(api = ?other, "request during SASL authentication; closing");
                    Gate::Close
                }
            },
        }
    }

    fn handshake(&mut self, frame: Bytes, renewing: Option<Session>) -> Gate {
        let Ok(request) = decode_request(frame) else {
            return Gate::Close;
        };
        let RequestKind::SaslHandshake(body) = &request.body else {
            return Gate::Close;
        };
        let version = request.header.api_version;
        let mut resp = SaslHandshakeResponse::default();
        resp.mechanisms = self
            .enabled
            .iter()
            .map(|m| StrBytes::from_static_str(m.name()))
            .collect();
        let asked = Mechanism::parse(body.mechanism.as_str()).filter(|m| self.enabled.contains(m));
        let Some(mechanism) = asked else {
            tracing::debug!(mechanism = %body.mechanism.as_str(), "unsupported SASL mechanism");
            resp.error_code = ResponseError::UnsupportedSaslMechanism.code();
            return Gate::ReplyThenClose(encode(&request, ResponseKind::SaslHandshake(resp)));
        };
        // KIP-368: a session may only be renewed with the mechanism it began with; the user
        // is checked when the exchange ends.
        self.state = State::Authenticating {
            mechanism,
            auth: Authenticator::new(mechanism),
            raw_tokens: version == 0,
            renewing,
        };
        Gate::Reply(encode(&request, ResponseKind::SaslHandshake(resp)))
    }

    fn authenticate(&mut self, frame: Bytes, store: &dyn CredentialStore) -> Gate {
        let Ok(request) = decode_request(frame) else {
            return Gate::Close;
        };
        let RequestKind::SaslAuthenticate(body) = &request.body else {
            return Gate::Close;
        };
        match self.step(&body.auth_bytes, store) {
            Ok((token, lifetime_ms)) => Gate::Reply(authenticate_reply(
                &request,
                None,
                None,
                Bytes::from(token),
                lifetime_ms.unwrap_or(0),
            )),
            Err(e) => {
                let code = match e {
                    SaslError::Failed(_) => ResponseError::SaslAuthenticationFailed,
                    SaslError::IllegalState(_) => ResponseError::IllegalSaslState,
                };
                Gate::ReplyThenClose(authenticate_reply(
                    &request,
                    Some(code),
                    Some(e.to_string()),
                    Bytes::new(),
                    0,
                ))
            }
        }
    }

    /// SaslHandshake v0: the token is the whole frame and so is the answer. A failure closes
    /// the connection without an answer (there is no error field to put it in).
    fn raw_token(&mut self, frame: &Bytes, store: &dyn CredentialStore) -> Gate {
        match self.step(frame, store) {
            Ok((token, _)) => {
                let mut out = BytesMut::with_capacity(4 + token.len());
                out.put_u32(u32::try_from(token.len()).unwrap_or(u32::MAX));
                out.put_slice(&token);
                Gate::Reply(Reply::Frame(out.freeze()))
            }
            Err(_) => Gate::Close,
        }
    }

    /// Runs one token through the exchange. `Ok((token, None))`: more to come;
    /// `Ok((token, Some(session_lifetime_ms)))`: authenticated.
    fn step(
        &mut self,
        token: &[u8],
        store: &dyn CredentialStore,
    ) -> Result<(Vec<u8>, Option<i64>), SaslError> {
        let State::Authenticating {
            mechanism,
            auth,
            renewing,
            ..
        } = &mut self.state
        else {
            return Err(SaslError::IllegalState("no SASL exchange under way".into()));
        };
        let mechanism = *mechanism;
        let outcome = auth.step(token, store);
        let (user, token) = match outcome {
            Ok(Step::Continue(t)) => return Ok((t, None)),
            Ok(Step::Done { user, token }) => (user, token),
            Err(e) => {
                tracing::info!(%mechanism, error = %e, "SASL authentication failed");
                self.state = State::Handshake;
                return Err(e);
            }
        };
        if let Some(old) = renewing.as_ref().filter(|s| *s.user != *user) {
            tracing::info!(from = %old.user, to = %user, "re-authentication changed the user");
            self.state = State::Handshake;
            return Err(SaslError::Failed(
                "Cannot change principals during re-authentication".into(),
            ));
        }
        let lifetime_ms = i64::try_from(self.reauth_ms).unwrap_or(i64::MAX);
        let expires_at =
            (self.reauth_ms > 0).then(|| Instant::now() + Duration::from_millis(self.reauth_ms));
        tracing::debug!(%user, %mechanism, "SASL authentication succeeded");
        self.state = State::Authenticated(Session {
            user: Rc::from(user),
            expires_at,
        });
        Ok((token, Some(lifetime_ms)))
    }
}

fn encode(request: &DecodedRequest, body: ResponseKind) -> Reply {
    dispatch::encode(
        request.header.api_key,
        request.header.api_version,
        request.header.correlation_id,
        &body,
    )
}

fn authenticate_reply(
    request: &DecodedRequest,
    error: Option<ResponseError>,
    message: Option<String>,
    token: Bytes,
    session_lifetime_ms: i64,
) -> Reply {
    let mut resp = SaslAuthenticateResponse::default();
    resp.error_code = error.map_or(0, |e| e.code());
    resp.error_message = message.map(StrBytes::from_string);
    resp.auth_bytes = token;
    resp.session_lifetime_ms = session_lifetime_ms;
    encode(request, ResponseKind::SaslAuthenticate(resp))
}

/// SaslHandshake and SaslAuthenticate where no exchange is expected: a PLAINTEXT listener, or
/// a SaslAuthenticate after authentication. Kafka answers ILLEGAL_SASL_STATE and keeps the
/// connection.
pub fn out_of_place(request: &RequestKind) -> Option<ResponseKind> {
    match request {
        RequestKind::SaslHandshake(_) => {
            let mut resp = SaslHandshakeResponse::default();
            resp.error_code = ResponseError::IllegalSaslState.code();
            Some(ResponseKind::SaslHandshake(resp))
        }
        RequestKind::SaslAuthenticate(_) => {
            let mut resp = SaslAuthenticateResponse::default();
            resp.error_code = ResponseError::IllegalSaslState.code();
            resp.error_message = Some(StrBytes::from_static_str(
                "no SASL exchange is expected on this connection",
            ));
            Some(ResponseKind::SaslAuthenticate(resp))
        }
        _ => None,
    }
}
