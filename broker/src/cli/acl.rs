//! `skein acl add|list|remove`: ACL bindings through Kafka's CreateAcls, DescribeAcls and
//! DeleteAcls (so they work against Kafka too).

use anyhow::{anyhow, bail, Result};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;
use serde_json::{json, Value};
use skein_controller::acl::{CLUSTER_NAME, CODE_ANY, PATTERN_MATCH};

use super::client::{Client, Target};
use super::output::{error_json, error_text, table, Report};
use super::{AclCommand, AclResource, AclSpec};

/// Kafka's names and codes.
const OPERATIONS: [(&str, i8); 11] = [
    ("ALL", 2),
    ("READ", 3),
    ("WRITE", 4),
    ("CREATE", 5),
    ("DELETE", 6),
    ("ALTER", 7),
    ("DESCRIBE", 8),
    ("CLUSTER_ACTION", 9),
    ("DESCRIBE_CONFIGS", 10),
    ("ALTER_CONFIGS", 11),
    ("IDEMPOTENT_WRITE", 12),
];
const RESOURCE_TYPES: [(&str, i8); 4] = [
    ("TOPIC", 2),
    ("GROUP", 3),
    ("CLUSTER", 4),
    ("TRANSACTIONAL_ID", 5),
];
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
/// CreateAcls/DeleteAcls/DescribeAcls v1 added pattern types; v3 is the newest.
const VERSIONS: (i16, i16) = (1, 3);

fn operation_code(name: &str) -> Result<i8> {
    let wanted = name.to_ascii_uppercase().replace('-', "_");
    OPERATIONS
        .iter()
        .find(|(n, _)| *n == wanted)
        .map(|(_, c)| *c)
        .ok_or_else(|| anyhow!("--operation {name}: not one of Kafka's ACL operations"))
}

fn name_of(table: &[(&'static str, i8)], code: i8) -> String {
    table
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("code {code}"), |(n, _)| (*n).to_string())
}

fn pattern_name(code: i8) -> String {
    match code {
        LITERAL => "LITERAL".into(),
        PREFIXED => "PREFIXED".into(),
        other => format!("code {other}"),
    }
}

/// (resource type code, name), or None when no resource was named.
fn resource(r: &AclResource) -> Result<Option<(i8, String)>> {
    let given = [
        r.topic.as_ref().map(|n| (2, n.clone())),
        r.group.as_ref().map(|n| (3, n.clone())),
        r.cluster.then(|| (4, CLUSTER_NAME.to_string())),
        r.transactional_id.as_ref().map(|n| (5, n.clone())),
    ];
    let mut named = given.into_iter().flatten();
    let first = named.next();
    if named.next().is_some() {
        bail!("name one resource: --topic, --group, --cluster or --transactional-id");
    }
    Ok(first)
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

pub fn run(client: &mut Client, command: AclCommand) -> Result<Report> {
    match command {
        AclCommand::Add(spec) => add(client, &spec),
        AclCommand::Remove(spec) => remove(client, &spec),
        AclCommand::List {
            resource: r,
            principal,
        } => list(client, &r, principal),
    }
}

/// The exact binding a spec names: (resource type, name, pattern, operation, permission).
fn binding(spec: &AclSpec) -> Result<(i8, String, i8, i8, i8)> {
    let (resource_type, name) =
        resource(&spec.resource)?.ok_or_else(|| anyhow!("name a resource"))?;
    let pattern = if spec.prefixed { PREFIXED } else { LITERAL };
    let permission = if spec.deny { DENY } else { ALLOW };
    Ok((
        resource_type,
        name,
        pattern,
        operation_code(&spec.operation)?,
        permission,
    ))
}

fn add(client: &mut Client, spec: &AclSpec) -> Result<Report> {
    let (resource_type, name, pattern, operation, permission) = binding(spec)?;
    let creation = AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(&name))
        .with_resource_pattern_type(pattern)
        .with_principal(text(&spec.principal))
        .with_host(text(&spec.host))
        .with_operation(operation)
        .with_permission_type(permission);
    let request = CreateAclsRequest::default().with_creations(vec![creation]);
    let ResponseKind::CreateAcls(resp) =
        client.send(Target::Any, VERSIONS, RequestKind::CreateAcls(request))?
    else {
        bail!("CreateAcls answered with another response");
    };
    let r = resp
        .results
        .first()
        .ok_or_else(|| anyhow!("CreateAcls answered without a result"))?;
    let msg = r.error_message.as_deref();
    let ok = r.error_code == 0;
    let text = if ok {
        format!("added the ACL on {name} for {}\n", spec.principal)
    } else {
        format!("{}\n", error_text(r.error_code, msg))
    };
    Ok(Report {
        ok,
        text,
        json: json!({ "error": error_json(r.error_code, msg) }),
    })
}

fn remove(client: &mut Client, spec: &AclSpec) -> Result<Report> {
    let (resource_type, name, pattern, operation, permission) = binding(spec)?;
    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(resource_type)
        .with_resource_name_filter(Some(text(&name)))
        .with_pattern_type_filter(pattern)
        .with_principal_filter(Some(text(&spec.principal)))
        .with_host_filter(Some(text(&spec.host)))
        .with_operation(operation)
        .with_permission_type(permission);
    let request = DeleteAclsRequest::default().with_filters(vec![filter]);
    let ResponseKind::DeleteAcls(resp) =
        client.send(Target::Any, VERSIONS, RequestKind::DeleteAcls(request))?
    else {
        bail!("DeleteAcls answered with another response");
    };
    let r = resp
        .filter_results
        .first()
        .ok_or_else(|| anyhow!("DeleteAcls answered without a result"))?;
    let msg = r.error_message.as_deref();
    let removed = r.matching_acls.len();
    // Removing nothing is a failure: the binding named does not exist.
    let ok = r.error_code == 0 && removed > 0;
    let text = if r.error_code != 0 {
        format!("{}\n", error_text(r.error_code, msg))
    } else {
        format!("removed {removed} ACL(s)\n")
    };
    Ok(Report {
        ok,
        text,
        json: json!({ "removed": removed, "error": error_json(r.error_code, msg) }),
    })
}

fn list(client: &mut Client, r: &AclResource, principal: Option<String>) -> Result<Report> {
    let (resource_type, name) = match resource(r)? {
        Some((t, n)) => (t, Some(text(&n))),
        None => (CODE_ANY, None),
    };
    // A named resource lists every binding that applies to it (Kafka's MATCH).
    let pattern = if name.is_some() {
        PATTERN_MATCH
    } else {
        CODE_ANY
    };
    let request = DescribeAclsRequest::default()
        .with_resource_type_filter(resource_type)
        .with_resource_name_filter(name)
        .with_pattern_type_filter(pattern)
        .with_principal_filter(principal.as_deref().map(text))
        .with_host_filter(None)
        .with_operation(CODE_ANY)
        .with_permission_type(CODE_ANY);
    let ResponseKind::DescribeAcls(resp) =
        client.send(Target::Any, VERSIONS, RequestKind::DescribeAcls(request))?
    else {
        bail!("DescribeAcls answered with another response");
    };
    if resp.error_code != 0 {
        bail!(
            "DescribeAcls: {}",
            error_text(resp.error_code, resp.error_message.as_deref())
        );
    }
    let mut rows = Vec::new();
    let mut acls: Vec<Value> = Vec::new();
    for res in &resp.resources {
        for a in &res.acls {
            let row = vec![
                name_of(&RESOURCE_TYPES, res.resource_type),
                res.resource_name.to_string(),
                pattern_name(res.pattern_type),
                a.principal.to_string(),
                a.host.to_string(),
                name_of(&OPERATIONS, a.operation),
                if a.permission_type == DENY {
                    "DENY".into()
                } else {
                    "ALLOW".into()
                },
            ];
            acls.push(json!({
                "resource_type": row[0],
                "resource_name": row[1],
                "pattern_type": row[2],
                "principal": row[3],
                "host": row[4],
                "operation": row[5],
                "permission": row[6],
            }));
            rows.push(row);
        }
    }
    Ok(Report {
        ok: true,
        text: table(
            &[
                "TYPE",
                "NAME",
                "PATTERN",
                "PRINCIPAL",
                "HOST",
                "OPERATION",
                "PERMISSION",
            ],
            &rows,
        ),
        json: json!({ "acls": acls }),
    })
}
