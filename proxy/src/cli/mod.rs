//! The `warden` command line: one binary for serving, configuration, keys and audit (OPS-1).

pub mod audit;
pub mod config;
pub mod keys;
pub mod migrate;

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
    /// Encrypt the existing values of a column declared in the encryption policy, online.
    ///
    /// Works in batches by primary key while the application keeps working through the proxy,
    /// resumes where it stopped when run again, then swaps the column to ciphertext in one
    /// short transaction (its position and indexes are kept).
    ///
    /// Example: warden encrypt --config warden.toml public.customers.id_card
    #[command(verbatim_doc_comment)]
    Encrypt(migrate::MigrateArgs),
    /// Decrypt an encrypted column back to plaintext of its logical type, online (the reverse
    /// of `encrypt`).
    Decrypt(migrate::MigrateArgs),
    /// Re-encrypt a column's values that are sealed with an older version of their key (after
    /// `warden keys rotate`), in place and in batches.
    Rekey(migrate::MigrateArgs),
}
