//! SASL PLAIN (RFC 4616): `[authzid] NUL authcid NUL passwd`. The password is checked against
//! the user's SCRAM credential (SCRAM-SHA-512 first, then SCRAM-SHA-256), so PLAIN and SCRAM
//! share one credential store and no password is ever stored.

use super::scram::password_matches;
use super::{CredentialStore, Mechanism, SaslError};

/// One PLAIN message. Borrowed from the token; the password is dropped with it.
#[derive(PartialEq, Eq)]
pub struct PlainMessage<'a> {
    pub user: &'a str,
    pub password: &'a str,
}

// Never print the password.
impl std::fmt::Debug for PlainMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Byte limit of each part, as Kafka's PlainSaslServer has none but a token is bounded anyway.
const PART_BYTES_MAX: usize = 255 * 4;

pub fn parse(token: &[u8]) -> Result<PlainMessage<'_>, SaslError> {
    let text = std::str::from_utf8(token)
        .map_err(|_| SaslError::malformed("PLAIN message is not UTF-8"))?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::malformed(
            "PLAIN message must be authzid NUL user NUL password",
        ));
    };
    if user.is_empty() || password.is_empty() {
        return Err(SaslError::malformed(
            "PLAIN user and password must not be empty",
        ));
    }
    if [authzid, user, password]
        .iter()
        .any(|p| p.len() > PART_BYTES_MAX)
    {
        return Err(SaslError::malformed("PLAIN message part too long"));
    }
    // Kafka: an authorization id other than the user itself is refused.
    if !authzid.is_empty() && authzid != user {
        return Err(SaslError::Failed(
            "Authentication failed: Client requested an authorization id that is different \
             from username"
                .into(),
        ));
    }
    Ok(PlainMessage { user, password })
}

/// Whether the password is the user's (checked against a SCRAM credential).
pub fn verify(msg: &PlainMessage<'_>, store: &dyn CredentialStore) -> bool {
    for m in [Mechanism::ScramSha512, Mechanism::ScramSha256] {
        let Some(code) = m.scram_code() else { continue };
        if let Some(c) = store.scram_credential(msg.user, code) {
            return password_matches(m, &c, msg.password);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_authzid() {
        let m = parse(b"\0alice\0secret").unwrap();
        assert_eq!((m.user, m.password), ("alice", "secret"));
        let m = parse(b"alice\0alice\0p\0w").err();
        assert!(m.is_some(), "a fourth part is refused");
        let m = parse(b"alice\0alice\0pw").unwrap();
        assert_eq!(m.user, "alice");
    }

    #[test]
    fn refuses_malformed_messages() {
        for bad in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0\0pw",
            b"\0alice\0",
            b"\xff\0alice\0pw",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        let e = parse(b"bob\0alice\0pw").unwrap_err();
        assert!(matches!(e, SaslError::Failed(m) if m.contains("authorization id")));
    }

    #[test]
    fn debug_hides_the_password() {
        let m = parse(b"\0alice\0hunter2").unwrap();
        assert!(!format!("{m:?}").contains("hunter2"));
    }
}
