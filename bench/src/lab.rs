//! The bench's laboratory: one throwaway PostgreSQL cluster with pgbench's tables, and the
//! proxies in front of it, each reachable as a [`Target`].
//!
//! The long-lived endpoints (PgBouncer in session mode, warden passthrough, warden with audit,
//! and — when an encrypted workload is selected — warden-enc) run side by side for the whole
//! run, so their measurements interleave. warden-enc's table, keys, policy, migration and
//! pre-measurement checks are in [`crate::encrypted`]. The many-sessions
//! workloads start fresh proxies instead, so that a proxy's memory before and after opening
//! thousands of sessions is not blurred by what earlier workloads left in its allocator, and
//! so that PgBouncer's session pool does not keep thousands of idle backends afterwards.
//! Everything speaks plain TCP on both legs: the comparison is of the proxies, not of TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::runtime::Runtime;
use warden_tests::pg::{Login, PasswordAuth, PgInstance, Target, Via, password_for, pgbench};
use warden_tests::scratch::Scratch;
use warden_tests::upstream::UpstreamDatabase;
use warden_tests::warden::{ConfigDir, UpstreamSpec, Warden, WardenConfig};

use crate::catalog::{ConfigId, Script};
use crate::encrypted;
use crate::pgbench::People;
use crate::pgbouncer::{PgBouncer, PgBouncerSpec, PoolMode};

/// The SCRAM role the workloads run as (owner of the database).
pub const APP_ROLE: &str = "bench_app";
/// The md5 role of the many-sessions workloads: thousands of SCRAM logins would spend the
/// measurement in the client's PBKDF2 (4,096 rounds each), which no proxy can change.
pub const MD5_ROLE: &str = "bench_md5";
pub const DATABASE: &str = "bench";

/// A proxy process the harness measures.
pub enum Proxy {
    Warden(Box<Warden>),
    PgBouncer(PgBouncer),
}

impl Proxy {
    pub fn pid(&self) -> i32 {
        match self {
            Proxy::Warden(w) => w.pid(),
            Proxy::PgBouncer(b) => b.pid(),
        }
    }

    pub fn warden(&self) -> Option<&Warden> {
        match self {
            Proxy::Warden(w) => Some(w),
            Proxy::PgBouncer(_) => None,
        }
    }

    /// Stops it and waits (warden drains and flushes its audit trail).
    pub fn stop(self) -> Result<()> {
        match self {
            Proxy::Warden(w) => {
                let status = w.terminate(Duration::from_secs(60))?;
                if !status.success() {
                    bail!("warden exited with {status}\n{}", w.log_tail(30));
                }
            }
            Proxy::PgBouncer(b) => b.stop(),
        }
        Ok(())
    }
}

/// Where a configuration's clients connect, and the proxy process if there is one.
pub struct Endpoint<'a> {
    pub target: Target,
    pub proxy: Option<&'a Proxy>,
}

pub struct Lab {
    pub pg: PgInstance,
    pub app: Login,
    pub md5: Login,
    pub scale: u32,
    scratch: Scratch,
    users: String,
    pgbouncer: Proxy,
    passthrough: Proxy,
    audit: Proxy,
    /// warden-enc, once its table is encrypted and it answered the checks correctly.
    encryption: Option<Proxy>,
    /// Its keyring, policy and configuration (kept until the end).
    enc_files: Option<encrypted::Files>,
    /// The encrypted workloads' setup; `None` when none was selected.
    pub enc: Option<encrypted::Setup>,
}

impl Lab {
    /// Starts PostgreSQL (with room for `max_connections`), loads pgbench's tables at
    /// `scale`, and starts the long-lived proxies; with `enc_rows`, also loads the people
    /// tables with that many rows, encrypts one and starts warden-enc in front of it (a
    /// failure there is recorded in [`Lab::enc`], and only warden-enc goes unmeasured).
    pub fn start(
        scale: u32,
        max_connections: u32,
        enc_rows: Option<u64>,
        rt: &Runtime,
    ) -> Result<Lab> {
        let pg = PgInstance::start_with(&[
            format!("max_connections={max_connections}"),
            "shared_buffers=128MB".into(),
        ])
        .context("cannot start PostgreSQL")?;
        pg.create_named_role(APP_ROLE, PasswordAuth::Scram, "")?;
        pg.create_named_role(MD5_ROLE, PasswordAuth::Md5, "")?;
        pg.admin_sql(&format!("CREATE DATABASE {DATABASE} OWNER {APP_ROLE}"))?;
        let app = Login {
            user: APP_ROLE.into(),
            password: password_for(APP_ROLE),
            database: DATABASE.into(),
        };
        let md5 = Login {
            user: MD5_ROLE.into(),
            password: password_for(MD5_ROLE),
            database: DATABASE.into(),
        };
        let direct = direct_target(&pg);
        pgbench(
            &direct,
            &app,
            "disable",
            &["-i", "-q", "-s", &scale.to_string()],
        )?
        .ensure_success()
        .context("pgbench -i failed")?;
        pg.admin_sql_in(
            DATABASE,
            &format!(
                "CREATE TABLE bench_insert (id bigint, bid int, delta int, note text); \
                 CREATE TABLE bench_copy (id bigint, bid int, delta int, note text); \
                 ALTER TABLE bench_insert OWNER TO {APP_ROLE}; \
                 ALTER TABLE bench_copy OWNER TO {APP_ROLE}; \
                 GRANT SELECT ON ALL TABLES IN SCHEMA public TO {MD5_ROLE}"
            ),
        )?;
        pg.admin_sql_in(DATABASE, "VACUUM ANALYZE")?;
        let users = pg.users_file(&[APP_ROLE, MD5_ROLE])?;
        let scratch = Scratch::new("bench")?;
        let pgbouncer = Proxy::PgBouncer(PgBouncer::start(&PgBouncerSpec {
            mode: PoolMode::Session,
            server: pg.addr(),
            users: users.clone(),
            pool_size: max_connections,
            max_client_conn: 20_000,
        })?);
        let server = pg.addr();
        let mut lab = Lab {
            passthrough: Proxy::Warden(Box::new(start_warden(&pg, &users, server, false)?)),
            audit: Proxy::Warden(Box::new(start_warden(&pg, &users, server, true)?)),
            pg,
            app,
            md5,
            scale,
            scratch,
            users,
            pgbouncer,
            encryption: None,
            enc_files: None,
            enc: None,
        };
        let rows = enc_rows.unwrap_or(0);
        for script in [
            Script::PointSelect,
            Script::ReadWrite,
            Script::BulkSelect,
            Script::InsertBatch,
            Script::EncLookup,
            Script::EncRange,
        ] {
            let configs: &[ConfigId] = if script.people() {
                &[ConfigId::Direct, ConfigId::Encryption]
            } else {
                &[ConfigId::Direct]
            };
            for &config in configs {
                let people = People {
                    table: people_table(config),
                    rows,
                };
                let text = crate::pgbench::script_text(script, lab.scale, people);
                std::fs::write(lab.script_file(script, config), text)?;
            }
        }
        if let Some(rows) = enc_rows {
            let mut setup = encrypted::Setup {
                rows,
                ..encrypted::Setup::default()
            };
            if let Err(e) = lab.start_encryption(&mut setup, rt) {
                eprintln!("warden-enc will not be measured: {e:#}");
                setup.error = Some(format!("{e:#}"));
                if let Some(proxy) = lab.encryption.take() {
                    let _ = proxy.stop();
                }
            }
            lab.enc = Some(setup);
        }
        Ok(lab)
    }

    /// Loads the people tables, encrypts `bench_people` with `warden encrypt`, starts
    /// warden-enc and checks its answers against the plaintext copy.
    fn start_encryption(&mut self, setup: &mut encrypted::Setup, rt: &Runtime) -> Result<()> {
        eprintln!(
            "loading {} people into {} and {} ...",
            setup.rows,
            encrypted::TABLE,
            encrypted::PLAIN_TABLE
        );
        setup.load_seconds = encrypted::load(&self.pg, setup.rows)?;
        let mut config = warden_config(&self.users, self.pg.addr(), true, &self.pg);
        let keys = encrypted::keys_and_policy(&mut config)?;
        let written = ConfigDir::write(config.clone())?;
        setup.migrations = encrypted::migrate(&self.pg, &written)?;
        self.enc_files = Some(encrypted::Files::keep(keys, written));
        let warden = Proxy::Warden(Box::new(
            Warden::start(config).context("cannot start warden-enc")?,
        ));
        let target = self.proxy_target(&warden)?;
        self.encryption = Some(warden);
        setup.verified = encrypted::verify(
            &self.pg,
            rt,
            &target,
            &self.app,
            setup.rows,
            self.scratch.path(),
        )?;
        for line in &setup.verified {
            eprintln!("   verified through warden-enc: {line}");
        }
        Ok(())
    }

    /// The scratch directory (scripts, pgbench logs).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Where the script file for `script`, as run against configuration `config`, is (the
    /// encrypted workloads' scripts name the people table that configuration reads).
    pub fn script_file(&self, script: Script, config: ConfigId) -> PathBuf {
        let name = if script.people() {
            format!("{script:?}-{}.sql", people_table(config))
        } else {
            format!("{script:?}.sql")
        };
        self.scratch.join(name.to_lowercase())
    }

    /// Rows in pgbench_accounts.
    pub fn accounts(&self) -> u64 {
        100_000 * u64::from(self.scale)
    }

    /// The long-lived endpoint of configuration `id`.
    pub fn endpoint(&self, id: ConfigId) -> Result<Endpoint<'_>> {
        let proxy = match id {
            ConfigId::Direct => {
                return Ok(Endpoint {
                    target: direct_target(&self.pg),
                    proxy: None,
                });
            }
            ConfigId::PgBouncer => &self.pgbouncer,
            ConfigId::Passthrough => &self.passthrough,
            ConfigId::Audit => &self.audit,
            ConfigId::Encryption => match (&self.encryption, &self.enc) {
                (Some(proxy), _) => proxy,
                (None, Some(encrypted::Setup { error: Some(e), .. })) => {
                    bail!("warden-enc was not set up: {e}")
                }
                (None, _) => bail!("warden-enc was not started (no encrypted workload selected)"),
            },
            ConfigId::MaskingFirewall => bail!("configuration {id:?} is not built yet"),
        };
        Ok(Endpoint {
            target: self.proxy_target(proxy)?,
            proxy: Some(proxy),
        })
    }

    /// A target for `proxy`.
    pub fn proxy_target(&self, proxy: &Proxy) -> Result<Target> {
        Ok(match proxy {
            Proxy::Warden(w) => w.target("main")?,
            Proxy::PgBouncer(b) => Target {
                via: Via::Direct,
                host: "127.0.0.1".into(),
                port: b.port(),
                ca_cert: self.pg.ca_cert().to_path_buf(),
                logs: vec![("pgbouncer".into(), b.log_file())],
            },
        })
    }

    /// The direct target.
    pub fn direct(&self) -> Target {
        direct_target(&self.pg)
    }

    /// A fresh PgBouncer in `mode` with `pool_size` server connections.
    pub fn fresh_pgbouncer(&self, mode: PoolMode, pool_size: u32) -> Result<Proxy> {
        Ok(Proxy::PgBouncer(PgBouncer::start(&PgBouncerSpec {
            mode,
            server: self.pg.addr(),
            users: self.users.clone(),
            pool_size,
            max_client_conn: 20_000,
        })?))
    }

    /// A fresh warden (audit on or off) in front of `server` (the database, or a pooler).
    pub fn fresh_warden(&self, audit: bool, server: SocketAddr) -> Result<Proxy> {
        Ok(Proxy::Warden(Box::new(start_warden(
            &self.pg,
            &self.users,
            server,
            audit,
        )?)))
    }

    /// Client backends connected to PostgreSQL now.
    pub fn backends(&self) -> Result<u64> {
        Ok(self
            .pg
            .admin_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'",
            )?
            .trim()
            .parse()?)
    }

    /// Waits until at most `n` client backends remain (sessions closed by a proxy end
    /// asynchronously), for up to a minute.
    pub fn wait_backends_at_most(&self, n: u64) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let now = self.backends()?;
            if now <= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{now} PostgreSQL backends are still connected after a minute");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Empties the tables the write workloads fill.
    pub fn truncate_scratch_tables(&self) -> Result<()> {
        self.pg
            .admin_sql_in(DATABASE, "TRUNCATE bench_insert, bench_copy")?;
        Ok(())
    }

    /// Stops the long-lived proxies (wardens flush their audit trails).
    pub fn stop(self) -> Result<()> {
        self.passthrough.stop()?;
        self.audit.stop()?;
        if let Some(proxy) = self.encryption {
            proxy.stop()?;
        }
        drop(self.enc_files);
        self.pgbouncer.stop()?;
        self.pg.stop();
        Ok(())
    }
}

fn direct_target(pg: &PgInstance) -> Target {
    Target {
        via: Via::Direct,
        host: "127.0.0.1".into(),
        port: pg.port(),
        ca_cert: pg.ca_cert().to_path_buf(),
        logs: pg.log_files(),
    }
}

/// The people table configuration `config` reads: the encrypted one through warden-enc, the
/// plaintext copy everywhere else.
pub fn people_table(config: ConfigId) -> &'static str {
    if config == ConfigId::Encryption {
        encrypted::TABLE
    } else {
        encrypted::PLAIN_TABLE
    }
}

/// A warden in front of `server`, plain TCP on both legs, room for 20,000 sessions; with the
/// audit trail at its production defaults (fsync every batch, 100 ms linger), or off.
fn start_warden(pg: &PgInstance, users: &str, server: SocketAddr, audit: bool) -> Result<Warden> {
    Warden::start(warden_config(users, server, audit, pg)).context("cannot start warden")
}

/// The configuration of [`start_warden`].
fn warden_config(users: &str, server: SocketAddr, audit: bool, pg: &PgInstance) -> WardenConfig {
    let mut upstream = UpstreamSpec::new("main", pg, users.to_string());
    upstream.server = server;
    upstream.client_tls.mode = "disable".into();
    upstream.server_tls.mode = "disable".into();
    upstream.server_tls.ca = None;
    upstream.server_tls.server_name = None;
    let mut config = WardenConfig::new(upstream).limit("max_sessions", 20_000);
    config.audit.clear();
    if !audit {
        config.audit.push(("enabled".into(), "false".into()));
    }
    config
}
