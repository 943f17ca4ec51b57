//! The `warden` command line: one binary for serving, configuration, keys and audit (OPS-1).

pub mod audit;
pub mod config;
pub mod keys;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Warden, a database security proxy for PostgreSQL.
///
/// Applications connect to warden as they would to the database. Warden relays their sessions,
/// analyses and audits every statement in a tamper-evident trail, and (as policies are added)
/// encrypts, masks and refuses.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy.
    Serve {
        /// The configuration file (see docs/CONFIG.md).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Work with configuration files.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Manage the keyring of column keys and the master key (security administrators).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Read and check the audit trail (for auditors).
    #[command(subcommand)]
    Audit(Box<audit::AuditCommand>),
}
