//! `skein topic|group|cluster|leader|partition|user|acl`: admin commands that talk to any broker over
//! the Kafka protocol (so they work against Kafka too). Tables for people by default, `--json`
//! for scripts; the exit status is non-zero when anything asked for failed.

mod acl;
mod client;
mod cluster;
mod group;
mod output;
mod topic;
mod user;

use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};

use client::Client;
use output::Report;

/// Options every admin command takes.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Any broker of the cluster: host:port, or several, comma-separated.
    #[arg(
        long = "bootstrap-server",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub bootstrap: String,
    /// Print JSON (one document) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// How long each request may take.
    #[arg(long = "timeout-ms", default_value_t = 30_000, global = true)]
    pub timeout_ms: u64,
    /// Authenticate with SASL (a SASL_PLAINTEXT listener): PLAIN, SCRAM-SHA-256 or
    /// SCRAM-SHA-512 (Kafka's sasl.mechanism).
    #[arg(long = "sasl-mechanism", global = true, requires = "sasl_username")]
    pub sasl_mechanism: Option<String>,
    #[arg(long = "sasl-username", global = true, requires = "sasl_mechanism")]
    pub sasl_username: Option<String>,
    /// The password; SKEIN_SASL_PASSWORD is read when this is not given (keeps it out of `ps`).
    #[arg(
        long = "sasl-password",
        global = true,
        env = "SKEIN_SASL_PASSWORD",
        hide_env_values = true
    )]
    pub sasl_password: Option<String>,
    /// Connect over TLS (an SSL or SASL_SSL listener), trusting the CA certificates in this
    /// PEM file (Kafka's ssl.truststore.location).
    #[arg(long = "ssl-ca", global = true)]
    pub ssl_ca: Option<std::path::PathBuf>,
    /// A PEM file with this client's private key and certificate, for a listener that asks for
    /// one (ssl.client.auth); the broker sees its subject as the principal.
    #[arg(long = "ssl-keystore", global = true, requires = "ssl_ca")]
    pub ssl_keystore: Option<std::path::PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// AlterUserScramCredentials: sets a user's password for one SCRAM mechanism (creating the
    /// user). PLAIN logins check the SCRAM-SHA-512 credential, else the SCRAM-SHA-256 one.
    SetPassword {
        name: String,
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// The new password; SKEIN_USER_PASSWORD is read when this is not given.
        #[arg(long, env = "SKEIN_USER_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value_t = crate::sasl::scram::ITERATIONS_DEFAULT)]
        iterations: i32,
    },
    /// AlterUserScramCredentials: removes a user's credentials (every mechanism it has, or
    /// only --mechanism).
    Delete {
        name: String,
        #[arg(long)]
        mechanism: Option<String>,
    },
    /// DescribeUserScramCredentials: every user (or those named) with mechanisms and iterations.
    List { names: Vec<String> },
}

/// The resource of an ACL: one of these (none: every resource, for `list`).
#[derive(Args, Clone, Debug)]
pub struct AclResource {
    #[arg(long)]
    pub topic: Option<String>,
    #[arg(long)]
    pub group: Option<String>,
    /// The cluster resource (kafka-cluster).
    #[arg(long)]
    pub cluster: bool,
    #[arg(long = "transactional-id")]
    pub transactional_id: Option<String>,
}

/// One ACL binding.
#[derive(Args, Clone, Debug)]
pub struct AclSpec {
    #[command(flatten)]
    pub resource: AclResource,
    /// The resource name is a prefix (Kafka's PREFIXED pattern; LITERAL otherwise).
    #[arg(long)]
    pub prefixed: bool,
    /// User:<name>, or User:* for everyone.
    #[arg(long)]
    pub principal: String,
    /// * or an IP address.
    #[arg(long, default_value = "*")]
    pub host: String,
    /// ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
    /// ALTER_CONFIGS or IDEMPOTENT_WRITE.
    #[arg(long)]
    pub operation: String,
    /// A DENY binding (ALLOW otherwise).
    #[arg(long)]
    pub deny: bool,
}

#[derive(Subcommand, Debug)]
pub enum AclCommand {
    /// CreateAcls: adds one binding.
    Add(AclSpec),
    /// DeleteAcls: removes the binding named exactly (exit 1 when there is none).
    Remove(AclSpec),
    /// DescribeAcls: every binding, or those that apply to a resource, or a principal's.
    List {
        #[command(flatten)]
        resource: AclResource,
        #[arg(long)]
        principal: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TopicCommand {
    /// CreateTopics; -1 takes the broker's default.
    Create {
        name: String,
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        #[arg(long = "replication-factor", default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, KEY=VALUE; repeat for more.
        #[arg(long = "config", value_parser = output::key_value)]
        configs: Vec<(String, String)>,
    },
    /// Every topic name.
    List,
    /// Partitions (leader, replicas, ISR, offline replicas) and configs set on the topic.
    Describe {
        /// Topics to describe; all when none is given.
        names: Vec<String>,
    },
    Delete {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// IncrementalAlterConfigs: set and delete topic configs.
    AlterConfig {
        name: String,
        /// KEY=VALUE to set; repeat for more.
        #[arg(long = "set", value_parser = output::key_value)]
        set: Vec<(String, String)>,
        /// KEY to return to its default; repeat for more.
        #[arg(long = "delete")]
        delete: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum GroupCommand {
    /// Every consumer group of every broker, with its state.
    List,
    /// State, members, and per partition the committed offset, log end offset and lag.
    Describe { group: String },
    /// Moves an inactive group's committed offsets (a dry run unless --execute).
    ResetOffsets {
        group: String,
        /// TOPIC, or TOPIC:P,P,... for some partitions.
        #[arg(long, required = true)]
        topic: String,
        #[arg(long = "to-earliest", group = "to")]
        to_earliest: bool,
        #[arg(long = "to-latest", group = "to")]
        to_latest: bool,
        #[arg(long = "to-offset", group = "to")]
        to_offset: Option<i64>,
        /// Commit the new offsets (without it: show them only).
        #[arg(long)]
        execute: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Brokers, the controller, under-replicated and offline partitions.
    Describe,
}

#[derive(Subcommand, Debug)]
pub enum LeaderCommand {
    /// ElectLeaders: preferred (or unclean) leader election.
    Elect {
        #[arg(long, group = "kind")]
        preferred: bool,
        #[arg(long, group = "kind")]
        unclean: bool,
        /// Only this topic (all its partitions unless --partition).
        #[arg(long)]
        topic: Option<String>,
        #[arg(long, requires = "topic")]
        partition: Option<i32>,
    },
}

#[derive(Subcommand, Debug)]
pub enum PartitionCommand {
    /// AlterPartitionReassignments from a kafka-reassign-partitions JSON plan, an even spread
    /// of every topic's replicas (--rebalance), or every replica off one broker (--drain ID);
    /// a dry run unless --execute.
    Reassign {
        /// {"version":1,"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}
        #[arg(long, conflicts_with_all = ["rebalance", "drain"])]
        plan: Option<std::path::PathBuf>,
        #[arg(long, conflicts_with = "drain")]
        rebalance: bool,
        /// Move every replica off this broker, so that it can be stopped.
        #[arg(long)]
        drain: Option<i32>,
        #[arg(long)]
        execute: bool,
    },
    /// ListPartitionReassignments: reassignments in progress.
    Reassignments,
}

/// Which admin command to run.
#[derive(Debug)]
pub enum AdminCommand {
    Topic(TopicCommand),
    Group(GroupCommand),
    Cluster(ClusterCommand),
    Leader(LeaderCommand),
    Partition(PartitionCommand),
    User(UserCommand),
    Acl(AclCommand),
}

/// Runs one admin command and prints what it found. Errors that stop the command are
/// returned; per-item failures are printed and make the result `Ok(false)`.
pub fn run(common: &Common, command: AdminCommand) -> Result<bool> {
    let login = match (&common.sasl_mechanism, &common.sasl_username) {
        (Some(mechanism), Some(user)) => Some(client::SaslLogin {
            mechanism: crate::sasl::Mechanism::parse(mechanism).ok_or_else(|| {
                anyhow::anyhow!(
                    "--sasl-mechanism {mechanism}: not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                )
            })?,
            user: user.clone(),
            password: common.sasl_password.clone().ok_or_else(|| {
                anyhow::anyhow!("--sasl-password (or SKEIN_SASL_PASSWORD) is needed")
            })?,
        }),
        _ => None,
    };
    let tls = match &common.ssl_ca {
        Some(ca) => Some(
            skein_net::tls::client_config(ca, common.ssl_keystore.as_deref(), true)
                .context("--ssl-ca / --ssl-keystore")?,
        ),
        None => None,
    };
    let mut client = Client::connect(
        &common.bootstrap,
        Duration::from_millis(common.timeout_ms),
        client::Security { login, tls },
    )?;
    let timeout_ms = i32::try_from(common.timeout_ms).unwrap_or(i32::MAX);
    let report: Report = match command {
        AdminCommand::Topic(c) => topic::run(&mut client, c, timeout_ms)?,
        AdminCommand::Group(c) => group::run(&mut client, c)?,
        AdminCommand::Cluster(ClusterCommand::Describe) => cluster::describe(&mut client)?,
        AdminCommand::Leader(LeaderCommand::Elect {
            unclean,
            topic,
            partition,
            ..
        }) => cluster::elect(&mut client, unclean, topic, partition, timeout_ms)?,
        AdminCommand::Partition(PartitionCommand::Reassign {
            plan,
            rebalance,
            drain,
            execute,
        }) => {
            let source = match (plan, rebalance, drain) {
                (Some(path), _, _) => cluster::PlanSource::File(path),
                (None, true, _) => cluster::PlanSource::Rebalance,
                (None, false, Some(id)) => cluster::PlanSource::Drain(id),
                (None, false, None) => anyhow::bail!("give --plan FILE, --rebalance or --drain ID"),
            };
            cluster::reassign(&mut client, source, execute, timeout_ms)?
        }
        AdminCommand::Partition(PartitionCommand::Reassignments) => {
            cluster::reassignments(&mut client, timeout_ms)?
        }
        AdminCommand::User(c) => user::run(&mut client, c)?,
        AdminCommand::Acl(c) => acl::run(&mut client, c)?,
    };
    report.print(common.json);
    Ok(report.ok)
}
