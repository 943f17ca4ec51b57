//! `warden serve`: starts the audit trail, the listeners and the admin endpoint, and runs
//! until told to stop.
//!
//! Signals: SIGHUP re-reads the configuration file — a file with any error is refused and the
//! running configuration stays — and applies what can change live (log level, upstreams added,
//! removed or changed, their users files and certificates); existing sessions keep running on
//! the settings they started with. SIGTERM (or SIGINT) drains: listeners close, idle sessions
//! end, busy ones end as they become idle, every session ends when the drain timeout passes,
//! and the audit trail is flushed before the process exits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Notify, watch};
use warden_analysis::{Analyzer, Dialect};
use warden_audit::{AuditConfig, AuditSink, AuditTrail};

use crate::admin::{self, AdminState};
use crate::config::{Config, Protocol, UpstreamConfig};
use crate::encryption::Encryption;
use crate::logging::LogLevel;
use crate::metrics::Metrics;
use crate::mysql::accept::MySqlUpstream;
use crate::mysql::auth::caching_sha2::Sha2Authenticator;
use crate::pg::accept::PgUpstream;
use crate::pg::auth::query::AuthQuery;
use crate::pg::auth::users_file::UsersFile;
use crate::pg::auth::verifiers::VerifierSource;
use crate::pg::cancel::CancelRegistry;
use crate::pg::session::{Shutdown, until_true};
use crate::pipeline::{PolicyHandle, Shared};

/// Counts live sessions so a drain can wait for them.
#[derive(Clone, Default)]
struct SessionTracker(Arc<(AtomicUsize, Notify)>);

struct Tracked(SessionTracker);

impl SessionTracker {
    fn enter(&self) -> Tracked {
        self.0.0.fetch_add(1, Ordering::SeqCst);
        Tracked(self.clone())
    }

    fn live(&self) -> usize {
        self.0.0.load(Ordering::SeqCst)
    }

    /// Waits until no session is live, or `timeout`; returns whether they all ended.
    async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.0.1.notified();
            if self.live() == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.live() == 0;
            }
        }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.0.0.0.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.1.notify_waiters();
        }
    }
}

/// The files an upstream's configuration names, loaded and checked.
pub struct UpstreamFiles {
    pub client_tls: Option<crate::tls::ClientTls>,
    pub server_tls: Option<crate::tls::ServerTls>,
    pub users_file: Option<Arc<UsersFile>>,
}

/// Reads an upstream's certificates, keys and users file. Errors name the file and the problem.
pub fn load_files(config: &UpstreamConfig) -> Result<UpstreamFiles, Vec<String>> {
    let mut errors = Vec::new();
    let client_tls = crate::tls::client_side(&config.client_tls, config.protocol)
        .map_err(|e| errors.push(format!("upstream `{}`: client TLS: {e}", config.name)))
        .ok()
        .flatten();
    let server_tls = crate::tls::server_side(&config.server_tls)
        .map_err(|e| errors.push(format!("upstream `{}`: server TLS: {e}", config.name)))
        .ok()
        .flatten();
    let users_file = match &config.auth.users_file {
        None => None,
        Some(path) => match UsersFile::load(path) {
            Ok(f) => Some(Arc::new(f)),
            Err(es) => {
                errors.extend(es.into_iter().map(|e| e.to_string()));
                None
            }
        },
    };
    if errors.is_empty() {
        Ok(UpstreamFiles {
            client_tls,
            server_tls,
            users_file,
        })
    } else {
        Err(errors)
    }
}

/// What a listener serves: the built upstream of its protocol.
enum Built {
    Pg(Arc<PgUpstream>),
    MySql(Arc<MySqlUpstream>),
}

/// Builds what a listener needs from its configuration.
fn build_upstream(
    config: &UpstreamConfig,
    shared: &Arc<Shared>,
    cancel: &Arc<CancelRegistry>,
    metrics: &Metrics,
    active: Arc<AtomicUsize>,
    encryption: Option<Arc<Encryption>>,
) -> Result<Built, Vec<String>> {
    match config.protocol {
        Protocol::Postgres => {
            build_pg_upstream(config, shared, cancel, metrics, active, encryption)
                .map(|u| Built::Pg(Arc::new(u)))
        }
        Protocol::Mysql => {
            let files = load_files(config)?;
            let sha2 = match config.auth.mysql.plugin {
                crate::config::MysqlAuthPlugin::Relay => None,
                crate::config::MysqlAuthPlugin::CachingSha2 => Some(Arc::new(
                    Sha2Authenticator::new(&config.auth.mysql)
                        .map_err(|e| vec![format!("upstream `{}`: {e}", config.name)])?,
                )),
            };
            Ok(Built::MySql(Arc::new(MySqlUpstream {
                config: config.clone(),
                client_tls: files.client_tls,
                server_tls: files.server_tls,
                metrics: metrics.upstream(&config.name),
                shared: shared.clone(),
                sha2,
                active,
                encryption,
            })))
        }
    }
}

/// Builds what a PostgreSQL listener needs from its configuration.
fn build_pg_upstream(
    config: &UpstreamConfig,
    shared: &Arc<Shared>,
    cancel: &Arc<CancelRegistry>,
    metrics: &Metrics,
    active: Arc<AtomicUsize>,
    encryption: Option<Arc<Encryption>>,
) -> Result<PgUpstream, Vec<String>> {
    let files = load_files(config)?;
    Ok(PgUpstream {
        config: config.clone(),
        client_tls: files.client_tls,
        server_tls: files.server_tls,
        verifiers: VerifierSource {
            users_file: files.users_file,
            query: config
                .auth
                .query
                .clone()
                .map(|q| Arc::new(AuthQuery::new(q))),
        },
        metrics: metrics.upstream(&config.name),
        shared: shared.clone(),
        cancel: cancel.clone(),
        active,
        encryption,
    })
}

/// The audit section of a configuration, with paths resolved against the file's directory.
pub fn audit_config(config: &Config) -> AuditConfig {
    let mut audit = config.audit.clone();
    if let Some(base) = config.path.parent() {
        audit.resolve_paths(base);
    }
    audit
}

/// What `serve` and `config check` say when the audit trail is switched off.
pub const AUDIT_DISABLED_WARNING: &str = "the audit trail is DISABLED ([audit] enabled = false): \
     statements are relayed and recorded nowhere (DLP-6 is not met); use this only to measure \
     the relay, never in production";

/// Checks everything `serve` would load, without binding sockets: returns every problem.
pub fn check(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if config.audit_enabled
        && let Err(e) = audit_config(config).validate()
    {
        problems.push(format!("[audit]: {e}"));
    }
    for upstream in &config.upstreams {
        if let Err(e) = load_files(upstream) {
            problems.extend(e);
        }
        if let Some(path) = &upstream.auth.mysql.rsa_key
            && let Err(e) = crate::mysql::auth::caching_sha2::RsaKey::load(path)
        {
            problems.push(format!("upstream `{}`: {e}", upstream.name));
        }
    }
    problems
}

/// One bound listener.
struct Listener {
    listen: SocketAddr,
    current: Arc<ArcSwap<Built>>,
    active: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
}

struct Server {
    shared: Arc<Shared>,
    cancel: Arc<CancelRegistry>,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    tracker: SessionTracker,
    listeners: HashMap<String, Listener>,
    /// The `[keys]` table in force (encrypted upstreams open the keyring with it).
    keys: Option<warden_crypto::KeysConfig>,
}

impl Server {
    async fn start_listener(&mut self, config: &UpstreamConfig) -> anyhow::Result<()> {
        let active = Arc::new(AtomicUsize::new(0));
        let encryption = Encryption::start(
            config,
            self.keys.as_ref(),
            self.shared.limits.connect_timeout,
        )
        .await?;
        let upstream = build_upstream(
            config,
            &self.shared,
            &self.cancel,
            &self.metrics,
            active.clone(),
            encryption,
        )
        .map_err(|e| anyhow!(e.join("\n")))?;
        let listener = TcpListener::bind(config.listen).await.with_context(|| {
            format!(
                "upstream `{}`: cannot listen on {}",
                config.name, config.listen
            )
        })?;
        let current = Arc::new(ArcSwap::from_pointee(upstream));
        let (stop, stop_rx) = watch::channel(false);
        tokio::spawn(accept_loop(
            listener,
            current.clone(),
            stop_rx,
            self.shutdown.clone(),
            self.tracker.clone(),
        ));
        tracing::info!(upstream = %config.name, listen = %config.listen, server = %config.server, "listening");
        self.listeners.insert(
            config.name.clone(),
            Listener {
                listen: config.listen,
                current,
                active,
                stop,
            },
        );
        Ok(())
    }

    fn stop_listener(&mut self, name: &str) {
        if let Some(l) = self.listeners.remove(name) {
            let _ = l.stop.send(true);
            tracing::info!(upstream = %name, listen = %l.listen, "listener closed");
        }
    }

    /// Applies a new configuration; existing sessions are not touched.
    async fn reload(
        &mut self,
        old: &Config,
        new: &Config,
        log: Option<&LogLevel>,
    ) -> anyhow::Result<()> {
        // Build every upstream first: a reload applies completely or not at all.
        let mut built = HashMap::new();
        let mut errors = Vec::new();
        for u in &new.upstreams {
            let active = self
                .listeners
                .get(&u.name)
                .filter(|l| l.listen == u.listen)
                .map(|l| l.active.clone())
                .unwrap_or_default();
            let encryption =
                match Encryption::start(u, new.keys.as_ref(), self.shared.limits.connect_timeout)
                    .await
                {
                    Ok(e) => e,
                    Err(e) => {
                        errors.push(format!("{e:#}"));
                        continue;
                    }
                };
            match build_upstream(
                u,
                &self.shared,
                &self.cancel,
                &self.metrics,
                active,
                encryption,
            ) {
                Ok(b) => {
                    built.insert(u.name.clone(), b);
                }
                Err(e) => errors.extend(e),
            }
        }
        if !errors.is_empty() {
            return Err(anyhow!(errors.join("\n")));
        }
        if new.log.level != old.log.level
            && let Some(log) = log
        {
            log.set(&new.log.level)
                .map_err(|e| anyhow!("log level: {e}"))?;
        }
        self.keys = new.keys.clone();
        let names: Vec<String> = self.listeners.keys().cloned().collect();
        for name in names {
            let keep = new
                .upstream(&name)
                .is_some_and(|u| Some(u.listen) == self.listeners.get(&name).map(|l| l.listen));
            if !keep {
                self.stop_listener(&name);
            }
        }
        for u in &new.upstreams {
            let upstream = built.remove(&u.name).expect("built above");
            match self.listeners.get(&u.name) {
                Some(l) => {
                    l.current.store(Arc::new(upstream));
                }
                None => {
                    // Give a closed listener's socket a moment to be released before rebinding.
                    let mut attempts = 0;
                    loop {
                        match self.start_listener(u).await {
                            Ok(()) => break,
                            Err(e) if attempts < 20 => {
                                attempts += 1;
                                tracing::debug!(error = %e, "retrying bind");
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                }
            }
        }
        for (what, changed) in [
            (
                "[audit]",
                new.audit != old.audit || new.audit_enabled != old.audit_enabled,
            ),
            ("[analysis]", new.analysis != old.analysis),
            ("[limits]", new.limits != old.limits),
            ("[admin]", new.admin != old.admin),
            ("[log] format", new.log.format != old.log.format),
        ] {
            if changed {
                tracing::warn!("{what} changed; it takes effect when warden restarts");
            }
        }
        Ok(())
    }
}

async fn accept_loop(
    listener: TcpListener,
    current: Arc<ArcSwap<Built>>,
    mut stop: watch::Receiver<bool>,
    shutdown: Shutdown,
    tracker: SessionTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = until_true(&mut stop) => return,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let shutdown = shutdown.clone();
                let tracked = tracker.enter();
                match &**current.load() {
                    Built::Pg(upstream) => {
                        let upstream = upstream.clone();
                        tokio::spawn(async move {
                            crate::pg::accept::serve_connection(upstream, tcp, peer, shutdown)
                                .await;
                            drop(tracked);
                        });
                    }
                    Built::MySql(upstream) => {
                        let upstream = upstream.clone();
                        tokio::spawn(async move {
                            crate::mysql::accept::serve_connection(upstream, tcp, peer, shutdown)
                                .await;
                            drop(tracked);
                        });
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How `serve` is run.
pub struct ServeOptions {
    /// The policy every statement is put to.
    pub policy: PolicyHandle,
    /// The log filter to change on reload (none when the caller owns logging).
    pub log: Option<LogLevel>,
    /// Besides SIGTERM and SIGINT, drains and stops when this becomes `true` (for embedding
    /// warden in another process, such as a test).
    pub stop: Option<watch::Receiver<bool>>,
}

/// Runs warden with the configuration at `path` until SIGTERM or SIGINT (or `options.stop`).
pub async fn serve(path: &Path, config: Config, options: ServeOptions) -> anyhow::Result<()> {
    let ServeOptions { policy, log, stop } = options;
    let (_never, never) = watch::channel(false);
    let mut stop = stop.unwrap_or(never);
    let (sink, writer) = if config.audit_enabled {
        let (sink, writer) =
            AuditTrail::start(audit_config(&config)).context("cannot start the audit trail")?;
        (sink, Some(writer))
    } else {
        tracing::warn!("{AUDIT_DISABLED_WARNING}");
        (AuditSink::disabled(), None)
    };
    let metrics = Arc::new(Metrics::new());
    let analyzer = Analyzer::new(
        Dialect::PostgreSql,
        config.analysis.cache_entries,
        config.analysis.max_sql_bytes,
    );
    let shared = Arc::new(Shared::new(
        analyzer,
        policy,
        sink.clone(),
        metrics.clone(),
        config.limits.clone(),
    ));
    let (drain_tx, drain_rx) = watch::channel(false);
    let (force_tx, force_rx) = watch::channel(false);
    let mut server = Server {
        shared: shared.clone(),
        cancel: Arc::new(CancelRegistry::default()),
        metrics: metrics.clone(),
        shutdown: Shutdown {
            drain: drain_rx,
            force: force_rx,
        },
        tracker: SessionTracker::default(),
        listeners: HashMap::new(),
        keys: config.keys.clone(),
    };
    for upstream in &config.upstreams {
        server.start_listener(upstream).await?;
    }
    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} for the admin endpoint",
                config.admin.listen
            )
        })?;
    let admin_state = Arc::new(AdminState {
        metrics: metrics.clone(),
        audit: sink.clone(),
        ready: AtomicBool::new(false),
    });
    let (admin_stop, admin_stop_rx) = watch::channel(false);
    tokio::spawn(admin::serve(
        admin_listener,
        admin_state.clone(),
        admin_stop_rx,
    ));
    admin_state.ready.store(true, Ordering::SeqCst);
    tracing::info!(admin = %config.admin.listen, upstreams = config.upstreams.len(), "warden is ready");

    let mut hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut running = config;
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!(config = %path.display(), "reloading the configuration");
                match Config::load(path) {
                    Err(e) => tracing::error!("reload refused, the running configuration stays:\n{e}"),
                    Ok(new) => match server.reload(&running, &new, log.as_ref()).await {
                        Ok(()) => {
                            tracing::info!("configuration reloaded");
                            running = new;
                        }
                        Err(e) => tracing::error!("reload refused, the running configuration stays: {e:#}"),
                    },
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = until_true(&mut stop) => break,
        }
    }

    tracing::info!(sessions = server.tracker.live(), "draining");
    admin_state.ready.store(false, Ordering::SeqCst);
    let names: Vec<String> = server.listeners.keys().cloned().collect();
    for name in names {
        server.stop_listener(&name);
    }
    let _ = drain_tx.send(true);
    if !server.tracker.wait_idle(running.limits.drain_timeout).await {
        tracing::warn!(
            sessions = server.tracker.live(),
            "drain timeout: closing the remaining sessions"
        );
        let _ = force_tx.send(true);
        server.tracker.wait_idle(Duration::from_secs(10)).await;
    }
    let _ = admin_stop.send(true);
    drop(server);
    drop(shared);
    match writer {
        Some(writer) => {
            writer
                .shutdown()
                .await
                .context("the audit trail could not be flushed")?;
            tracing::info!("audit trail flushed; warden stopped");
        }
        None => tracing::warn!("warden stopped; the audit trail was disabled"),
    }
    Ok(())
}
