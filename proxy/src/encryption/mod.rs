//! Column encryption at run time: one [`Encryption`] per upstream whose policy declares
//! encrypted columns.
//!
//! It holds the keyring's column keys and the current [`Planner`] (built over the live catalog),
//! and keeps the catalog fresh: every [`REFRESH`], when a session asks (a write bounced off
//! warden's check constraint, so the catalog is stale), and on reload. A catalog that cannot be
//! read or no longer fits the policy keeps the last good planner and is logged; sessions go on.
//! Startup fails if the first catalog cannot be read: serving without knowing which columns hold
//! ciphertext could return it, or write plaintext where ciphertext belongs.
//!
//! The catalog is read per protocol: PostgreSQL's through `pg::service`, MySQL's from
//! `information_schema` through `mysql::service`. A MySQL session resolves unqualified table
//! names in its current database and lexes in its own `sql_mode`, so MySQL sessions get their
//! planner from [`Encryption::mysql_planner`]: one per (dialect, database), built over the
//! current catalog on first use and dropped when the catalog changes.

pub mod text;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use tokio::sync::Notify;
use warden_analysis::Dialect;
use warden_crypto::{ColumnKey, KeysConfig};
use warden_encryption::{Catalog, EncryptionPolicy, Planner};

use crate::config::{Protocol, UpstreamConfig};
use crate::pg::catalog_loader::load_catalog;
use crate::pg::service::ServiceClient;

/// How often the catalog is re-read.
pub const REFRESH: Duration = Duration::from_secs(3);

/// MySQL planners kept per upstream (one per dialect and database in use).
const MYSQL_PLANNERS: usize = 256;

/// MySQL planners by (dialect, database), for the catalog generation they were built over.
type MySqlPlanners = (u64, HashMap<(Dialect, String), Arc<Planner>>);

/// The encryption state of one upstream.
pub struct Encryption {
    upstream: UpstreamConfig,
    policy: Arc<EncryptionPolicy>,
    keys: BTreeMap<String, Arc<ColumnKey>>,
    planner: ArcSwap<Planner>,
    refresh: Notify,
    timeout: Duration,
    mysql_planners: Mutex<MySqlPlanners>,
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("upstream", &self.upstream.name)
            .field("columns", &self.policy.columns.len())
            .finish()
    }
}

/// Opens the keyring named by `[keys]` and returns its column keys by name.
pub fn column_keys(keys: &KeysConfig) -> anyhow::Result<BTreeMap<String, Arc<ColumnKey>>> {
    let keyring = keys
        .open_keyring()
        .with_context(|| format!("cannot open the keyring {}", keys.keyring.display()))?;
    keyring
        .column_keys()
        .with_context(|| format!("cannot unwrap the keys of {}", keys.keyring.display()))
}

impl Encryption {
    /// Builds the encryption state of `upstream`, reading its catalog once; `None` when its
    /// policy declares no encrypted column.
    pub async fn start(
        upstream: &UpstreamConfig,
        keys: Option<&KeysConfig>,
        timeout: Duration,
    ) -> anyhow::Result<Option<Arc<Encryption>>> {
        let Some(policy) = upstream.encryption_policy() else {
            return Ok(None);
        };
        let keys_config = keys.ok_or_else(|| {
            anyhow!(
                "upstream `{}` encrypts columns but the configuration has no [keys] table",
                upstream.name
            )
        })?;
        let keys = column_keys(keys_config)?;
        let encryption = Encryption {
            upstream: upstream.clone(),
            policy: Arc::clone(policy),
            keys,
            planner: ArcSwap::from_pointee(Planner::new(Arc::new(Catalog::default()))),
            refresh: Notify::new(),
            timeout,
            mysql_planners: Mutex::new((0, HashMap::new())),
        };
        let catalog = encryption
            .load()
            .await
            .with_context(|| format!("upstream `{}`: encryption catalog", upstream.name))?;
        log_catalog(&upstream.name, &catalog);
        encryption.planner.store(encryption.base_planner(catalog));
        let encryption = Arc::new(encryption);
        tokio::spawn(refresh_loop(Arc::downgrade(&encryption)));
        Ok(Some(encryption))
    }

    /// The planner over the current catalog.
    pub fn planner(&self) -> Arc<Planner> {
        self.planner.load_full()
    }

    /// Asks for the catalog to be re-read now (a session saw it is stale).
    pub fn refresh_soon(&self) {
        self.refresh.notify_one();
    }

    /// The planner for this upstream's protocol over `catalog`.
    fn base_planner(&self, catalog: Catalog) -> Arc<Planner> {
        Arc::new(match self.upstream.protocol {
            Protocol::Postgres => Planner::new(Arc::new(catalog)),
            Protocol::Mysql => Planner::with_dialect(Arc::new(catalog), Dialect::MYSQL_DEFAULT),
        })
    }

    /// The planner of a MySQL session lexing in `dialect` whose current database is
    /// `database` (unqualified table names resolve there; none resolve without a database).
    pub fn mysql_planner(&self, dialect: Dialect, database: &str) -> Arc<Planner> {
        let base = self.planner();
        let generation = base.catalog().generation;
        let Ok(mut planners) = self.mysql_planners.lock() else {
            return base;
        };
        if planners.0 != generation || planners.1.len() >= MYSQL_PLANNERS {
            *planners = (generation, HashMap::new());
        }
        Arc::clone(
            planners
                .1
                .entry((dialect, database.to_string()))
                .or_insert_with(|| {
                    let path = if database.is_empty() {
                        Vec::new()
                    } else {
                        vec![database.to_string()]
                    };
                    Arc::new(Planner::with_dialect(
                        Arc::new(base.catalog().with_search_path(path)),
                        dialect,
                    ))
                }),
        )
    }

    async fn load(&self) -> anyhow::Result<Catalog> {
        if self.upstream.protocol == Protocol::Mysql {
            return self.load_mysql().await;
        }
        let mut client =
            ServiceClient::connect_upstream(&self.upstream, self.timeout, "warden catalog").await?;
        let search_path = self
            .upstream
            .service
            .as_ref()
            .map(|s| s.search_path.clone())
            .unwrap_or_else(|| vec!["public".to_string()]);
        let catalog = load_catalog(&mut client, &self.policy, &self.keys, search_path).await;
        client.close().await;
        Ok(catalog?)
    }
}

impl Encryption {
    async fn load_mysql(&self) -> anyhow::Result<Catalog> {
        use crate::mysql::{catalog_loader, service::ServiceClient as MySqlService};
        let mut client =
            MySqlService::connect_upstream(&self.upstream, self.timeout, "warden catalog").await?;
        let database = self
            .upstream
            .service
            .as_ref()
            .map(|s| s.database.clone())
            .unwrap_or_default();
        let catalog =
            catalog_loader::load_catalog(&mut client, &self.policy, &self.keys, &database).await;
        client.close().await;
        Ok(catalog?)
    }
}

fn log_catalog(upstream: &str, catalog: &Catalog) {
    for table in catalog.tables() {
        for column in &table.columns {
            if let Some(p) = &column.protection {
                tracing::info!(
                    upstream = %upstream,
                    column = %p.crypto.column.qualified(),
                    state = ?p.state,
                    mode = ?p.crypto.mode(),
                    "encrypted column"
                );
            }
        }
    }
}

async fn refresh_loop(encryption: Weak<Encryption>) {
    loop {
        // A replaced upstream's state is freed at most one period after its last session.
        let Some(e) = encryption.upgrade() else {
            return;
        };
        let _ = tokio::time::timeout(REFRESH, e.refresh.notified()).await;
        if Arc::strong_count(&e) == 1 {
            return;
        }
        match e.load().await {
            Ok(catalog) => {
                if catalog.generation != e.planner.load().catalog().generation {
                    log_catalog(&e.upstream.name, &catalog);
                    e.planner.store(e.base_planner(catalog));
                    tracing::info!(upstream = %e.upstream.name, "encryption catalog changed; new plans from now on");
                }
            }
            Err(err) => {
                tracing::warn!(upstream = %e.upstream.name, error = %format!("{err:#}"), "could not refresh the encryption catalog; keeping the last one");
            }
        }
    }
}
