//! SCRAM credential administration (node-wide, run on the controller shard): changes are
//! forwarded to the active controller, which commits them to the replicated metadata, and
//! answered once this node's metadata shows them. Bootstrap users (`[sasl] bootstrap_users`)
//! take the same road with `only_if_absent`, so a restart never overwrites a changed password.

use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use skein_net::internal::{InternalMessage, ScramUpsert};

use crate::sasl::{scram, Mechanism};
use crate::shard::mesh::ControlCall;
use crate::shard::Shard;

/// How long an answer waits for this node's metadata to show a committed change.
const VISIBLE_WAIT: Duration = Duration::from_secs(5);
const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Credentials to set and remove.
#[derive(Clone, Debug)]
pub struct ScramAlteration {
    pub upserts: Vec<ScramUpsert>,
    /// `(user, mechanism code)`.
    pub deletions: Vec<(String, i8)>,
    pub only_if_absent: bool,
}

/// One outcome per user, in the order the controller gave them.
pub type ScramReply = Vec<(String, Result<(), (ResponseError, Option<String>)>)>;

fn all_failed(alteration: &ScramAlteration, error: ResponseError, message: &str) -> ScramReply {
    let mut users: Vec<String> = Vec::new();
    let names = alteration.upserts.iter().map(|u| &u.user);
    for name in names.chain(alteration.deletions.iter().map(|d| &d.0)) {
        if !users.contains(name) {
            users.push(name.clone());
        }
    }
    users
        .into_iter()
        .map(|u| (u, Err((error, Some(message.to_string())))))
        .collect()
}

/// Sends a change to the controller shard (or runs it here if this is it).
pub async fn alter(shard: &Shard, alteration: ScramAlteration) -> ScramReply {
    if shard.control.is_some() {
        return execute_alter(shard, alteration).await;
    }
    let (reply, rx) = oneshot::channel();
    let target = shard.layout.controller_shard;
    let fallback = all_failed(
        &alteration,
        ResponseError::NotController,
        "controller shard unreachable",
    );
    let call = ControlCall::AlterScram { alteration, reply };
    if shard.mesh.send_control(target, call).await.is_err() {
        return fallback;
    }
    rx.await.unwrap_or(fallback)
}

/// Runs a change on the controller shard.
pub async fn execute_alter(shard: &Shard, alteration: ScramAlteration) -> ScramReply {
    let Some(plane) = &shard.control else {
        return all_failed(
            &alteration,
            ResponseError::NotController,
            "not the controller shard",
        );
    };
    let request = InternalMessage::AlterScramCredentials {
        upserts: alteration.upserts.clone(),
        deletions: alteration.deletions.clone(),
        only_if_absent: alteration.only_if_absent,
    };
    let node_id = shard.layout.node_id.0;
    let results = match plane
        .link
        .call(node_id, request, CONTROLLER_CALL_TIMEOUT)
        .await
    {
        Ok(InternalMessage::AdminResponse { results }) => results,
        Ok(other) => {
            tracing::error!(answer = ?other.error_code(), "the controller answered a credential change oddly");
            return all_failed(
                &alteration,
                ResponseError::UnknownServerError,
                "bad controller answer",
            );
        }
        Err(e) => return all_failed(&alteration, ResponseError::RequestTimedOut, &e.to_string()),
    };
    let reply: ScramReply = results
        .into_iter()
        .map(|r| {
            let outcome = if r.error_code == 0 {
                Ok(())
            } else {
                let e = ResponseError::try_from_code(r.error_code)
                    .unwrap_or(ResponseError::UnknownServerError);
                Err((e, r.error_message))
            };
            (r.name, outcome)
        })
        .collect();
    wait_visible(shard, &alteration, &reply).await;
    reply
}

/// Waits until this node's metadata shows every change that succeeded.
async fn wait_visible(shard: &Shard, alteration: &ScramAlteration, reply: &ScramReply) {
    let done = |user: &str| reply.iter().any(|(u, r)| u == user && r.is_ok());
    let start = Instant::now();
    while start.elapsed() < VISIBLE_WAIT {
        let md = shard.metadata();
        let creds = &md.scram_credentials;
        let upserted = alteration
            .upserts
            .iter()
            .filter(|u| done(&u.user))
            .all(|u| {
                if alteration.only_if_absent {
                    // Bootstrap users keep whatever credentials they already had.
                    return creds.keys().any(|(name, _)| *name == u.user);
                }
                creds
                    .get(&(u.user.clone(), u.mechanism))
                    .is_some_and(|c| c.stored_key == u.stored_key && c.salt == u.salt)
            });
        let deleted = alteration
            .deletions
            .iter()
            .filter(|d| done(&d.0))
            .all(|d| !creds.contains_key(d));
        if upserted && deleted {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    tracing::warn!("credential change committed but not yet visible here");
}

/// A credential for each SCRAM mechanism, derived from a password (a fresh salt each).
pub fn upserts_for_password(user: &str, password: &str, iterations: i32) -> Vec<ScramUpsert> {
    Mechanism::SCRAM
        .into_iter()
        .filter_map(|m| {
            let code = m.scram_code()?;
            let c = scram::new_credential(m, password, iterations);
            Some(ScramUpsert {
                user: user.to_string(),
                mechanism: code,
                iterations: c.iterations,
                salt: c.salt,
                stored_key: c.stored_key,
                server_key: c.server_key,
            })
        })
        .collect()
}

/// Creates the `[sasl] bootstrap_users` that do not exist yet (run on the controller shard of
/// every node; the controller skips users that already have any credential, so the nodes do not
/// race each other or undo a password changed since). Retries until the controller answers.
pub async fn bootstrap(shard: Rc<Shard>) {
    let users = &shard.layout.sasl_bootstrap_users;
    if users.is_empty() {
        return;
    }
    let upserts = users
        .iter()
        .flat_map(|u| upserts_for_password(&u.name, &u.password, scram::ITERATIONS_DEFAULT))
        .collect();
    let alteration = ScramAlteration {
        upserts,
        deletions: Vec::new(),
        only_if_absent: true,
    };
    loop {
        let reply = execute_alter(&shard, alteration.clone()).await;
        if !reply.is_empty() && reply.iter().all(|(_, r)| r.is_ok()) {
            tracing::info!(users = reply.len(), "SASL bootstrap users are in place");
            return;
        }
        glommio::timer::sleep(Duration::from_millis(200)).await;
    }
}
