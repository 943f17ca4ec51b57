//! Warden's configuration: what `warden serve` runs and `warden config check` validates.
//!
//! The file format is documented in `docs/CONFIG.md`. [`Config::load`] parses the TOML
//! (`file.rs`), checks every value (`load.rs`) and returns either a validated configuration or
//! every problem found, each naming its line. Files the configuration points at (certificates,
//! users files) are checked when the runtime is built from it (`crate::server`), so
//! `config check` runs the same code as `serve`. The encryption settings of an upstream (its
//! policy file, which [`Config::load`] reads and parses, and the service login) are checked in
//! `encryption.rs`.

mod encryption;
mod error;
mod file;
mod load;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use warden_encryption::EncryptionPolicy;

pub use error::{ConfigError, ConfigErrors, line_and_column};

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub admin: AdminConfig,
    pub log: LogConfig,
    /// The `[audit]` table, resolved by the audit crate's own config type.
    pub audit: warden_audit::AuditConfig,
    /// `[audit] enabled` (default `true`). `false` switches the audit trail off: statements
    /// are relayed and recorded nowhere. Only for measuring the relay alone (the benchmark's
    /// "passthrough"); `serve` warns at startup and `/readyz` and `/metrics` say so.
    pub audit_enabled: bool,
    /// The `[keys]` table: the keyring and its master key (ENC-6), paths resolved.
    pub keys: Option<warden_crypto::KeysConfig>,
    pub analysis: AnalysisConfig,
    pub limits: Limits,
    pub upstreams: Vec<UpstreamConfig>,
}

/// The admin HTTP endpoint: `/metrics`, `/healthz`, `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `info,warden_proxy=debug`.
    pub level: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Statement analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnalysisConfig {
    /// Analyses kept in the cache.
    pub cache_entries: usize,
    /// Statements longer than this are audited as too large to analyse.
    pub max_sql_bytes: usize,
}

/// Resource limits that protect the proxy from its peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest protocol message accepted from a client or a server.
    pub max_message_bytes: usize,
    /// Time a client has to complete TLS, startup and authentication.
    pub startup_timeout: Duration,
    /// Time allowed to connect and log in to the database.
    pub connect_timeout: Duration,
    /// On SIGTERM, how long sessions get to finish before they are closed.
    pub drain_timeout: Duration,
    /// Concurrent sessions per listener; further connections are refused with an error.
    pub max_sessions: usize,
}

/// One real database and the listener in front of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    pub name: String,
    pub protocol: Protocol,
    pub listen: SocketAddr,
    pub server: ServerAddress,
    pub client_tls: ClientTlsConfig,
    pub server_tls: ServerTlsConfig,
    pub auth: AuthConfig,
    /// `policy`: the encryption policy file, resolved against the configuration's directory.
    pub policy_path: Option<PathBuf>,
    /// The parsed policy. Set by [`Config::load`] whenever `policy` is; [`Config::parse`]
    /// opens no files and leaves it `None`.
    pub policy: Option<Arc<EncryptionPolicy>>,
    /// `[upstream.service]`: warden's own login to the database.
    pub service: Option<ServiceConfig>,
}

impl UpstreamConfig {
    /// The policy, when it declares at least one encrypted column.
    pub fn encryption_policy(&self) -> Option<&Arc<EncryptionPolicy>> {
        self.policy.as_ref().filter(|p| !p.columns.is_empty())
    }
}

/// The wire protocol of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    /// MySQL and MariaDB (and the OceanBase / TiDB / GoldenDB family).
    Mysql,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Postgres => "postgres",
            Protocol::Mysql => "mysql",
        }
    }
}

/// `host:port` of a database server; the host may be a name, resolved at connect time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// TLS between clients and warden.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsConfig {
    pub mode: ClientTlsMode,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// When set, clients are asked for a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// Whether clients may, must or cannot use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTlsMode {
    Disable,
    Allow,
    Require,
}

/// TLS between warden and the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsConfig {
    pub mode: ServerTlsMode,
    pub ca: Option<PathBuf>,
    pub server_name: String,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// libpq's sslmode values, with the same meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl ServerTlsMode {
    /// Whether the server's certificate chain is checked.
    pub fn verifies_chain(self) -> bool {
        matches!(self, ServerTlsMode::VerifyCa | ServerTlsMode::VerifyFull)
    }
}

/// How warden authenticates clients: for PostgreSQL, where it finds the verifiers it checks
/// clients against; for MySQL, which plugin it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthConfig {
    pub users_file: Option<PathBuf>,
    pub query: Option<AuthQueryConfig>,
    pub mysql: MysqlAuthConfig,
}

/// MySQL authentication (see docs/ARCHITECTURE.md, "MySQL authentication").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MysqlAuthConfig {
    pub plugin: MysqlAuthPlugin,
    /// PEM RSA private key for caching_sha2_password's public-key exchange; generated at
    /// startup when not set.
    pub rsa_key: Option<PathBuf>,
    /// How long a fast-auth entry (derived from a full authentication) is kept in memory.
    pub cache: Duration,
}

impl Default for MysqlAuthConfig {
    fn default() -> Self {
        MysqlAuthConfig {
            plugin: MysqlAuthPlugin::Relay,
            rsa_key: None,
            cache: Duration::from_secs(3600),
        }
    }
}

/// Which authentication plugin warden offers MySQL clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MysqlAuthPlugin {
    /// The database's own plugin (mysql_native_password, MariaDB's client_ed25519, ...): the
    /// client answers the database's scramble and the database checks the answer.
    Relay,
    /// caching_sha2_password, terminated by warden (the database need not support it).
    CachingSha2,
}

/// Fetching verifiers from the database itself (as PgBouncer's auth_query does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthQueryConfig {
    pub user: String,
    pub password_env: Option<String>,
    pub database: String,
    /// Takes the user name as `$1` and returns one row with the verifier.
    pub sql: String,
    /// How long a fetched verifier is reused.
    pub cache: Duration,
}

/// Warden's own login to the database (`[upstream.service]`): it reads the catalog of the
/// policy's tables and runs `warden encrypt` / `decrypt` / `rekey`. Like the auth query user,
/// its password comes from an environment variable, never a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    pub user: String,
    pub password_env: Option<String>,
    pub database: String,
    /// Schemas searched for unqualified table names, in order (default `["public"]`).
    pub search_path: Vec<String>,
}

impl Config {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigErrors> {
        load::load(path)
    }

    /// Validates configuration `text` as if it were the file `path`.
    pub fn parse(path: &std::path::Path, text: &str) -> Result<Config, ConfigErrors> {
        load::parse(path, text)
    }

    /// The upstream named `name`.
    pub fn upstream(&self, name: &str) -> Option<&UpstreamConfig> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}
