//! `skein user set-password|delete|list`: SCRAM credentials through Kafka's
//! AlterUserScramCredentials and DescribeUserScramCredentials (so they work against Kafka too).
//! The password is salted and hashed here; only the salted password goes to the broker.

use anyhow::{anyhow, bail, Result};
use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest,
    DescribeUserScramCredentialsResponse, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};

use super::client::{Client, Target};
use super::output::{error_json, error_text, table, Report};
use super::UserCommand;
use crate::sasl::{scram, Mechanism};

fn scram_mechanism(name: &str) -> Result<Mechanism> {
    Mechanism::parse(name)
        .filter(|m| m.scram_code().is_some())
        .ok_or_else(|| anyhow!("--mechanism {name}: not SCRAM-SHA-256 or SCRAM-SHA-512"))
}

pub fn run(client: &mut Client, command: UserCommand) -> Result<Report> {
    match command {
        UserCommand::SetPassword {
            name,
            mechanism,
            password,
            iterations,
        } => {
            let m = scram_mechanism(&mechanism)?;
            let code = m
                .scram_code()
                .ok_or_else(|| anyhow!("not a SCRAM mechanism"))?;
            let salt = scram::random_bytes(scram::SALT_BYTES);
            let salted = scram::salted_password(m, password.as_bytes(), &salt, iterations);
            let upsert = ScramCredentialUpsertion::default()
                .with_name(StrBytes::from_string(name.clone()))
                .with_mechanism(code)
                .with_iterations(iterations)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted));
            let request = AlterUserScramCredentialsRequest::default().with_upsertions(vec![upsert]);
            alter(client, request, &format!("set the {m} password of"))
        }
        UserCommand::Delete { name, mechanism } => {
            let mechanisms = match mechanism {
                Some(m) => vec![scram_mechanism(&m)?],
                None => {
                    // Every mechanism the user has.
                    let have = describe(client, vec![name.clone()])?;
                    let codes: Vec<i8> = have
                        .results
                        .iter()
                        .flat_map(|r| r.credential_infos.iter().map(|c| c.mechanism))
                        .collect();
                    let found: Vec<Mechanism> = codes
                        .into_iter()
                        .filter_map(Mechanism::from_scram_code)
                        .collect();
                    if found.is_empty() {
                        bail!("user {name} has no SCRAM credentials");
                    }
                    found
                }
            };
            let deletions = mechanisms
                .iter()
                .filter_map(|m| {
                    Some(
                        ScramCredentialDeletion::default()
                            .with_name(StrBytes::from_string(name.clone()))
                            .with_mechanism(m.scram_code()?),
                    )
                })
                .collect();
            let request = AlterUserScramCredentialsRequest::default().with_deletions(deletions);
            alter(client, request, "deleted the credentials of")
        }
        UserCommand::List { names } => list(client, names),
    }
}

fn alter(
    client: &mut Client,
    request: AlterUserScramCredentialsRequest,
    done: &str,
) -> Result<Report> {
    let ResponseKind::AlterUserScramCredentials(resp) = client.send(
        Target::Any,
        (0, 0),
        RequestKind::AlterUserScramCredentials(request),
    )?
    else {
        bail!("AlterUserScramCredentials answered with another response");
    };
    let mut ok = true;
    let mut text = String::new();
    let mut rows = Vec::new();
    for r in &resp.results {
        let msg = r.error_message.as_deref();
        if r.error_code == 0 {
            text.push_str(&format!("{done} user {}\n", r.user.as_str()));
        } else {
            ok = false;
            text.push_str(&format!(
                "user {}: {}\n",
                r.user.as_str(),
                error_text(r.error_code, msg)
            ));
        }
        rows.push(json!({ "user": r.user.as_str(), "error": error_json(r.error_code, msg) }));
    }
    Ok(Report {
        ok,
        text,
        json: json!({ "results": rows }),
    })
}

fn describe(
    client: &mut Client,
    names: Vec<String>,
) -> Result<DescribeUserScramCredentialsResponse> {
    let users = (!names.is_empty()).then(|| {
        names
            .into_iter()
            .map(|n| UserName::default().with_name(StrBytes::from_string(n)))
            .collect()
    });
    let request = DescribeUserScramCredentialsRequest::default().with_users(users);
    let ResponseKind::DescribeUserScramCredentials(resp) = client.send(
        Target::Any,
        (0, 0),
        RequestKind::DescribeUserScramCredentials(request),
    )?
    else {
        bail!("DescribeUserScramCredentials answered with another response");
    };
    if resp.error_code != 0 {
        bail!(
            "DescribeUserScramCredentials: {}",
            error_text(resp.error_code, resp.error_message.as_deref())
        );
    }
    Ok(resp)
}

fn list(client: &mut Client, names: Vec<String>) -> Result<Report> {
    let resp = describe(client, names)?;
    let mut ok = true;
    let mut rows = Vec::new();
    let mut users: Vec<Value> = Vec::new();
    for r in &resp.results {
        let msg = r.error_message.as_deref();
        ok &= r.error_code == 0;
        let creds: Vec<Value> = r
            .credential_infos
            .iter()
            .map(|c| {
                let name = Mechanism::from_scram_code(c.mechanism)
                    .map_or_else(|| format!("mechanism {}", c.mechanism), |m| m.name().into());
                json!({ "mechanism": name, "iterations": c.iterations })
            })
            .collect();
        let cell = |key: &str| {
            creds
                .iter()
                .map(|c| c[key].to_string().trim_matches('"').to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        rows.push(vec![
            r.user.to_string(),
            cell("mechanism"),
            cell("iterations"),
            error_text(r.error_code, msg),
        ]);
        users.push(json!({
            "user": r.user.as_str(),
            "credentials": creds,
            "error": error_json(r.error_code, msg),
        }));
    }
    Ok(Report {
        ok,
        text: table(&["USER", "MECHANISMS", "ITERATIONS", "ERROR"], &rows),
        json: json!({ "users": users }),
    })
}
