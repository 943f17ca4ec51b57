//! The configuration file as written: serde types that mirror the TOML, with spans.
//!
//! These types only describe the shape of the file; `load.rs` checks the values and turns them
//! into the validated [`super::Config`]. Fields whose values need checking are wrapped in
//! [`Spanned`] so an error can name the line. Unknown keys are rejected everywhere.

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub admin: Option<Spanned<FileAdmin>>,
    #[serde(default)]
    pub log: Option<FileLog>,
    #[serde(default)]
    pub audit: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub keys: Option<Spanned<toml::Table>>,
    #[serde(default)]
    pub analysis: Option<FileAnalysis>,
    #[serde(default)]
    pub limits: Option<FileLimits>,
    #[serde(default)]
    pub upstream: Vec<Spanned<FileUpstream>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAdmin {
    pub listen: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLog {
    pub format: Option<Spanned<String>>,
    pub level: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAnalysis {
    pub cache_entries: Option<Spanned<i64>>,
    pub max_sql_bytes: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileLimits {
    pub max_message_bytes: Option<Spanned<i64>>,
    pub startup_timeout_ms: Option<Spanned<i64>>,
    pub connect_timeout_ms: Option<Spanned<i64>>,
    pub drain_timeout_ms: Option<Spanned<i64>>,
    pub max_sessions: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileUpstream {
    pub name: Spanned<String>,
    pub protocol: Spanned<String>,
    pub listen: Spanned<String>,
    pub server: Spanned<String>,
    #[serde(default)]
    pub client_tls: Option<Spanned<FileClientTls>>,
    #[serde(default)]
    pub server_tls: Option<Spanned<FileServerTls>>,
    #[serde(default)]
    pub auth: Option<Spanned<FileAuth>>,
    /// The encryption policy file (`[[encrypt]]` entries).
    #[serde(default)]
    pub policy: Option<Spanned<String>>,
    /// Warden's own login to the database (catalog, migrations).
    #[serde(default)]
    pub service: Option<Spanned<FileService>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileClientTls {
    pub mode: Spanned<String>,
    pub cert: Option<Spanned<String>>,
    pub key: Option<Spanned<String>>,
    pub client_ca: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileServerTls {
    pub mode: Spanned<String>,
    pub ca: Option<Spanned<String>>,
    pub server_name: Option<Spanned<String>>,
    pub client_cert: Option<Spanned<String>>,
    pub client_key: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuth {
    pub users_file: Option<Spanned<String>>,
    pub query: Option<Spanned<FileAuthQuery>>,
    /// MySQL: the plugin warden offers clients (`relay` or `caching_sha2_password`).
    pub mysql_plugin: Option<Spanned<String>>,
    /// MySQL: a PEM RSA private key for caching_sha2_password's public-key exchange.
    pub rsa_key: Option<Spanned<String>>,
    /// MySQL: how long a caching_sha2_password fast-auth entry lives in memory.
    pub cache_seconds: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileAuthQuery {
    pub user: Spanned<String>,
    pub password_env: Option<Spanned<String>>,
    pub database: Option<Spanned<String>>,
    pub sql: Option<Spanned<String>>,
    pub cache_seconds: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileService {
    pub user: Spanned<String>,
    pub password_env: Option<Spanned<String>>,
    pub database: Option<Spanned<String>>,
    pub search_path: Option<Spanned<Vec<String>>>,
}
