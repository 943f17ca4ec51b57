//! `warden encrypt`, `warden decrypt` and `warden rekey`: the online migrations of a column's
//! existing values (ENC-7).
//!
//! ```text
//! warden encrypt --config FILE [--upstream NAME] [--batch 1000] [SCHEMA.]TABLE.COLUMN
//! ```
//!
//! The command reads the configuration like `serve` does, opens the keyring, logs in to the
//! database with the upstream's `[upstream.service]` login, loads the catalog (which checks
//! the policy against the live schema) and then carries out the migration (`migrate/job.rs`)
//! while the application keeps working through the proxy: `migrate/job.rs` on PostgreSQL,
//! `migrate/my_job.rs` on MySQL / MariaDB. The column must be declared in the upstream's policy
//! and be plaintext (`encrypt`) or encrypted (`decrypt`, `rekey`); its table needs a
//! single-column primary key, the order the batches follow. Running proxies learn the new
//! state at their next catalog refresh.

mod convert;
mod job;
mod my_job;
mod my_sql;
mod progress;
mod sql;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use warden_crypto::ColumnKey;
use warden_encryption::catalog::{CatalogProblem, ColumnState};
use warden_encryption::{Catalog, ColumnCrypto, ColumnPolicy, EncryptionPolicy};

pub use job::Outcome;

use crate::config::{Config, Protocol, UpstreamConfig};
use crate::mysql::catalog_loader::{
    CatalogLoadError as MyCatalogLoadError, load_catalog as my_load_catalog,
};
use crate::mysql::service::ServiceClient as MyServiceClient;
use crate::pg::catalog_loader::{CatalogLoadError, load_catalog};
use crate::pg::service::ServiceClient;

/// The keyring's column keys, by name.
type ColumnKeys = std::collections::BTreeMap<String, Arc<ColumnKey>>;

/// Which way a migration goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Plaintext to ciphertext.
    Encrypt,
    /// Ciphertext back to plaintext of the logical type.
    Decrypt,
    /// Ciphertext of older key versions to the active version.
    Rekey,
}

impl Direction {
    /// The command's name.
    pub fn command(self) -> &'static str {
        match self {
            Direction::Encrypt => "encrypt",
            Direction::Decrypt => "decrypt",
            Direction::Rekey => "rekey",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Direction::Encrypt => "encrypt",
            Direction::Decrypt => "decrypt",
            Direction::Rekey => "re-encrypt",
        }
    }

    fn past(self) -> &'static str {
        match self {
            Direction::Encrypt => "encrypted",
            Direction::Decrypt => "decrypted",
            Direction::Rekey => "re-encrypted",
        }
    }
}

/// The arguments every migration command takes.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The warden configuration file: the upstream's policy and service login, and the keyring.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
    /// The upstream whose database holds the column (needed when several have a policy).
    #[arg(long, value_name = "NAME")]
    pub upstream: Option<String>,
    /// Rows per batch; each batch is one transaction.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch: u32,
    /// Stop after this many batches, as if interrupted (for tests of resuming).
    #[arg(long, hide = true, value_name = "N")]
    pub stop_after_batches: Option<u64>,
    /// The column: SCHEMA.TABLE.COLUMN, or TABLE.COLUMN (resolved through the service login's
    /// search_path). Names are case-folded unless double-quoted.
    #[arg(value_name = "COLUMN")]
    pub column: String,
}

/// Runs a migration command, printing what it does; progress goes to standard error.
pub fn run(direction: Direction, args: MigrateArgs) -> Result<Outcome> {
    let config = Config::load(&args.config).map_err(|errors| {
        anyhow!(
            "the configuration is not valid:\n{errors}\n(check it with `warden config check {}`)",
            args.config.display()
        )
    })?;
    let upstream = choose_upstream(&config, args.upstream.as_deref())?;
    let policy = upstream
        .encryption_policy()
        .expect("chosen for its policy")
        .clone();
    let service = upstream.service.as_ref().expect("checked with the policy");
    // MySQL resolves two-part names in the service login's database.
    let search_path = match upstream.protocol {
        Protocol::Postgres => service.search_path.clone(),
        Protocol::Mysql => vec![service.database.clone()],
    };
    let column = find_column(&policy, &args.column, &search_path)?;
    let keys = config
        .keys
        .as_ref()
        .expect("checked with the policy")
        .open_keyring()
        .context("cannot open the keyring")?
        .column_keys()
        .context("cannot read the keyring's column keys")?;
    let key = keys.get(&column.key).cloned().ok_or_else(|| {
        anyhow!(
            "{}: key {:?} is not in the keyring; add it with `warden keys add`",
            column.qualified(),
            column.key
        )
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let mut out = std::io::stdout().lock();
    let outcome = match upstream.protocol {
        Protocol::Postgres => runtime.block_on(run_pg(
            direction, &args, &config, upstream, &policy, column, &keys, key, &mut out,
        )),
        Protocol::Mysql => runtime.block_on(run_mysql(
            direction, &args, &config, upstream, &policy, column, &keys, key, &mut out,
        )),
    }?;
    if let Outcome::Stopped { rows, batches } = &outcome {
        use std::io::Write as _;
        writeln!(
            out,
            "stopped after {batches} batch(es) as asked (--stop-after-batches); {} row(s) done by this run; \
             run `warden {}` again to resume",
            progress::thousands(*rows),
            direction.command()
        )?;
    }
    Ok(outcome)
}

/// The policy's problems with the live schema, each with its policy file line.
fn policy_problems(upstream: &UpstreamConfig, problems: &[CatalogProblem]) -> anyhow::Error {
    let path = upstream.policy_path.clone().unwrap_or_default();
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}:{}: {}", path.display(), p.line, p.message))
        .collect();
    anyhow!(
        "the encryption policy does not fit the database:\n{}",
        lines.join("\n")
    )
}

/// A migration on PostgreSQL.
#[allow(clippy::too_many_arguments)]
async fn run_pg(
    direction: Direction,
    args: &MigrateArgs,
    config: &Config,
    upstream: &UpstreamConfig,
    policy: &EncryptionPolicy,
    column: &ColumnPolicy,
    keys: &ColumnKeys,
    key: Arc<ColumnKey>,
    out: &mut dyn std::io::Write,
) -> Result<Outcome> {
    let service = upstream.service.as_ref().expect("checked with the policy");
    let application_name = format!("warden {}", direction.command());
    let mut client =
        ServiceClient::connect_upstream(upstream, config.limits.connect_timeout, &application_name)
            .await?;
    let catalog = match load_catalog(&mut client, policy, keys, service.search_path.clone()).await {
        Ok(c) => c,
        Err(CatalogLoadError::Problems(problems)) => {
            return Err(policy_problems(upstream, &problems));
        }
        Err(e) => return Err(e.into()),
    };
    let (live, crypto) = protected(&catalog, direction, column)?;
    let (pk, pk_type) = primary_key(&mut client, live.0, &column.schema, &column.table).await?;
    if direction == Direction::Encrypt {
        refuse_default(&mut client, live.0, live.1, column).await?;
    }
    // A second connection reads ahead while this one writes.
    let reader =
        ServiceClient::connect_upstream(upstream, config.limits.connect_timeout, &application_name)
            .await
            .context("cannot open the migration's second (reading) connection")?;
    let names = sql::Names::new(&column.schema, &column.table, &column.column, &pk, &pk_type);
    let mut job = job::Job {
        client: &mut client,
        reader,
        converter: converter(
            direction,
            convert::Dialect::Postgres,
            column,
            &names.pk,
            crypto,
            key,
        ),
        names,
        batch: args.batch as usize,
        stop_after_batches: args.stop_after_batches,
        batches: 0,
        out,
    };
    let outcome = job.run().await;
    let job::Job { reader, .. } = job;
    reader.close().await;
    client.close().await;
    outcome
}

/// A migration on MySQL / MariaDB.
#[allow(clippy::too_many_arguments)]
async fn run_mysql(
    direction: Direction,
    args: &MigrateArgs,
    config: &Config,
    upstream: &UpstreamConfig,
    policy: &EncryptionPolicy,
    column: &ColumnPolicy,
    keys: &ColumnKeys,
    key: Arc<ColumnKey>,
    out: &mut dyn std::io::Write,
) -> Result<Outcome> {
    let service = upstream.service.as_ref().expect("checked with the policy");
    let application_name = format!("warden {}", direction.command());
    let mut client = MyServiceClient::connect_upstream(
        upstream,
        config.limits.connect_timeout,
        &application_name,
    )
    .await?;
    let outcome = async {
        let catalog = match my_load_catalog(&mut client, policy, keys, &service.database).await {
            Ok(c) => c,
            Err(MyCatalogLoadError::Problems(problems)) => {
                return Err(policy_problems(upstream, &problems));
            }
            Err(e) => return Err(e.into()),
        };
        let (_, crypto) = protected(&catalog, direction, column)?;
        let (names, table) = my_job::inspect(
            &mut client,
            &column.schema,
            &column.table,
            &column.column,
            direction,
        )
        .await?;
        let mut job = my_job::Job {
            client: &mut client,
            converter: converter(
                direction,
                convert::Dialect::MySql,
                column,
                &names.pk,
                crypto,
                key,
            ),
            names,
            table,
            batch: args.batch as usize,
            stop_after_batches: args.stop_after_batches,
            batches: 0,
            out,
        };
        job.run().await
    }
    .await;
    client.close().await;
    outcome
}

/// The column in the live catalog, in the state `direction` starts from: its table OID and
/// attribute number (PostgreSQL), and its cryptography.
fn protected(
    catalog: &Catalog,
    direction: Direction,
    column: &ColumnPolicy,
) -> Result<((u32, i16), Arc<ColumnCrypto>)> {
    let table = catalog
        .resolve(Some(&column.schema), &column.table)
        .ok_or_else(|| {
            anyhow!(
                "table {}.{} is not in the catalog",
                column.schema,
                column.table
            )
        })?;
    let live = table
        .column(&column.column)
        .ok_or_else(|| anyhow!("column {} is not in the catalog", column.qualified()))?;
    let protection = live.protection.as_ref().ok_or_else(|| {
        anyhow!(
            "column {} is not protected in the catalog",
            column.qualified()
        )
    })?;
    check_state(direction, column, protection.state, &live.type_name)?;
    Ok(((table.oid, live.attnum), Arc::clone(&protection.crypto)))
}

fn converter(
    direction: Direction,
    dialect: convert::Dialect,
    column: &ColumnPolicy,
    pk: &str,
    crypto: Arc<ColumnCrypto>,
    key: Arc<ColumnKey>,
) -> convert::Converter {
    convert::Converter {
        direction,
        dialect,
        qualified: column.qualified(),
        pk: pk.to_string(),
        crypto,
        key,
        domain: column.domain.clone(),
    }
}

/// The upstream named on the command line, or the only one whose policy declares columns.
fn choose_upstream<'c>(config: &'c Config, name: Option<&str>) -> Result<&'c UpstreamConfig> {
    if let Some(name) = name {
        let upstream = config
            .upstream(name)
            .ok_or_else(|| anyhow!("the configuration has no upstream named `{name}`"))?;
        if upstream.encryption_policy().is_none() {
            bail!(
                "upstream `{name}` has no encryption policy declaring columns (`policy = \"…\"` in its [[upstream]])"
            );
        }
        return Ok(upstream);
    }
    let with_policy: Vec<&UpstreamConfig> = config
        .upstreams
        .iter()
        .filter(|u| u.encryption_policy().is_some())
        .collect();
    match with_policy.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "no upstream of {} has an encryption policy declaring columns (`policy = \"…\"` \
             in an [[upstream]])",
            config.path.display()
        ),
        several => bail!(
            "several upstreams have an encryption policy ({}); choose one with --upstream",
            several
                .iter()
                .map(|u| u.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Splits `a.b.c` into names: case-folded unless double-quoted (`""` inside quotes is a quote).
fn split_name(text: &str) -> Result<Vec<String>> {
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => bail!("unterminated quote in {text:?}"),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                part.extend(c.to_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            bail!("{text:?} has an empty name part");
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => {}
            Some(c) => bail!("unexpected {c:?} after a quoted name in {text:?}"),
        }
    }
}

/// The policy's column named on the command line.
fn find_column<'p>(
    policy: &'p EncryptionPolicy,
    text: &str,
    search_path: &[String],
) -> Result<&'p ColumnPolicy> {
    let parts = split_name(text)?;
    let found = match parts.as_slice() {
        [schema, table, column] => policy.column(schema, table, column),
        [table, column] => search_path
            .iter()
            .find_map(|schema| policy.column(schema, table, column)),
        _ => bail!("{text:?} is not a SCHEMA.TABLE.COLUMN or TABLE.COLUMN name"),
    };
    found.ok_or_else(|| {
        let declared: Vec<String> = policy.columns.iter().map(ColumnPolicy::qualified).collect();
        anyhow!(
            "{text} is not an encrypted column of the policy (it declares {}); declare it there first",
            declared.join(", ")
        )
    })
}

/// The column must be in the state the migration starts from.
fn check_state(
    direction: Direction,
    column: &ColumnPolicy,
    state: ColumnState,
    type_name: &str,
) -> Result<()> {
    match (direction, state) {
        (Direction::Encrypt, ColumnState::Plaintext)
        | (Direction::Decrypt | Direction::Rekey, ColumnState::Encrypted) => Ok(()),
        (Direction::Encrypt, ColumnState::Encrypted) => bail!(
            "{} is already encrypted ({type_name}); nothing to encrypt",
            column.qualified()
        ),
        (_, ColumnState::Plaintext) => bail!(
            "{} is not encrypted (it is {type_name}); there is nothing to {}",
            column.qualified(),
            direction.verb()
        ),
    }
}

/// The table's primary key: its one column and that column's type.
async fn primary_key(
    client: &mut ServiceClient,
    oid: u32,
    schema: &str,
    table: &str,
) -> Result<(String, String)> {
    let rows = client
        .simple_query(&format!(
            "SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod) \
             FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a \
               ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
             WHERE i.indrelid = {oid} AND i.indisprimary ORDER BY a.attnum"
        ))
        .await?;
    match rows.as_slice() {
        [row] => match row.as_slice() {
            [Some(name), Some(ty)] => Ok((name.clone(), ty.clone())),
            _ => bail!("the primary key of {schema}.{table} could not be read"),
        },
        [] => bail!(
            "table {schema}.{table} has no primary key; the migration works through it in batches \
             by primary key, so add one first"
        ),
        several => bail!(
            "table {schema}.{table} has a primary key of {} columns; the migration supports \
             single-column primary keys only for now",
            several.len()
        ),
    }
}

/// A column default would keep writing plaintext into the encrypted column (and cannot be
/// cast to bytea).
async fn refuse_default(
    client: &mut ServiceClient,
    oid: u32,
    attnum: i16,
    column: &ColumnPolicy,
) -> Result<()> {
    let rows = client
        .simple_query(&format!(
            "SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d \
             WHERE d.adrelid = {oid} AND d.adnum = {attnum}"
        ))
        .await?;
    if let Some(default) = rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref())
    {
        bail!(
            "{} has the default {default}, which would store plaintext in the encrypted column; \
             drop it first (ALTER TABLE {}.{} ALTER COLUMN {} DROP DEFAULT)",
            column.qualified(),
            sql::ident(&column.schema),
            sql::ident(&column.table),
            sql::ident(&column.column)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_case_unless_quoted() {
        assert_eq!(split_name("Public.T.C").unwrap(), ["public", "t", "c"]);
        assert_eq!(split_name("\"My \"\"T\"\"\".c").unwrap(), ["My \"T\"", "c"]);
        assert!(split_name("a..b").is_err());
        assert!(split_name("\"a").is_err());
        assert!(split_name("\"a\"b").is_err());
    }

    #[test]
    fn columns_resolve_through_the_search_path() {
        let policy = EncryptionPolicy::parse(
            "[[encrypt]]\ncolumn = \"app.customers.id_card\"\nkey = \"k\"\nalgorithm = \"sm4\"\n\
             mode = \"deterministic\"\ntype = \"varchar(18)\"\n",
        )
        .unwrap();
        let path = vec!["public".to_string(), "app".to_string()];
        assert!(find_column(&policy, "customers.id_card", &path).is_ok());
        assert!(find_column(&policy, "APP.Customers.ID_CARD", &path).is_ok());
        let e = find_column(&policy, "customers.id_card", &["public".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("app.customers.id_card"), "{e}");
        assert!(find_column(&policy, "id_card", &path).is_err());
    }
}
