//! Checking a configuration file and turning it into a [`Config`].
//!
//! Parsing errors come from the TOML reader with their position; every semantic check here
//! (addresses, modes, names, required companions such as a key for a certificate) reports the
//! span of the offending value, and all problems are collected rather than stopping at the first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use super::file::{FileAuth, FileClientTls, FileConfig, FileServerTls, FileUpstream};
use super::*;

/// Reads and checks the file at `path`, and that every file it names can be read.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::whole_file(path, format!("cannot read the configuration file: {e}"))
    })?;
    check(path, &text, true)
}

/// Checks configuration `text` that was read from `path` (without opening the files it names).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    check(path, text, false)
}

fn check(path: &Path, text: &str, open_files: bool) -> Result<Config, ConfigErrors> {
    let file: FileConfig = toml::from_str(text).map_err(|e| {
        let message = e.message().to_string();
        match e.span() {
            Some(span) => ConfigError::at_span(path, text, span, message),
            None => ConfigError::whole_file(path, message),
        }
    })?;
    let mut checker = Checker {
        path,
        text,
        base: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        errors: Vec::new(),
        open_files,
    };
    let config = checker.check(file);
    if checker.errors.is_empty() {
        // `check` only returns None after recording an error.
        config.ok_or_else(|| ConfigErrors(vec![]))
    } else {
        Err(ConfigErrors(checker.errors))
    }
}

pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) base: PathBuf,
    pub(super) errors: Vec<ConfigError>,
    /// Whether to check that named files can be opened (their contents are checked when the
    /// runtime is built, with errors in those files' own lines). The encryption policy is the
    /// exception: it is read and parsed here, so the checked configuration carries it.
    pub(super) open_files: bool,
}

impl Checker<'_> {
    pub(super) fn error(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        self.errors
            .push(ConfigError::at_span(self.path, self.text, span, message));
    }

    fn check(&mut self, file: FileConfig) -> Option<Config> {
        let admin = match file.admin {
            Some(admin) => {
                let listen = &admin.get_ref().listen;
                self.socket_addr(listen, "admin listen address")
            }
            None => Some(SocketAddr::from(([127, 0, 0, 1], 9187))),
        };

        let log = self.log(file.log);
        let (audit, audit_enabled) = self.audit(file.audit);
        let analysis = self.analysis(file.analysis);
        let limits = self.limits(file.limits);
        let keys = file.keys.map(|table| self.keys(table));
        let has_keys = keys.is_some();

        if file.upstream.is_empty() {
            self.errors.push(ConfigError::whole_file(
                self.path,
                "no [[upstream]] is configured: add one section per database warden protects",
            ));
        }
        let mut upstreams = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut listens: HashMap<SocketAddr, String> = HashMap::new();
        if let Some(admin) = admin {
            listens.insert(admin, "the admin endpoint".into());
        }
        for upstream in file.upstream {
            let span = upstream.span();
            let name_span = upstream.get_ref().name.span();
            let Some(checked) = self.upstream(upstream.into_inner(), has_keys) else {
                continue;
            };
            if names.insert(checked.name.clone(), span.start).is_some() {
                self.error(
                    name_span,
                    format!(
                        "upstream name `{}` is used twice; names must be unique",
                        checked.name
                    ),
                );
            }
            if let Some(other) = listens.insert(checked.listen, checked.name.clone()) {
                self.error(
                    span,
                    format!(
                        "upstream `{}` listens on {}, which {} already uses",
                        checked.name,
                        checked.listen,
                        if other == "the admin endpoint" {
                            other
                        } else {
                            format!("upstream `{other}`")
                        }
                    ),
                );
            }
            upstreams.push(checked);
        }

        Some(Config {
            path: self.path.to_path_buf(),
            admin: AdminConfig { listen: admin? },
            log: log?,
            audit: audit?,
            audit_enabled,
            keys: match keys {
                Some(checked) => Some(checked?),
                None => None,
            },
            analysis: analysis?,
            limits: limits?,
            upstreams,
        })
    }

    /// The `[keys]` table, read by the crypto crate's own type so that `warden keys`, `serve`
    /// and `config check` agree on it; paths are resolved against the file's directory.
    fn keys(&mut self, table: Spanned<toml::Table>) -> Option<warden_crypto::KeysConfig> {
        let span = table.span();
        match toml::Value::Table(table.into_inner()).try_into::<warden_crypto::KeysConfig>() {
            Ok(mut keys) => {
                keys.resolve_relative_to(&self.base);
                Some(keys)
            }
            Err(e) => {
                self.error(span, format!("[keys]: {}", e.message().trim_end()));
                None
            }
        }
    }

    fn socket_addr(&mut self, value: &Spanned<String>, what: &str) -> Option<SocketAddr> {
        match value.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    value.span(),
                    format!(
                        "{what} `{}` is not an IP address and port such as 127.0.0.1:6432 or [::1]:6432",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    pub(super) fn path_value(&self, value: &Spanned<String>) -> PathBuf {
        let p = Path::new(value.get_ref());
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    /// A path that names a file warden reads: resolved, and checked to be readable.
    fn file_value(&mut self, value: &Spanned<String>, what: &str) -> PathBuf {
        let path = self.path_value(value);
        if self.open_files
            && let Err(e) = std::fs::File::open(&path)
        {
            self.error(
                value.span(),
                format!("cannot read the {what} `{}`: {e}", path.display()),
            );
        }
        path
    }

    fn positive(&mut self, value: &Option<Spanned<i64>>, default: u64, what: &str) -> Option<u64> {
        match value {
            None => Some(default),
            Some(v) if *v.get_ref() > 0 => Some(*v.get_ref() as u64),
            Some(v) => {
                self.error(v.span(), format!("{what} must be a positive number"));
                None
            }
        }
    }

    fn log(&mut self, log: Option<super::file::FileLog>) -> Option<LogConfig> {
        let mut config = LogConfig {
            format: LogFormat::Text,
            level: "info".into(),
        };
        let Some(log) = log else {
            return Some(config);
        };
        if let Some(format) = log.format {
            match format.get_ref().as_str() {
                "text" => config.format = LogFormat::Text,
                "json" => config.format = LogFormat::Json,
                other => {
                    self.error(
                        format.span(),
                        format!("log format `{other}` is unknown; use `text` or `json`"),
                    );
                    return None;
                }
            }
        }
        if let Some(level) = log.level {
            if let Err(e) = tracing_subscriber::EnvFilter::try_new(level.get_ref()) {
                self.error(
                    level.span(),
                    format!("log level `{}` is not a valid filter: {e}", level.get_ref()),
                );
                return None;
            }
            config.level = level.into_inner();
        }
        Some(config)
    }

    /// The audit crate's configuration, and whether the trail is on (`enabled`, which is the
    /// proxy's key, not the audit crate's).
    fn audit(
        &mut self,
        audit: Option<Spanned<toml::Table>>,
    ) -> (Option<warden_audit::AuditConfig>, bool) {
        let mut enabled = true;
        let mut config = match audit {
            None => warden_audit::AuditConfig::default(),
            Some(table) => {
                let span = table.span();
                let mut table = table.into_inner();
                match table.remove("enabled") {
                    None => {}
                    Some(toml::Value::Boolean(b)) => enabled = b,
                    Some(other) => self.error(
                        span.clone(),
                        format!(
                            "in [audit]: `enabled` must be true or false, not {}",
                            other.type_str()
                        ),
                    ),
                }
                match table.try_into::<warden_audit::AuditConfig>() {
                    Ok(c) => c,
                    Err(e) => {
                        self.error(span, format!("in [audit]: {}", e.message()));
                        return (None, enabled);
                    }
                }
            }
        };
        config.resolve_paths(&self.base);
        (Some(config), enabled)
    }

    fn analysis(&mut self, analysis: Option<super::file::FileAnalysis>) -> Option<AnalysisConfig> {
        let (cache, max) = match &analysis {
            Some(a) => (&a.cache_entries, &a.max_sql_bytes),
            None => (&None, &None),
        };
        let cache_entries = self.positive(cache, 10_000, "analysis.cache_entries");
        let max_sql_bytes = self.positive(max, 1 << 20, "analysis.max_sql_bytes");
        Some(AnalysisConfig {
            cache_entries: cache_entries? as usize,
            max_sql_bytes: max_sql_bytes? as usize,
        })
    }

    fn limits(&mut self, limits: Option<super::file::FileLimits>) -> Option<Limits> {
        let none = super::file::FileLimits {
            max_message_bytes: None,
            startup_timeout_ms: None,
            connect_timeout_ms: None,
            drain_timeout_ms: None,
            max_sessions: None,
        };
        let l = limits.unwrap_or(none);
        let max_message_bytes = self.positive(&l.max_message_bytes, 1 << 30, "max_message_bytes");
        let startup = self.positive(&l.startup_timeout_ms, 15_000, "startup_timeout_ms");
        let connect = self.positive(&l.connect_timeout_ms, 10_000, "connect_timeout_ms");
        let drain = self.positive(&l.drain_timeout_ms, 30_000, "drain_timeout_ms");
        let max_sessions = self.positive(&l.max_sessions, 10_000, "max_sessions");
        if let (Some(m), Some(span)) = (max_message_bytes, l.max_message_bytes.as_ref())
            && m > (i32::MAX as u64)
        {
            self.error(
                span.span(),
                "max_message_bytes cannot exceed 2147483647, the protocol's limit",
            );
            return None;
        }
        Some(Limits {
            max_message_bytes: max_message_bytes? as usize,
            startup_timeout: Duration::from_millis(startup?),
            connect_timeout: Duration::from_millis(connect?),
            drain_timeout: Duration::from_millis(drain?),
            max_sessions: max_sessions? as usize,
        })
    }

    /// One `[[upstream]]`; `has_keys` says whether the file has a `[keys]` table (an
    /// encryption policy needs one).
    fn upstream(&mut self, u: FileUpstream, has_keys: bool) -> Option<UpstreamConfig> {
        let errors_before = self.errors.len();
        let name = u.name.get_ref().clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            self.error(
                u.name.span(),
                format!(
                    "upstream name `{name}` must be non-empty and use only letters, digits, `-` and `_`"
                ),
            );
        }
        let protocol = match u.protocol.get_ref().as_str() {
            "postgres" | "postgresql" => Some(Protocol::Postgres),
            "mysql" | "mariadb" => Some(Protocol::Mysql),
            other => {
                self.error(
                    u.protocol.span(),
                    format!("protocol `{other}` is unknown; use `postgres` or `mysql`"),
                );
                None
            }
        };
        let listen = self.socket_addr(&u.listen, "listen address");
        let server = self.server_address(&u.server);
        let client_tls = self.client_tls(u.client_tls);
        let server_tls = self.server_tls(u.server_tls, server.as_ref());
        let auth = self.auth(u.auth, &u.name, protocol);
        let encryption = self.encryption(u.policy, u.service, &u.name, protocol, has_keys);
        if self.errors.len() > errors_before {
            return None;
        }
        Some(UpstreamConfig {
            name,
            protocol: protocol?,
            listen: listen?,
            server: server?,
            client_tls: client_tls?,
            server_tls: server_tls?,
            auth: auth?,
            policy_path: encryption.policy_path,
            policy: encryption.policy,
            service: encryption.service,
        })
    }

    fn server_address(&mut self, value: &Spanned<String>) -> Option<ServerAddress> {
        let text = value.get_ref();
        let parsed = if let Ok(addr) = text.parse::<SocketAddr>() {
            Some(ServerAddress {
                host: addr.ip().to_string(),
                port: addr.port(),
            })
        } else {
            text.rsplit_once(':').and_then(|(host, port)| {
                let port = port.parse::<u16>().ok()?;
                let valid_host = !host.is_empty()
                    && host
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
                valid_host.then(|| ServerAddress {
                    host: host.to_string(),
                    port,
                })
            })
        };
        if parsed.is_none() {
            self.error(
                value.span(),
                format!("server `{text}` is not `host:port` (for example db.example.com:5432)"),
            );
        }
        parsed
    }

    fn client_tls(&mut self, tls: Option<Spanned<FileClientTls>>) -> Option<ClientTlsConfig> {
        let Some(tls) = tls else {
            return Some(ClientTlsConfig {
                mode: ClientTlsMode::Disable,
                cert: None,
                key: None,
                client_ca: None,
            });
        };
        let span = tls.span();
        let tls = tls.into_inner();
        let mode = match tls.mode.get_ref().as_str() {
            "disable" => ClientTlsMode::Disable,
            "allow" => ClientTlsMode::Allow,
            "require" => ClientTlsMode::Require,
            other => {
                self.error(
                    tls.mode.span(),
                    format!("client_tls mode `{other}` is unknown; use disable, allow or require"),
                );
                return None;
            }
        };
        let cert = tls.cert.as_ref().map(|c| self.file_value(c, "certificate"));
        let key = tls.key.as_ref().map(|k| self.file_value(k, "private key"));
        let client_ca = tls
            .client_ca
            .as_ref()
            .map(|c| self.file_value(c, "client CA certificate"));
        if mode != ClientTlsMode::Disable && (cert.is_none() || key.is_none()) {
            self.error(
                span,
                "client_tls needs both `cert` and `key` unless its mode is `disable`",
            );
            return None;
        }
        if mode == ClientTlsMode::Disable && client_ca.is_some() {
            self.error(
                span,
                "client_tls `client_ca` asks clients for certificates, which needs TLS: set mode to allow or require",
            );
            return None;
        }
        Some(ClientTlsConfig {
            mode,
            cert,
            key,
            client_ca,
        })
    }

    fn server_tls(
        &mut self,
        tls: Option<Spanned<FileServerTls>>,
        server: Option<&ServerAddress>,
    ) -> Option<ServerTlsConfig> {
        let default_name = server.map(|s| s.host.clone()).unwrap_or_default();
        let Some(tls) = tls else {
            return Some(ServerTlsConfig {
                mode: ServerTlsMode::Disable,
                ca: None,
                server_name: default_name,
                client_cert: None,
                client_key: None,
            });
        };
        let span = tls.span();
        let tls = tls.into_inner();
        let mode = match tls.mode.get_ref().as_str() {
            "disable" => ServerTlsMode::Disable,
            "prefer" => ServerTlsMode::Prefer,
            "require" => ServerTlsMode::Require,
            "verify-ca" => ServerTlsMode::VerifyCa,
            "verify-full" => ServerTlsMode::VerifyFull,
            other => {
                self.error(
                    tls.mode.span(),
                    format!(
                        "server_tls mode `{other}` is unknown; use disable, prefer, require, verify-ca or verify-full"
                    ),
                );
                return None;
            }
        };
        let ca = tls
            .ca
            .as_ref()
            .map(|c| self.file_value(c, "CA certificate"));
        if mode.verifies_chain() && ca.is_none() {
            self.error(
                span.clone(),
                format!(
                    "server_tls mode `{}` verifies the database's certificate and needs `ca`",
                    tls.mode.get_ref()
                ),
            );
            return None;
        }
        let client_cert = tls
            .client_cert
            .as_ref()
            .map(|c| self.file_value(c, "client certificate"));
        let client_key = tls
            .client_key
            .as_ref()
            .map(|c| self.file_value(c, "client private key"));
        if client_cert.is_some() != client_key.is_some() {
            self.error(
                span,
                "server_tls needs `client_cert` and `client_key` together",
            );
            return None;
        }
        Some(ServerTlsConfig {
            mode,
            ca,
            server_name: tls
                .server_name
                .map(|n| n.into_inner())
                .unwrap_or(default_name),
            client_cert,
            client_key,
        })
    }

    fn auth(
        &mut self,
        auth: Option<Spanned<FileAuth>>,
        name: &Spanned<String>,
        protocol: Option<Protocol>,
    ) -> Option<AuthConfig> {
        if protocol == Some(Protocol::Mysql) {
            return self.mysql_auth(auth);
        }
        let Some(auth) = auth else {
            self.error(
                name.span(),
                format!(
                    "upstream `{}` has no [upstream.auth]: warden authenticates every client and needs a users_file or an auth query",
                    name.get_ref()
                ),
            );
            return None;
        };
        let span = auth.span();
        let auth = auth.into_inner();
        for (key, value) in [
            ("mysql_plugin", auth.mysql_plugin.as_ref().map(|v| v.span())),
            ("rsa_key", auth.rsa_key.as_ref().map(|v| v.span())),
            (
                "cache_seconds",
                auth.cache_seconds.as_ref().map(|v| v.span()),
            ),
        ] {
            if let Some(at) = value {
                self.error(
                    at,
                    format!("`{key}` is a MySQL setting; this upstream speaks PostgreSQL"),
                );
            }
        }
        let users_file = auth
            .users_file
            .as_ref()
            .map(|f| self.file_value(f, "users file"));
        let query = match auth.query {
            None => None,
            Some(q) => {
                let q = q.into_inner();
                let cache = self.positive(&q.cache_seconds, 30, "auth query cache_seconds")?;
                Some(AuthQueryConfig {
                    user: q.user.into_inner(),
                    password_env: q.password_env.map(|p| p.into_inner()),
                    database: q
                        .database
                        .map(|d| d.into_inner())
                        .unwrap_or_else(|| "postgres".into()),
                    sql: q.sql.map(|s| s.into_inner()).unwrap_or_else(|| {
                        "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = $1 AND rolcanlogin".into()
                    }),
                    cache: Duration::from_secs(cache),
                })
            }
        };
        if users_file.is_none() && query.is_none() {
            self.error(
                span,
                "[upstream.auth] needs a `users_file`, a [upstream.auth.query], or both",
            );
            return None;
        }
        Some(AuthConfig {
            users_file,
            query,
            mysql: MysqlAuthConfig::default(),
        })
    }

    /// `[upstream.auth]` of a MySQL upstream: optional, and it never names a password store.
    fn mysql_auth(&mut self, auth: Option<Spanned<FileAuth>>) -> Option<AuthConfig> {
        let mut mysql = MysqlAuthConfig::default();
        if let Some(auth) = auth {
            let auth = auth.into_inner();
            if let Some(f) = &auth.users_file {
                self.error(
                    f.span(),
                    "MySQL upstreams take no users_file: the database checks the client's answer to its own scramble, and warden stores no credentials",
                );
            }
            if let Some(q) = &auth.query {
                self.error(q.span(), "MySQL upstreams take no [upstream.auth.query]");
            }
            if let Some(plugin) = &auth.mysql_plugin {
                mysql.plugin = match plugin.get_ref().as_str() {
                    "relay" => MysqlAuthPlugin::Relay,
                    "caching_sha2_password" => MysqlAuthPlugin::CachingSha2,
                    other => {
                        self.error(
                            plugin.span(),
                            format!(
                                "mysql_plugin `{other}` is unknown; use `relay` (the database's own plugin, such as mysql_native_password) or `caching_sha2_password`"
                            ),
                        );
                        return None;
                    }
                };
            }
            mysql.rsa_key = auth.rsa_key.as_ref().map(|k| self.file_value(k, "RSA key"));
            mysql.cache = Duration::from_secs(self.positive(
                &auth.cache_seconds,
                3600,
                "auth cache_seconds",
            )?);
        }
        Some(AuthConfig {
            users_file: None,
            query: None,
            mysql,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[admin]
listen = "127.0.0.1:9187"

[log]
format = "json"

[[upstream]]
name = "main"
protocol = "postgres"
listen = "127.0.0.1:6432"
server = "db.internal:5432"

[upstream.client_tls]
mode = "allow"
cert = "tls/w.crt"
key = "/etc/w.key"

[upstream.server_tls]
mode = "verify-full"
ca = "ca.crt"

[upstream.auth]
users_file = "users.txt"
"#;

    #[test]
    fn a_good_file_loads_with_paths_resolved() {
        let c = Config::parse(Path::new("/etc/warden/w.toml"), GOOD).unwrap();
        let u = &c.upstreams[0];
        assert_eq!(u.server.host, "db.internal");
        assert_eq!(u.server_tls.server_name, "db.internal");
        assert_eq!(
            u.client_tls.cert.as_deref(),
            Some(Path::new("/etc/warden/tls/w.crt"))
        );
        assert_eq!(u.client_tls.key.as_deref(), Some(Path::new("/etc/w.key")));
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.audit.dir, Path::new("/etc/warden/audit"));
    }

    fn errors(text: &str) -> Vec<String> {
        match Config::parse(Path::new("w.toml"), text) {
            Ok(_) => panic!("expected errors"),
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_audit_trail_is_on_unless_switched_off() {
        let c = Config::parse(Path::new("w.toml"), GOOD).unwrap();
        assert!(c.audit_enabled);
        let off = format!("{GOOD}\n[audit]\nenabled = false\nbatch_size = 10\n");
        let c = Config::parse(Path::new("w.toml"), &off).unwrap();
        assert!(!c.audit_enabled);
        assert_eq!(c.audit.batch_size, 10);
        let e = errors(&format!("{GOOD}\n[audit]\nenabled = \"no\"\n"));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("`enabled` must be true or false"), "{e:?}");
    }

    #[test]
    fn unknown_keys_name_the_line() {
        let text = GOOD.replace("format = \"json\"", "formt = \"json\"");
        let e = errors(&text);
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("w.toml:6:"), "{e:?}");
        assert!(e[0].contains("formt"), "{e:?}");
    }

    #[test]
    fn the_keys_table_is_checked_and_its_paths_resolved() {
        let good = format!(
            "{GOOD}\n[keys]\nkeyring = \"keys/ring.json\"\nmaster_key = {{ provider = \"file\", path = \"/etc/m.key\" }}\n"
        );
        let c = Config::parse(Path::new("/etc/warden/w.toml"), &good).unwrap();
        let keys = c.keys.expect("a [keys] table");
        assert_eq!(keys.keyring, Path::new("/etc/warden/keys/ring.json"));

        let bad = format!(
            "{GOOD}\n[keys]\nkeyring = \"ring.json\"\nmaster_key = {{ provider = \"vault\" }}\n"
        );
        let e = errors(&bad);
        assert_eq!(e.len(), 1, "{e:?}");
        let line = GOOD.lines().count() + 2;
        assert!(e[0].starts_with(&format!("w.toml:{line}:")), "{e:?}");
        assert!(e[0].contains("[keys]") && e[0].contains("vault"), "{e:?}");
    }

    #[test]
    fn bad_values_name_their_line_and_all_are_reported() {
        let text = GOOD
            .replace("127.0.0.1:6432", "localhost:6432")
            .replace("verify-full", "verify-everything");
        let e = errors(&text);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("w.toml:11:"), "{e:?}");
        assert!(e[0].contains("not an IP address"), "{e:?}");
        assert!(e[1].starts_with("w.toml:20:"), "{e:?}");
        assert!(e[1].contains("verify-everything"), "{e:?}");
    }

    #[test]
    fn duplicate_listeners_and_missing_auth_are_errors() {
        let mut text = GOOD.to_string();
        text.push_str(
            r#"
[[upstream]]
name = "second"
protocol = "postgres"
listen = "127.0.0.1:6432"
server = "127.0.0.1:5433"
"#,
        );
        let e = errors(&text);
        assert!(e.iter().any(|e| e.contains("no [upstream.auth]")), "{e:?}");
        let text = text.replace(
            "server = \"127.0.0.1:5433\"",
            "server = \"127.0.0.1:5433\"\n[upstream.auth]\nusers_file = \"u\"",
        );
        let e = errors(&text);
        assert!(e.iter().any(|e| e.contains("already uses")), "{e:?}");
    }

    #[test]
    fn unreadable_files_name_the_line_that_names_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.toml");
        let text = GOOD
            .replace("tls/w.crt", "missing.crt")
            .replace("/etc/w.key", "k");
        std::fs::write(&path, &text).unwrap();
        std::fs::write(dir.path().join("k"), "").unwrap();
        std::fs::write(dir.path().join("ca.crt"), "").unwrap();
        std::fs::write(dir.path().join("users.txt"), "").unwrap();
        let e: Vec<String> = Config::load(&path)
            .unwrap_err()
            .0
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("w.toml:16:"), "{e:?}");
        assert!(e[0].contains("cannot read the certificate"), "{e:?}");
    }

    #[test]
    fn verify_modes_need_a_ca() {
        let e = errors(&GOOD.replace("ca = \"ca.crt\"", ""));
        assert!(e[0].contains("needs `ca`"), "{e:?}");
    }

    #[test]
    fn mysql_upstreams_need_no_password_store_and_check_their_auth_keys() {
        let base = "[admin]\nlisten = \"127.0.0.1:9187\"\n[[upstream]]\nname = \"m\"\nprotocol = \"mysql\"\nlisten = \"127.0.0.1:3307\"\nserver = \"127.0.0.1:3306\"\n";
        let c = Config::parse(Path::new("/etc/w.toml"), base).unwrap();
        assert_eq!(c.upstreams[0].protocol, Protocol::Mysql);
        assert_eq!(c.upstreams[0].auth.mysql.plugin, MysqlAuthPlugin::Relay);
        let sha2 = format!(
            "{base}[upstream.auth]\nmysql_plugin = \"caching_sha2_password\"\ncache_seconds = 60\n"
        );
        let c = Config::parse(Path::new("/etc/w.toml"), &sha2).unwrap();
        assert_eq!(
            c.upstreams[0].auth.mysql.plugin,
            MysqlAuthPlugin::CachingSha2
        );
        assert_eq!(c.upstreams[0].auth.mysql.cache, Duration::from_secs(60));
        let bad = errors(&format!("{base}[upstream.auth]\nusers_file = \"u.txt\"\n"));
        assert!(
            bad.iter()
                .any(|e| e.contains("w.toml:9:") && e.contains("no users_file")),
            "{bad:?}"
        );
        let bad = errors(&format!(
            "{base}[upstream.auth]\nmysql_plugin = \"sha256\"\n"
        ));
        assert!(
            bad.iter()
                .any(|e| e.contains("w.toml:9:") && e.contains("mysql_plugin `sha256`")),
            "{bad:?}"
        );
        let pg = GOOD.replace(
            "users_file = \"users.txt\"",
            "users_file = \"users.txt\"\nmysql_plugin = \"relay\"",
        );
        assert!(errors(&pg).iter().any(|e| e.contains("MySQL setting")));
    }
}
