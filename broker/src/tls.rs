//! The `ssl.*` broker settings (Kafka's names) and the node's TLS built from them (node-wide:
//! one `Arc<TlsContext>` that every shard's listeners and connections use; SIGHUP reloads it).

use std::path::PathBuf;

use skein_net::tls::{ClientAuth, TlsOptions, TlsVersion};

/// What `[broker] "ssl.*"` says. Only PEM files are read (Kafka's `ssl.keystore.type=PEM`);
/// JKS and PKCS12 stores are refused at load, as are keys behind a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslSettings {
    /// `ssl.keystore.location`: the node's private key and certificate chain, one PEM file.
    pub keystore_location: Option<PathBuf>,
    /// `ssl.truststore.location`: the CA certificates that sign clients' and other brokers'
    /// certificates.
    pub truststore_location: Option<PathBuf>,
    /// `ssl.client.auth` of the Kafka listener (Kafka's default: none).
    pub client_auth: ClientAuth,
    /// `ssl.enabled.protocols` (Kafka's default: TLSv1.2,TLSv1.3).
    pub enabled_protocols: Vec<TlsVersion>,
    /// `ssl.endpoint.identification.algorithm`: "https" (the default) checks that a broker this
    /// node connects to holds a certificate for the address it was reached at; "" does not.
    pub verify_hostname: bool,
}

impl Default for SslSettings {
    fn default() -> Self {
        SslSettings {
            keystore_location: None,
            truststore_location: None,
            client_auth: ClientAuth::None,
            enabled_protocols: vec![TlsVersion::Tls12, TlsVersion::Tls13],
            verify_hostname: true,
        }
    }
}

impl SslSettings {
    /// Applies one `ssl.*` key; `Ok(false)` for a key that is not an `ssl.*` key we know.
    pub fn set(&mut self, key: &str, value: &str) -> Result<bool, String> {
        let value = value.trim();
        match key {
            "ssl.keystore.location" => self.keystore_location = Some(path(value)?),
            "ssl.truststore.location" => self.truststore_location = Some(path(value)?),
            "ssl.keystore.type" | "ssl.truststore.type" => {
                if value != "PEM" {
                    return Err(format!(
                        "`{value}` stores are not read; use PEM files (ssl.keystore.type = \"PEM\")"
                    ));
                }
            }
            "ssl.key.password" | "ssl.keystore.password" | "ssl.truststore.password" => {
                if !value.is_empty() {
                    return Err(
                        "encrypted keys and stores are not read; use an unencrypted PEM \
                                key readable only by the broker's user"
                            .into(),
                    );
                }
            }
            "ssl.client.auth" => self.client_auth = ClientAuth::parse(value)?,
            "ssl.enabled.protocols" => self.enabled_protocols = TlsVersion::parse_list(value)?,
            "ssl.endpoint.identification.algorithm" => {
                self.verify_hostname = match value {
                    "https" | "HTTPS" => true,
                    "" => false,
                    other => return Err(format!("`{other}` is neither \"https\" nor \"\"")),
                }
            }
            "ssl.principal.mapping.rules" => {
                if value != "DEFAULT" {
                    return Err(
                        "only DEFAULT is built: a client certificate's principal is \
                                its subject's distinguished name"
                            .into(),
                    );
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The options a TLS context is loaded with, or why a listener that needs TLS cannot have
    /// it. `needs_truststore`: this node connects to others over TLS, or asks for client
    /// certificates.
    pub fn options(&self, needs_truststore: bool) -> Result<TlsOptions, String> {
        let keystore = self
            .keystore_location
            .clone()
            .ok_or("a TLS listener needs broker.\"ssl.keystore.location\"")?;
        let needs_truststore = needs_truststore || self.client_auth != ClientAuth::None;
        if needs_truststore && self.truststore_location.is_none() {
            return Err(
                "this layout needs broker.\"ssl.truststore.location\" (client \
                        certificates are asked for, or brokers connect to each other over TLS)"
                    .into(),
            );
        }
        Ok(TlsOptions {
            keystore,
            truststore: self.truststore_location.clone(),
            client_auth: self.client_auth,
            protocols: self.enabled_protocols.clone(),
            verify_hostname: self.verify_hostname,
        })
    }
}

fn path(value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err("the path is empty".into());
    }
    Ok(PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_and_defaults() {
        let mut s = SslSettings::default();
        assert_eq!(s.set("ssl.keystore.location", "/etc/skein/b.pem"), Ok(true));
        assert_eq!(s.set("ssl.keystore.type", "PEM"), Ok(true));
        assert_eq!(s.set("ssl.client.auth", "required"), Ok(true));
        assert_eq!(s.set("ssl.endpoint.identification.algorithm", ""), Ok(true));
        assert_eq!(s.set("ssl.cipher.suites", "x"), Ok(false));
        assert!(s.set("ssl.keystore.type", "JKS").is_err());
        assert!(s.set("ssl.key.password", "secret").is_err());
        assert!(s
            .set("ssl.principal.mapping.rules", "RULE:^CN=(.*)$/$1/")
            .is_err());
        assert!(!s.verify_hostname);
        // Client certificates are asked for: a truststore is needed.
        assert!(s.options(false).is_err());
        assert_eq!(
            s.set("ssl.truststore.location", "/etc/skein/ca.pem"),
            Ok(true)
        );
        let o = s.options(false).expect("options");
        assert_eq!(o.client_auth, ClientAuth::Required);
        assert_eq!(o.protocols, vec![TlsVersion::Tls12, TlsVersion::Tls13]);
    }

    #[test]
    fn a_tls_listener_needs_a_keystore() {
        let s = SslSettings::default();
        assert!(s.options(false).is_err());
        let s = SslSettings {
            keystore_location: Some("/k.pem".into()),
            ..SslSettings::default()
        };
        assert!(s.options(false).is_ok());
        assert!(s.options(true).is_err());
    }
}
