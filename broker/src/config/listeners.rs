//! The listeners' security: which protocol each listener speaks, and what that asks of the rest
//! of the config (a keystore, a truststore, a login for followers, the members the internal
//! listener admits). Checked when the config loads, so a broker never starts half secured.

use skein_net::tls::{ClientAuth, TlsOptions};

use super::ConfigError;
use crate::sasl::SecurityProtocol;
use crate::settings::BrokerSettings;

/// Kafka's `PROTOCOL://host:port` listener form; a bare `host:port` stays PLAINTEXT.
pub(super) fn split_protocol<'a>(
    key: &str,
    value: Option<&'a str>,
) -> Result<(SecurityProtocol, Option<&'a str>), ConfigError> {
    let Some(v) = value else {
        return Ok((SecurityProtocol::Plaintext, None));
    };
    let Some((protocol, address)) = v.split_once("://") else {
        return Ok((SecurityProtocol::Plaintext, Some(v)));
    };
    let protocol = SecurityProtocol::parse(protocol).ok_or_else(|| {
        ConfigError::invalid(key, format!("unknown security protocol `{protocol}`"))
    })?;
    Ok((protocol, Some(address)))
}

/// A listener that speaks plaintext or TLS, nothing else (internal, metrics): true for TLS.
pub(super) fn tls_or_plaintext(
    key: &str,
    protocol: SecurityProtocol,
    what: &str,
) -> Result<bool, ConfigError> {
    match protocol {
        SecurityProtocol::Plaintext => Ok(false),
        SecurityProtocol::Ssl => Ok(true),
        other => Err(ConfigError::invalid(
            key,
            format!("{} is not for {what}: use PLAINTEXT or SSL", other.name()),
        )),
    }
}

/// Whether the controller quorum speaks mutual TLS: `[controller] security_protocol = "SSL"`,
/// which every node sets alike (a broker-only node dials the voters with it), or a voter's
/// `listeners.internal = "SSL://..."`, which implies it.
pub(super) fn internal_tls(
    listener: SecurityProtocol,
    listener_explicit: bool,
    controller: Option<&str>,
) -> Result<bool, ConfigError> {
    let key = "controller.security_protocol";
    let by_listener = tls_or_plaintext("listeners.internal", listener, "the internal listener")?;
    let by_controller = match controller {
        None => None,
        Some(name) => {
            let protocol = SecurityProtocol::parse(name).ok_or_else(|| {
                ConfigError::invalid(key, format!("unknown security protocol `{name}`"))
            })?;
            Some(tls_or_plaintext(key, protocol, "the controller quorum")?)
        }
    };
    match by_controller {
        Some(tls) if listener_explicit && tls != by_listener => Err(ConfigError::invalid(
            key,
            "disagrees with the protocol written in listeners.internal",
        )),
        Some(tls) => Ok(tls),
        None => Ok(by_listener),
    }
}

/// The listeners of one node, as the config describes them.
pub(super) struct Listeners {
    pub kafka: SecurityProtocol,
    pub internal_tls: bool,
    pub metrics_tls: bool,
    /// The node is a member of a multi-node cluster (or may become one): `controller.voters`
    /// is set. Followers then connect to leaders, so they need what a client needs.
    pub clustered: bool,
}

/// What the node's TLS is loaded from, when a listener uses it; or why the listeners' security
/// does not add up.
pub(super) fn check(
    listeners: &Listeners,
    broker: &BrokerSettings,
) -> Result<Option<TlsOptions>, ConfigError> {
    let kafka = listeners.kafka;
    // Followers log in to a SASL listener like any client: they need a user of their own.
    if kafka.uses_sasl() && listeners.clustered {
        let Some(login) = broker.inter_broker_login() else {
            return Err(ConfigError::invalid(
                "listeners.kafka",
                "a cluster with a SASL listener needs broker.\"sasl.mechanism.inter.broker.protocol\" \
                 and broker.\"sasl.jaas.config\" (the user followers log in as)",
            ));
        };
        if !broker.sasl_enabled_mechanisms.contains(&login.mechanism) {
            return Err(ConfigError::invalid(
                "broker.\"sasl.mechanism.inter.broker.protocol\"",
                format!("{} is not in sasl.enabled.mechanisms", login.mechanism),
            ));
        }
    }
    // On an SSL listener a follower is known by its certificate; without one it would be
    // User:ANONYMOUS, which an authorizer refuses replica fetches.
    if kafka == SecurityProtocol::Ssl
        && listeners.clustered
        && broker.authorizer.enabled
        && broker.ssl.client_auth == ClientAuth::None
    {
        return Err(ConfigError::invalid(
            "broker.\"ssl.client.auth\"",
            "with ACLs on, followers on an SSL listener are known only by their certificates: \
             set \"required\" and list the brokers' subjects in super.users",
        ));
    }
    if listeners.internal_tls && broker.authorizer.super_users.is_empty() {
        return Err(ConfigError::invalid(
            "controller.security_protocol",
            "mutual TLS between the nodes admits the certificate subjects listed in \
             broker.\"super.users\" (\"User:CN=broker-1,O=...\"); list every node's",
        ));
    }
    if !(kafka.uses_tls() || listeners.internal_tls || listeners.metrics_tls) {
        return Ok(None);
    }
    // Followers of an SSL leader, and every node of an SSL quorum, connect over TLS: they
    // check the peer's certificate against a truststore.
    let needs_truststore = listeners.internal_tls || (kafka.uses_tls() && listeners.clustered);
    let key = if kafka.uses_tls() {
        "listeners.kafka"
    } else if listeners.internal_tls {
        "controller.security_protocol"
    } else {
        "listeners.metrics"
    };
    broker
        .ssl
        .options(needs_truststore)
        .map(Some)
        .map_err(|m| ConfigError::invalid(key, m))
}
