//! ACLs with Kafka's model (pure data and pure functions; any shard): a binding, the filters
//! DescribeAcls and DeleteAcls match bindings with, and the authorizer's decision. Codes are
//! Kafka's wire codes, so the Kafka handlers map nothing. No I/O, no clock.

use std::net::IpAddr;

/// Kafka's ResourceType codes (the ones Skein authorizes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Topic = 2,
    Group = 3,
    Cluster = 4,
    TransactionalId = 5,
}

/// Kafka's PatternType codes of a stored binding (ANY and MATCH exist only in filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternType {
    Literal = 3,
    Prefixed = 4,
}

/// Kafka's AclOperation codes (ANY exists only in filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclOperation {
    All = 2,
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

/// Kafka's AclPermissionType codes (ANY exists only in filters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AclPermission {
    Deny = 2,
    Allow = 3,
}

/// Kafka's filter code for "any value" (resource type, pattern type, operation, permission).
pub const CODE_ANY: i8 = 1;
/// Kafka's PatternType MATCH: every binding that applies to the named resource.
pub const PATTERN_MATCH: i8 = 2;
/// The resource name that a LITERAL binding applies to every resource with.
pub const WILDCARD_RESOURCE: &str = "*";
pub const WILDCARD_PRINCIPAL: &str = "User:*";
pub const WILDCARD_HOST: &str = "*";
/// The cluster resource's one name.
pub const CLUSTER_NAME: &str = "kafka-cluster";
/// The principal of an unauthenticated connection.
pub const ANONYMOUS: &str = "ANONYMOUS";

impl ResourceType {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => Self::Topic,
            3 => Self::Group,
            4 => Self::Cluster,
            5 => Self::TransactionalId,
            _ => return None,
        })
    }
}

impl PatternType {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            3 => Self::Literal,
            4 => Self::Prefixed,
            _ => return None,
        })
    }
}

impl AclOperation {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => Self::All,
            3 => Self::Read,
            4 => Self::Write,
            5 => Self::Create,
            6 => Self::Delete,
            7 => Self::Alter,
            8 => Self::Describe,
            9 => Self::ClusterAction,
            10 => Self::DescribeConfigs,
            11 => Self::AlterConfigs,
            12 => Self::IdempotentWrite,
            _ => return None,
        })
    }

    /// Whether an ALLOW binding for `self` grants `asked` (Kafka: ALL grants everything;
    /// READ, WRITE, DELETE and ALTER grant DESCRIBE; ALTER_CONFIGS grants DESCRIBE_CONFIGS).
    pub fn allows(self, asked: AclOperation) -> bool {
        use AclOperation as Op;
        self == Op::All
            || self == asked
            || (asked == Op::Describe
                && matches!(self, Op::Read | Op::Write | Op::Delete | Op::Alter))
            || (asked == Op::DescribeConfigs && self == Op::AlterConfigs)
    }

    /// Whether a DENY binding for `self` refuses `asked`: only the operation itself or ALL
    /// (Kafka: a DENY READ does not refuse DESCRIBE).
    pub fn denies(self, asked: AclOperation) -> bool {
        self == AclOperation::All || self == asked
    }
}

impl AclPermission {
    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => Self::Deny,
            3 => Self::Allow,
            _ => return None,
        })
    }
}

/// One ACL: who may (or may not) do what to which resources, from where.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    // Field order is the sort order: the image groups bindings by resource type.
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// "User:alice" or "User:*".
    pub principal: String,
    /// "*" or an IP address.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

/// Why a binding cannot be stored (Kafka answers INVALID_REQUEST with the message).
pub fn validate(binding: &AclBinding) -> Result<(), String> {
    if binding.resource_name.is_empty() {
        return Err("resource name must not be empty".into());
    }
    if binding.resource_type == ResourceType::Cluster && binding.resource_name != CLUSTER_NAME {
        return Err(format!("the cluster resource is named {CLUSTER_NAME}"));
    }
    match binding.principal.strip_prefix("User:") {
        Some(name) if !name.is_empty() => {}
        _ => {
            return Err(format!(
                "principal {:?} is not User:<name>",
                binding.principal
            ))
        }
    }
    if binding.host != WILDCARD_HOST && binding.host.parse::<IpAddr>().is_err() {
        return Err(format!("host {:?} is not * or an IP address", binding.host));
    }
    Ok(())
}

impl AclBinding {
    /// Whether this binding applies to the resource `(resource_type, name)`.
    pub fn covers(&self, resource_type: ResourceType, name: &str) -> bool {
        self.resource_type == resource_type
            && match self.pattern_type {
                PatternType::Literal => {
                    self.resource_name == name || self.resource_name == WILDCARD_RESOURCE
                }
                PatternType::Prefixed => name.starts_with(self.resource_name.as_str()),
            }
    }

    /// Whether this binding applies to `user` (the name after "User:") connecting from `host`.
    pub fn applies_to(&self, user: &str, host: Option<IpAddr>) -> bool {
        let principal = self.principal == WILDCARD_PRINCIPAL
            || self.principal.strip_prefix("User:") == Some(user);
        let host_ok = self.host == WILDCARD_HOST
            || host.is_some_and(|h| self.host.parse::<IpAddr>().ok() == Some(h));
        principal && host_ok
    }
}

/// How the authorizer is configured (Kafka's `authorizer.class.name`, `super.users`,
/// `allow.everyone.if.no.acl.found`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthorizerConfig {
    pub enabled: bool,
    /// User names (without "User:").
    pub super_users: Vec<String>,
    pub allow_if_no_acl: bool,
}

/// Kafka's decision for `user` from `host` doing `operation` on `(resource_type, name)`, given
/// every stored binding: super users may do everything; a resource no binding covers is
/// allowed only with `allow_if_no_acl`; a matching DENY beats any ALLOW; else an ALLOW must
/// match. With the authorizer off everything is allowed.
pub fn authorize(
    config: &AuthorizerConfig,
    acls: &[AclBinding],
    user: &str,
    host: Option<IpAddr>,
    operation: AclOperation,
    resource_type: ResourceType,
    name: &str,
) -> bool {
    if !config.enabled || config.super_users.iter().any(|s| s == user) {
        return true;
    }
    let mut covered = false;
    let mut allowed = false;
    for b in acls.iter().filter(|b| b.covers(resource_type, name)) {
        covered = true;
        if !b.applies_to(user, host) {
            continue;
        }
        match b.permission {
            AclPermission::Deny if b.operation.denies(operation) => return false,
            AclPermission::Allow if b.operation.allows(operation) => allowed = true,
            AclPermission::Deny | AclPermission::Allow => {}
        }
    }
    if !covered {
        return config.allow_if_no_acl;
    }
    allowed
}

/// Whether `user` may do `operation` on at least one resource of `resource_type` (Kafka's
/// `authorizeByResourceType`, which lets an idempotent producer with WRITE on some topic get a
/// producer id). Simplified: an ALLOW that applies and is not cancelled by a DENY on the
/// literal wildcard or on the same pattern; with `allow_if_no_acl`, no binding of that type.
pub fn authorize_any(
    config: &AuthorizerConfig,
    acls: &[AclBinding],
    user: &str,
    host: Option<IpAddr>,
    operation: AclOperation,
    resource_type: ResourceType,
) -> bool {
    if !config.enabled || config.super_users.iter().any(|s| s == user) {
        return true;
    }
    let of_type = || acls.iter().filter(|b| b.resource_type == resource_type);
    if config.allow_if_no_acl && of_type().next().is_none() {
        return true;
    }
    let denies = |b: &AclBinding| {
        of_type().any(|d| {
            d.permission == AclPermission::Deny
                && d.operation.denies(operation)
                && d.applies_to(user, host)
                && ((d.pattern_type == PatternType::Literal
                    && d.resource_name == WILDCARD_RESOURCE)
                    || (d.pattern_type == b.pattern_type && d.resource_name == b.resource_name))
        })
    };
    of_type().any(|b| {
        b.permission == AclPermission::Allow
            && b.operation.allows(operation)
            && b.applies_to(user, host)
            && !denies(b)
    })
}

/// A DescribeAcls / DeleteAcls filter; codes as Kafka sends them (`CODE_ANY` for any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclFilter {
    pub resource_type: i8,
    pub resource_name: Option<String>,
    /// ANY, MATCH, LITERAL or PREFIXED.
    pub pattern_type: i8,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: i8,
    pub permission: i8,
}

impl AclFilter {
    /// Whether Kafka would accept this filter (unknown codes are INVALID_REQUEST).
    pub fn validate(&self) -> Result<(), String> {
        if self.resource_type != CODE_ANY && ResourceType::from_code(self.resource_type).is_none() {
            return Err(format!("unknown resource type {}", self.resource_type));
        }
        let pattern_ok = matches!(self.pattern_type, CODE_ANY | PATTERN_MATCH)
            || PatternType::from_code(self.pattern_type).is_some();
        if !pattern_ok {
            return Err(format!("unknown pattern type {}", self.pattern_type));
        }
        if self.operation != CODE_ANY && AclOperation::from_code(self.operation).is_none() {
            return Err(format!("unknown operation {}", self.operation));
        }
        if self.permission != CODE_ANY && AclPermission::from_code(self.permission).is_none() {
            return Err(format!("unknown permission type {}", self.permission));
        }
        Ok(())
    }

    /// Kafka's filter matching: ANY matches every pattern type with the exact name; MATCH
    /// matches every binding that applies to the named resource (the literal name, the literal
    /// wildcard, and prefixes of it); LITERAL / PREFIXED match that pattern type and name.
    pub fn matches(&self, b: &AclBinding) -> bool {
        let code = |v: i8, want: i8| v == CODE_ANY || v == want;
        if !code(self.resource_type, b.resource_type as i8)
            || !code(self.operation, b.operation as i8)
            || !code(self.permission, b.permission as i8)
        {
            return false;
        }
        if self.principal.as_ref().is_some_and(|p| *p != b.principal)
            || self.host.as_ref().is_some_and(|h| *h != b.host)
        {
            return false;
        }
        let name = self.resource_name.as_deref();
        match self.pattern_type {
            PATTERN_MATCH => match name {
                None => true,
                Some(n) => match b.pattern_type {
                    PatternType::Literal => {
                        b.resource_name == n || b.resource_name == WILDCARD_RESOURCE
                    }
                    PatternType::Prefixed => n.starts_with(b.resource_name.as_str()),
                },
            },
            p => {
                (p == CODE_ANY || p == b.pattern_type as i8)
                    && name.is_none_or(|n| n == b.resource_name)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(
        rt: ResourceType,
        name: &str,
        pt: PatternType,
        principal: &str,
        op: AclOperation,
        perm: AclPermission,
    ) -> AclBinding {
        AclBinding {
            resource_type: rt,
            resource_name: name.into(),
            pattern_type: pt,
            principal: principal.into(),
            host: "*".into(),
            operation: op,
            permission: perm,
        }
    }

    fn on() -> AuthorizerConfig {
        AuthorizerConfig {
            enabled: true,
            super_users: vec!["admin".into()],
            allow_if_no_acl: false,
        }
    }

    use AclOperation as Op;
    use AclPermission::{Allow, Deny};
    use PatternType::{Literal, Prefixed};
    use ResourceType::{Cluster, Group, Topic};

    fn can(cfg: &AuthorizerConfig, acls: &[AclBinding], user: &str, op: Op, name: &str) -> bool {
        authorize(cfg, acls, user, None, op, Topic, name)
    }

    #[test]
    fn off_allows_everything_and_on_denies_without_acls() {
        let off = AuthorizerConfig::default();
        assert!(can(&off, &[], "bob", Op::Write, "t"));
        assert!(!can(&on(), &[], "bob", Op::Write, "t"));
        let lenient = AuthorizerConfig {
            allow_if_no_acl: true,
            ..on()
        };
        assert!(can(&lenient, &[], "bob", Op::Write, "t"));
        // A binding on the resource for someone else: no longer "no ACL found".
        let acls = [b(Topic, "t", Literal, "User:carol", Op::Read, Allow)];
        assert!(!can(&lenient, &acls, "bob", Op::Write, "t"));
        assert!(can(&lenient, &acls, "bob", Op::Write, "other"));
    }

    #[test]
    fn super_users_may_do_everything() {
        let acls = [b(Topic, "*", Literal, "User:*", Op::All, Deny)];
        assert!(can(&on(), &acls, "admin", Op::Delete, "t"));
        assert!(!can(&on(), &acls, "bob", Op::Describe, "t"));
    }

    #[test]
    fn deny_beats_allow() {
        let acls = [
            b(Topic, "t", Literal, "User:bob", Op::All, Allow),
            b(Topic, "t", Literal, "User:bob", Op::Write, Deny),
        ];
        assert!(!can(&on(), &acls, "bob", Op::Write, "t"));
        assert!(can(&on(), &acls, "bob", Op::Read, "t"));
    }

    #[test]
    fn implied_operations() {
        for op in [Op::Read, Op::Write, Op::Delete, Op::Alter] {
            let acls = [b(Topic, "t", Literal, "User:bob", op, Allow)];
            assert!(can(&on(), &acls, "bob", Op::Describe, "t"), "{op:?}");
            assert!(!can(&on(), &acls, "bob", Op::Create, "t"), "{op:?}");
        }
        let acls = [b(Topic, "t", Literal, "User:bob", Op::AlterConfigs, Allow)];
        assert!(can(&on(), &acls, "bob", Op::DescribeConfigs, "t"));
        assert!(!can(&on(), &acls, "bob", Op::Describe, "t"));
        // A DENY READ does not deny DESCRIBE.
        let acls = [
            b(Topic, "t", Literal, "User:bob", Op::All, Allow),
            b(Topic, "t", Literal, "User:bob", Op::Read, Deny),
        ];
        assert!(can(&on(), &acls, "bob", Op::Describe, "t"));
        assert!(!can(&on(), &acls, "bob", Op::Read, "t"));
    }

    #[test]
    fn patterns_principals_and_hosts() {
        let acls = [
            b(Topic, "*", Literal, "User:ann", Op::Read, Allow),
            b(Topic, "logs-", Prefixed, "User:*", Op::Write, Allow),
        ];
        assert!(can(&on(), &acls, "ann", Op::Read, "anything"));
        assert!(can(&on(), &acls, "bob", Op::Write, "logs-app"));
        assert!(!can(&on(), &acls, "bob", Op::Write, "log"));
        assert!(!can(&on(), &acls, "bob", Op::Read, "logs-app"));
        // A literal "*" is a wildcard only as a LITERAL name; as a prefix it is a character.
        let acls = [b(Topic, "*", Prefixed, "User:bob", Op::Read, Allow)];
        assert!(!can(&on(), &acls, "bob", Op::Read, "t"));
        let mut by_host = b(Group, "g", Literal, "User:bob", Op::Read, Allow);
        by_host.host = "10.0.0.1".into();
        let acls = [by_host];
        let from = |ip: &str| ip.parse::<IpAddr>().ok();
        let read = |host| authorize(&on(), &acls, "bob", host, Op::Read, Group, "g");
        assert!(read(from("10.0.0.1")));
        assert!(!read(from("10.0.0.2")));
        assert!(!read(None));
        // Resource types do not mix.
        let acls = [b(
            Cluster,
            CLUSTER_NAME,
            Literal,
            "User:bob",
            Op::All,
            Allow,
        )];
        assert!(!can(&on(), &acls, "bob", Op::Read, CLUSTER_NAME));
        assert!(authorize(
            &on(),
            &acls,
            "bob",
            None,
            Op::Alter,
            Cluster,
            CLUSTER_NAME
        ));
    }

    #[test]
    fn any_resource_of_a_type() {
        let any =
            |acls: &[AclBinding], user| authorize_any(&on(), acls, user, None, Op::Write, Topic);
        let acls = [b(Topic, "logs-", Prefixed, "User:bob", Op::Write, Allow)];
        assert!(any(&acls, "bob"));
        assert!(!any(&acls, "ann"));
        assert!(any(&[], "admin"));
        let acls = [
            b(Topic, "logs-", Prefixed, "User:bob", Op::Write, Allow),
            b(Topic, "*", Literal, "User:bob", Op::Write, Deny),
        ];
        assert!(!any(&acls, "bob"));
    }

    #[test]
    fn validation() {
        let good = b(Topic, "t", Literal, "User:bob", Op::Read, Allow);
        assert!(validate(&good).is_ok());
        let mut bad = good.clone();
        bad.principal = "Group:x".into();
        assert!(validate(&bad).is_err());
        let mut bad = good.clone();
        bad.host = "somewhere".into();
        assert!(validate(&bad).is_err());
        let mut bad = good.clone();
        bad.resource_name.clear();
        assert!(validate(&bad).is_err());
        let bad = b(Cluster, "c", Literal, "User:bob", Op::Alter, Allow);
        assert!(validate(&bad).is_err());
    }

    #[test]
    fn filters() {
        let lit = b(Topic, "t1", Literal, "User:bob", Op::Read, Allow);
        let wild = b(Topic, "*", Literal, "User:bob", Op::Read, Allow);
        let pre = b(Topic, "t", Prefixed, "User:bob", Op::Write, Deny);
        let grp = b(Group, "t1", Literal, "User:bob", Op::Read, Allow);
        let f = |rt: i8, name: Option<&str>, pt: i8| AclFilter {
            resource_type: rt,
            resource_name: name.map(String::from),
            pattern_type: pt,
            principal: None,
            host: None,
            operation: CODE_ANY,
            permission: CODE_ANY,
        };
        let all = [&lit, &wild, &pre, &grp];
        let hits = |flt: &AclFilter| all.iter().filter(|x| flt.matches(x)).count();
        assert_eq!(hits(&f(CODE_ANY, None, CODE_ANY)), 4);
        assert_eq!(hits(&f(Topic as i8, None, CODE_ANY)), 3);
        assert_eq!(hits(&f(Topic as i8, Some("t1"), CODE_ANY)), 1);
        assert_eq!(hits(&f(Topic as i8, Some("t1"), PATTERN_MATCH)), 3);
        assert_eq!(hits(&f(Topic as i8, Some("t"), Prefixed as i8)), 1);
        assert_eq!(hits(&f(Topic as i8, None, Literal as i8)), 2);
        let mut by_perm = f(CODE_ANY, None, CODE_ANY);
        by_perm.permission = Deny as i8;
        assert_eq!(hits(&by_perm), 1);
        let mut by_principal = f(CODE_ANY, None, CODE_ANY);
        by_principal.principal = Some("User:ann".into());
        assert_eq!(hits(&by_principal), 0);
        assert!(f(9, None, CODE_ANY).validate().is_err());
        assert!(f(CODE_ANY, None, 0).validate().is_err());
        assert!(f(CODE_ANY, None, PATTERN_MATCH).validate().is_ok());
    }
}
