//! Loading the live [`Catalog`] of a MySQL / MariaDB server through warden's service login.
//!
//! Runs the `information_schema` queries of `warden_encryption::catalog` (the policy tables'
//! columns, warden's check constraints) and builds the catalog from their rows, which also
//! checks the policy against the live schema. Unqualified table names resolve per session
//! database (see `crate::encryption::Encryption::mysql_planner`), so the catalog's own search
//! path is the service login's database. Views over protected columns are not planned on MySQL
//! (a view's result columns carry the view as their origin, so they are not decrypted: a known
//! limit, see docs/ARCHITECTURE.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_crypto::ColumnKey;
use warden_encryption::catalog::CatalogProblem;
use warden_encryption::{Catalog, EncryptionPolicy};

use super::service::{ServiceClient, ServiceError};

/// Why the catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CatalogLoadError {
    /// The catalog queries failed.
    #[error("reading the catalog failed: {0}")]
    Service(#[from] ServiceError),
    /// The policy does not fit the live schema (each problem names its policy line).
    #[error("the encryption policy does not fit the database: {}", join(.0))]
    Problems(Vec<CatalogProblem>),
}

fn join(problems: &[CatalogProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Reads the catalog of `policy`'s tables with `client`; `keys` are the keyring's column keys
/// by name, `database` the service login's database.
pub async fn load_catalog(
    client: &mut ServiceClient,
    policy: &EncryptionPolicy,
    keys: &BTreeMap<String, Arc<ColumnKey>>,
    database: &str,
) -> Result<Catalog, CatalogLoadError> {
    let columns = client.query(&Catalog::mysql_columns_sql(policy)).await?;
    let constraints = client.query(Catalog::mysql_constraints_sql()).await?;
    let catalog = Catalog::from_mysql_rows(
        policy,
        keys,
        &columns,
        &constraints,
        vec![database.to_string()],
    )
    .map_err(CatalogLoadError::Problems)?;
    // Views over protected columns: rows read through them are decrypted too.
    Ok(match catalog.mysql_views_sql() {
        Some(sql) => {
            let views = client.query(&sql).await?;
            catalog.with_mysql_views(&views)
        }
        None => catalog,
    })
}
