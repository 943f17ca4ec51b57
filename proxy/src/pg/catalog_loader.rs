//! Loading the live [`Catalog`] of a PostgreSQL database through warden's service login.
//!
//! Runs the catalog queries of `warden_encryption::catalog` (the policy tables' columns,
//! warden's check constraints, then the views over protected columns) and builds the catalog
//! from their rows, which also checks the policy against the live schema. The proxy calls this at startup, on reload and on a timer;
//! `warden config check` and the migration commands call it once.

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
/// by name, `search_path` the schemas unqualified table names resolve in.
pub async fn load_catalog(
    client: &mut ServiceClient,
    policy: &EncryptionPolicy,
    keys: &BTreeMap<String, Arc<ColumnKey>>,
    search_path: Vec<String>,
) -> Result<Catalog, CatalogLoadError> {
    let columns = client
        .simple_query(&Catalog::pg_columns_sql(policy))
        .await?;
    let constraints = client.simple_query(Catalog::pg_constraints_sql()).await?;
    let catalog = Catalog::from_pg_rows(policy, keys, &columns, &constraints, search_path)
        .map_err(CatalogLoadError::Problems)?;
    // Views over protected columns: rows read through them are decrypted too.
    Ok(match catalog.pg_views_sql() {
        Some(sql) => {
            let views = client.simple_query(&sql).await?;
            catalog.with_views(&views)
        }
        None => catalog,
    })
}
