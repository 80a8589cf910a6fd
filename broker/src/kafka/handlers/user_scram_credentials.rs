//! DescribeUserScramCredentials (answered from this node's metadata, as KRaft brokers do) and
//! AlterUserScramCredentials (checked here, then forwarded to the active controller). Kafka's
//! rules and error codes: a user named twice is DUPLICATE_RESOURCE, an unknown mechanism
//! UNSUPPORTED_SASL_MECHANISM, iterations outside [4096, 16384] UNACCEPTABLE_CREDENTIAL, a
//! missing credential RESOURCE_NOT_FOUND. Only mechanisms and iterations are ever described.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse,
};
use kafka_protocol::protocol::StrBytes;
use skein_net::internal::ScramUpsert;

use skein_controller::acl::AclOperation;

use crate::kafka::dispatch::RequestCtx;
use crate::sasl::{scram, Mechanism};
use crate::users::{self, ScramAlteration};

pub fn describe(
    ctx: &RequestCtx,
    req: DescribeUserScramCredentialsRequest,
) -> DescribeUserScramCredentialsResponse {
    let md = ctx.shard.metadata();
    let mut by_user: BTreeMap<&str, Vec<CredentialInfo>> = BTreeMap::new();
    for ((user, mechanism), c) in md.scram_credentials.iter() {
        let mut info = CredentialInfo::default();
        info.mechanism = *mechanism;
        info.iterations = c.iterations;
        by_user.entry(user.as_str()).or_default().push(info);
    }
    let result = |user: &str, error: Option<ResponseError>, message: Option<&str>| {
        let mut r = DescribeUserScramCredentialsResult::default();
        r.user = StrBytes::from_string(user.to_string());
        r.error_code = error.map_or(0, |e| e.code());
        r.error_message = message.map(|m| StrBytes::from_string(m.to_string()));
        r
    };
    let mut resp = DescribeUserScramCredentialsResponse::default();
    if !ctx.cluster_authorized(AclOperation::Describe) {
        resp.error_code = ResponseError::ClusterAuthorizationFailed.code();
        return resp;
    }
    match req.users.filter(|u| !u.is_empty()) {
        // Null or empty: every user.
        None => {
            for (user, infos) in by_user {
                let mut r = result(user, None, None);
                r.credential_infos = infos;
                resp.results.push(r);
            }
        }
        Some(names) => {
            let mut seen: Vec<&str> = Vec::new();
            let mut duplicates: Vec<&str> = Vec::new();
            for n in &names {
                let name = n.name.as_str();
                if seen.contains(&name) && !duplicates.contains(&name) {
                    duplicates.push(name);
                }
                seen.push(name);
            }
            let mut answered: Vec<&str> = Vec::new();
            for name in seen {
                if answered.contains(&name) {
                    continue;
                }
                answered.push(name);
                let r = if duplicates.contains(&name) {
                    result(
                        name,
                        Some(ResponseError::DuplicateResource),
                        Some("Cannot describe SCRAM credentials for the same user twice"),
                    )
                } else if let Some(infos) = by_user.get(name) {
                    let mut r = result(name, None, None);
                    r.credential_infos = infos.clone();
                    r
                } else {
                    result(
                        name,
                        Some(ResponseError::ResourceNotFound),
                        Some("Attempt to describe a user credential that does not exist"),
                    )
                };
                resp.results.push(r);
            }
        }
    }
    resp
}

type Outcome = Result<(), (ResponseError, String)>;

pub async fn alter(
    ctx: &RequestCtx,
    req: AlterUserScramCredentialsRequest,
) -> AlterUserScramCredentialsResponse {
    if !ctx.cluster_authorized(AclOperation::Alter) {
        let mut resp = AlterUserScramCredentialsResponse::default();
        let names = req.deletions.iter().map(|d| &d.name);
        for name in names.chain(req.upsertions.iter().map(|u| &u.name)) {
            if resp.results.iter().any(|r| r.user == *name) {
                continue;
            }
            let mut r = AlterUserScramCredentialsResult::default();
            r.user = name.clone();
            r.error_code = ResponseError::ClusterAuthorizationFailed.code();
            resp.results.push(r);
        }
        return resp;
    }
    // Per user, in request order: the first error found, else None.
    let mut users: Vec<(String, Option<(ResponseError, String)>)> = Vec::new();
    let fail = |users: &mut Vec<(String, Option<(ResponseError, String)>)>,
                user: &str,
                outcome: Outcome| {
        let at = match users.iter().position(|(u, _)| u == user) {
            Some(at) => at,
            None => {
                users.push((user.to_string(), None));
                users.len() - 1
            }
        };
        if let (Err(e), Some(slot)) = (outcome, users.get_mut(at)) {
            slot.1.get_or_insert(e);
        }
    };
    let mut keys: Vec<(String, i8)> = Vec::new();
    let mut upserts = Vec::new();
    let mut deletions = Vec::new();
    for d in &req.deletions {
        let user = d.name.as_str();
        let outcome = check_common(user, d.mechanism, &mut keys);
        if outcome.is_ok() {
            deletions.push((user.to_string(), d.mechanism));
        }
        fail(&mut users, user, outcome.map(|_| ()));
    }
    for u in &req.upsertions {
        let user = u.name.as_str();
        let outcome = check_common(user, u.mechanism, &mut keys).and_then(|m| {
            check_iterations(u.iterations)?;
            if u.salt.is_empty() || u.salted_password.is_empty() {
                return Err((
                    ResponseError::UnacceptableCredential,
                    "salt and salted password must not be empty".to_string(),
                ));
            }
            let c =
                scram::credential_from_salted(m, u.salt.to_vec(), u.iterations, &u.salted_password);
            upserts.push(ScramUpsert {
                user: user.to_string(),
                mechanism: u.mechanism,
                iterations: u.iterations,
                salt: c.salt,
                stored_key: c.stored_key,
                server_key: c.server_key,
            });
            Ok(m)
        });
        fail(&mut users, user, outcome.map(|_| ()));
    }
    // A user with any refused item changes nothing.
    let refused = |name: &str| users.iter().any(|(u, e)| u == name && e.is_some());
    upserts.retain(|u| !refused(&u.user));
    deletions.retain(|d| !refused(&d.0));
    let forwarded = if upserts.is_empty() && deletions.is_empty() {
        Vec::new()
    } else {
        let alteration = ScramAlteration {
            upserts,
            deletions,
            only_if_absent: false,
        };
        users::alter(&ctx.shard, alteration).await
    };
    let mut resp = AlterUserScramCredentialsResponse::default();
    for (user, error) in users {
        let mut r = AlterUserScramCredentialsResult::default();
        let outcome = match error {
            Some((e, m)) => Err((e, Some(m))),
            None => forwarded
                .iter()
                .find(|(u, _)| *u == user)
                .map(|(_, o)| o.clone())
                .unwrap_or(Err((
                    ResponseError::UnknownServerError,
                    Some("the controller gave no answer for this user".into()),
                ))),
        };
        if let Err((e, m)) = outcome {
            r.error_code = e.code();
            r.error_message = m.map(StrBytes::from_string);
        }
        r.user = StrBytes::from_string(user);
        resp.results.push(r);
    }
    resp
}

/// Checks a (user, mechanism) item and that it is named once; gives the mechanism.
fn check_common(
    user: &str,
    mechanism: i8,
    keys: &mut Vec<(String, i8)>,
) -> Result<Mechanism, (ResponseError, String)> {
    if user.is_empty() {
        return Err((
            ResponseError::UnacceptableCredential,
            "Username must not be empty".into(),
        ));
    }
    let Some(m) = Mechanism::from_scram_code(mechanism) else {
        return Err((
            ResponseError::UnsupportedSaslMechanism,
            format!("Unknown SCRAM mechanism {mechanism}"),
        ));
    };
    let key = (user.to_string(), mechanism);
    if keys.contains(&key) {
        return Err((
            ResponseError::DuplicateResource,
            "A user credential cannot be altered twice in the same request".into(),
        ));
    }
    keys.push(key);
    Ok(m)
}

fn check_iterations(iterations: i32) -> Result<(), (ResponseError, String)> {
    if iterations < scram::ITERATIONS_MIN {
        return Err((
            ResponseError::UnacceptableCredential,
            format!(
                "Too few iterations: {iterations} (at least {})",
                scram::ITERATIONS_MIN
            ),
        ));
    }
    if iterations > scram::ITERATIONS_MAX {
        return Err((
            ResponseError::UnacceptableCredential,
            format!(
                "Too many iterations: {iterations} (at most {})",
                scram::ITERATIONS_MAX
            ),
        ));
    }
    Ok(())
}
