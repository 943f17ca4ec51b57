//! `warden config check FILE`: validates a configuration the way `warden serve` would load it.
//!
//! Beyond what `serve` checks at startup, an upstream whose encryption policy declares columns
//! gets its keys checked against the keyring and, when the database answers, its policy checked
//! against the live catalog through the service login. A database that cannot be reached is a
//! warning, not a problem: the check may run where the database is not.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Subcommand;
use warden_crypto::ColumnKey;
use warden_encryption::catalog::CatalogProblem;
use warden_encryption::{Catalog, ColumnCrypto, EncryptionPolicy};

use crate::config::{Config, Protocol, UpstreamConfig};
use crate::pg::catalog_loader::{CatalogLoadError, load_catalog};
use crate::pg::service::ServiceClient;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Check a configuration file and every file it names (certificates, keys, users files).
    /// Prints each problem with its file and line; exits with status 1 if there is any.
    Check {
        /// The configuration file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

/// Runs the command; `Ok(false)` when the configuration has problems (already printed).
pub fn run(command: ConfigCommand) -> anyhow::Result<bool> {
    match command {
        ConfigCommand::Check { file } => {
            let config = match Config::load(&file) {
                Ok(c) => c,
                Err(errors) => {
                    for e in &errors.0 {
                        eprintln!("{e}");
                    }
                    eprintln!("{}: {} problem(s) found", file.display(), errors.0.len());
                    return Ok(false);
                }
            };
            let mut problems = crate::server::check(&config);
            if !config.audit_enabled {
                eprintln!("warning: {}", crate::server::AUDIT_DISABLED_WARNING);
            }
            let encryption = check_encryption(&config);
            problems.extend(encryption.problems);
            for warning in &encryption.warnings {
                eprintln!("warning: {warning}");
            }
            for note in &encryption.notes {
                println!("{note}");
            }
            if problems.is_empty() {
                println!(
                    "{}: configuration is valid ({} upstream(s))",
                    file.display(),
                    config.upstreams.len()
                );
                Ok(true)
            } else {
                for p in &problems {
                    eprintln!("{p}");
                }
                eprintln!("{}: {} problem(s) found", file.display(), problems.len());
                Ok(false)
            }
        }
    }
}

/// What the encryption check found.
#[derive(Debug, Default)]
struct EncryptionCheck {
    problems: Vec<String>,
    warnings: Vec<String>,
    /// What was checked and found good.
    notes: Vec<String>,
}

/// Checks every upstream whose policy declares columns: the keyring opens, every column's key
/// is there with the policy's algorithm and mode, and (when the database answers) the policy
/// fits the live schema. Problems name the policy file and line.
fn check_encryption(config: &Config) -> EncryptionCheck {
    let mut check = EncryptionCheck::default();
    let upstreams: Vec<&UpstreamConfig> = config
        .upstreams
        .iter()
        .filter(|u| u.encryption_policy().is_some())
        .collect();
    // Loading the configuration already refused a policy without [keys].
    let (Some(first), Some(keys_config)) = (upstreams.first(), &config.keys) else {
        return check;
    };
    let keys = match keys_config
        .open_keyring()
        .and_then(|keyring| keyring.column_keys())
    {
        Ok(keys) => keys,
        Err(e) => {
            check.problems.push(format!(
                "[keys]: {e} (needed by the encryption policy of upstream `{}`)",
                first.name
            ));
            return check;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            check
                .problems
                .push(format!("cannot start the runtime: {e}"));
            return check;
        }
    };
    for upstream in upstreams {
        let policy = upstream.encryption_policy().expect("filtered above");
        let path = upstream.policy_path.clone().unwrap_or_default();
        let at = |line: usize| format!("{}:{line}", path.display());
        let before = check.problems.len();
        for column in &policy.columns {
            match keys.get(&column.key) {
                None => check.problems.push(format!(
                    "{}: {}: key {:?} is not in the keyring {}; add it with `warden keys add`",
                    at(column.line),
                    column.qualified(),
                    column.key,
                    keys_config.keyring.display()
                )),
                Some(key) => {
                    if let Err(e) = ColumnCrypto::new(Arc::new(column.clone()), Arc::clone(key)) {
                        check.problems.push(format!("{}: {e}", at(column.line)));
                    }
                }
            }
        }
        if check.problems.len() > before {
            // The catalog would only repeat the key problems.
            continue;
        }
        let fetched = runtime.block_on(fetch_catalog(
            upstream,
            policy,
            &keys,
            config.limits.connect_timeout,
        ));
        match fetched {
            Fetched::Catalog(catalog) => check.notes.push(describe(upstream, &catalog)),
            Fetched::Problems(problems) => check.problems.extend(
                problems
                    .iter()
                    .map(|p| format!("{}: {}", at(p.line), p.message)),
            ),
            Fetched::Unreachable(e) => check.warnings.push(format!(
                "upstream `{}`: the database is not reachable, so the policy {} was not checked against its catalog: {e}",
                upstream.name,
                path.display()
            )),
            Fetched::Failed(e) => check.problems.push(format!(
                "upstream `{}`: reading the catalog for the policy {} failed: {e}",
                upstream.name,
                path.display()
            )),
        }
    }
    check
}

/// What reading an upstream's catalog gave.
enum Fetched {
    Catalog(Catalog),
    /// The policy does not fit the live schema.
    Problems(Vec<CatalogProblem>),
    /// The database did not answer (or, on MySQL, refused the login: the MySQL service client
    /// does not tell the two apart).
    Unreachable(String),
    Failed(String),
}

/// Reads the catalog through the service login, with the upstream protocol's client.
async fn fetch_catalog(
    upstream: &UpstreamConfig,
    policy: &EncryptionPolicy,
    keys: &BTreeMap<String, Arc<ColumnKey>>,
    timeout: std::time::Duration,
) -> Fetched {
    let service = upstream
        .service
        .as_ref()
        .expect("a policy with columns needs [upstream.service]");
    const PROGRAM: &str = "warden config check";
    match upstream.protocol {
        Protocol::Postgres => {
            let loaded = async {
                let mut client =
                    ServiceClient::connect_upstream(upstream, timeout, PROGRAM).await?;
                let catalog =
                    load_catalog(&mut client, policy, keys, service.search_path.clone()).await;
                client.close().await;
                catalog
            };
            match loaded.await {
                Ok(catalog) => Fetched::Catalog(catalog),
                Err(CatalogLoadError::Problems(problems)) => Fetched::Problems(problems),
                Err(CatalogLoadError::Service(e)) if e.is_unreachable() => {
                    Fetched::Unreachable(e.to_string())
                }
                Err(e) => Fetched::Failed(e.to_string()),
            }
        }
        Protocol::Mysql => {
            use crate::mysql::catalog_loader::{self, CatalogLoadError as MySqlLoadError};
            use crate::mysql::service::{ServiceClient as MySqlClient, ServiceError};
            let loaded = async {
                let mut client = MySqlClient::connect_upstream(upstream, timeout, PROGRAM).await?;
                let catalog =
                    catalog_loader::load_catalog(&mut client, policy, keys, &service.database)
                        .await;
                client.close().await;
                catalog
            };
            match loaded.await {
                Ok(catalog) => Fetched::Catalog(catalog),
                Err(MySqlLoadError::Problems(problems)) => Fetched::Problems(problems),
                Err(MySqlLoadError::Service(e @ ServiceError::Login { .. })) => {
                    Fetched::Unreachable(e.to_string())
                }
                Err(e) => Fetched::Failed(e.to_string()),
            }
        }
    }
}

/// `upstream `main`: the policy fits the database: 2 column(s) encrypted, 1 plaintext …`.
fn describe(upstream: &UpstreamConfig, catalog: &Catalog) -> String {
    let (mut encrypted, mut plaintext) = (0, Vec::new());
    for table in catalog.tables() {
        for column in &table.columns {
            if column.encrypted().is_some() {
                encrypted += 1;
            } else if column.protection.is_some() {
                plaintext.push(format!("{}.{}.{}", table.schema, table.name, column.name));
            }
        }
    }
    let mut text = format!(
        "upstream `{}`: the encryption policy fits the database: {encrypted} column(s) encrypted",
        upstream.name
    );
    if !plaintext.is_empty() {
        text.push_str(&format!(
            ", {} still plaintext (run `warden encrypt` for: {})",
            plaintext.len(),
            plaintext.join(", ")
        ));
    }
    text
}
