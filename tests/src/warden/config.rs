//! The warden configuration a test wants, rendered into the TOML of docs/CONFIG.md.
//!
//! A [`WardenConfig`] describes what matters to a test (upstreams and their TLS, users, limits,
//! log level); [`WardenConfig::render`] writes the file the way an operator would, with relative
//! paths resolved against the configuration's directory. Ports left unset are chosen when the
//! proxy starts. Features the harness does not model yet go in [`WardenConfig::extra_toml`].

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::upstream::UpstreamDatabase;

/// A whole warden configuration.
#[derive(Debug, Clone)]
pub struct WardenConfig {
    /// `[admin] listen` port; chosen at start when `None`.
    pub admin_port: Option<u16>,
    /// `[log] format`: `text` or `json`.
    pub log_format: String,
    /// `[log] level`.
    pub log_level: String,
    /// `[audit]` keys besides `dir` (which is always `audit`), as TOML values.
    pub audit: Vec<(String, String)>,
    /// `[limits]` keys, as TOML values.
    pub limits: Vec<(String, String)>,
    pub upstreams: Vec<UpstreamSpec>,
    /// TOML appended verbatim.
    pub extra_toml: String,
    /// Environment variables warden is started with (for settings the configuration takes from
    /// the environment, such as the auth query user's password).
    pub env: Vec<(String, String)>,
}

/// One `[[upstream]]`.
#[derive(Debug, Clone)]
pub struct UpstreamSpec {
    pub name: String,
    pub protocol: String,
    /// The address warden listens on for this upstream.
    pub listen_ip: IpAddr,
    /// The listen port; chosen at start when `None`.
    pub listen_port: Option<u16>,
    /// The database server.
    pub server: SocketAddr,
    pub client_tls: ClientTlsSpec,
    pub server_tls: ServerTlsSpec,
    /// Contents of the users file (`"name" "verifier"` lines).
    pub users: String,
    /// Log files of the database behind this upstream, shown on failure.
    pub server_logs: Vec<(String, PathBuf)>,
    /// Further `[upstream.auth]` keys, as TOML values (MySQL: `mysql_plugin`, `rsa_key`).
    pub auth: Vec<(String, String)>,
    /// Further keys of the `[[upstream]]` table itself, as TOML values (`policy`, or `service`
    /// as an inline table; see [`crate::warden::EncryptionFiles`]).
    pub settings: Vec<(String, String)>,
}

/// `[upstream.client_tls]`: TLS between clients and warden. The certificate and key are the
/// harness's warden certificate (see [`crate::fixtures::TestPki`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsSpec {
    /// `disable`, `allow` or `require`.
    pub mode: String,
    /// Ask clients for certificates signed by the test client CA (mTLS).
    pub client_ca: bool,
}

/// `[upstream.server_tls]`: TLS between warden and the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSpec {
    /// `disable`, `prefer`, `require`, `verify-ca` or `verify-full`.
    pub mode: String,
    /// The CA warden trusts for the database.
    pub ca: Option<PathBuf>,
    /// The name to verify (defaults to the host of `server`).
    pub server_name: Option<String>,
}

impl UpstreamSpec {
    /// An upstream named `name` in front of `database`, accepting the users in `users` (a users
    /// file's text). Clients may use TLS (`allow`); warden verifies the database fully
    /// (`verify-full` against the database's CA, as `localhost`).
    pub fn new(name: &str, database: &dyn UpstreamDatabase, users: String) -> UpstreamSpec {
        UpstreamSpec {
            name: name.to_string(),
            protocol: database.protocol().to_string(),
            listen_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            listen_port: None,
            server: database.address(),
            client_tls: ClientTlsSpec {
                mode: "allow".into(),
                client_ca: false,
            },
            server_tls: ServerTlsSpec {
                mode: "verify-full".into(),
                ca: Some(database.ca_cert().to_path_buf()),
                server_name: Some("localhost".into()),
            },
            users,
            server_logs: database.log_files(),
            auth: Vec::new(),
            settings: Vec::new(),
        }
    }

    /// The users file's name in warden's directory.
    pub fn users_file_name(&self) -> String {
        format!("users-{}.txt", self.name)
    }
}

impl WardenConfig {
    /// A configuration with one upstream and the harness's defaults: text logs at `info`,
    /// audit batches flushed every 20 ms, a 10 s drain.
    pub fn new(upstream: UpstreamSpec) -> WardenConfig {
        WardenConfig {
            admin_port: None,
            log_format: "text".into(),
            log_level: "info".into(),
            audit: vec![
                ("flush_interval_ms".into(), "20".into()),
                ("durability".into(), "\"normal\"".into()),
            ],
            limits: vec![
                ("drain_timeout_ms".into(), "10000".into()),
                ("startup_timeout_ms".into(), "10000".into()),
            ],
            upstreams: vec![upstream],
            extra_toml: String::new(),
            env: Vec::new(),
        }
    }

    /// Sets (or replaces) a `[limits]` key.
    pub fn limit(mut self, key: &str, value: i64) -> WardenConfig {
        self.limits.retain(|(k, _)| k != key);
        self.limits.push((key.to_string(), value.to_string()));
        self
    }

    /// The upstream named `name`.
    pub fn upstream_mut(&mut self, name: &str) -> Option<&mut UpstreamSpec> {
        self.upstreams.iter_mut().find(|u| u.name == name)
    }

    /// The TOML text. Ports must have been chosen (`Warden::start` does it).
    pub fn render(&self) -> String {
        let mut t = String::from("# Written by the warden test harness (docs/CONFIG.md).\n\n");
        let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, self.admin_port.unwrap_or(0)));
        let _ = writeln!(t, "[admin]\nlisten = {}\n", q(&admin.to_string()));
        let _ = writeln!(
            t,
            "[log]\nformat = {}\nlevel = {}\n",
            q(&self.log_format),
            q(&self.log_level)
        );
        let _ = writeln!(t, "[audit]\ndir = \"audit\"");
        for (key, value) in &self.audit {
            let _ = writeln!(t, "{key} = {value}");
        }
        t.push('\n');
        if !self.limits.is_empty() {
            t.push_str("[limits]\n");
            for (key, value) in &self.limits {
                let _ = writeln!(t, "{key} = {value}");
            }
            t.push('\n');
        }
        for u in &self.upstreams {
            let listen = SocketAddr::new(u.listen_ip, u.listen_port.unwrap_or(0));
            let _ = writeln!(
                t,
                "[[upstream]]\nname = {}\nprotocol = {}\nlisten = {}\nserver = {}",
                q(&u.name),
                q(&u.protocol),
                q(&listen.to_string()),
                q(&u.server.to_string())
            );
            for (key, value) in &u.settings {
                let _ = writeln!(t, "{key} = {value}");
            }
            t.push('\n');
            let _ = writeln!(
                t,
                "[upstream.client_tls]\nmode = {}\ncert = \"tls/warden.crt\"\nkey = \"tls/warden.key\"",
                q(&u.client_tls.mode)
            );
            if u.client_tls.client_ca {
                t.push_str("client_ca = \"tls/clients-ca.crt\"\n");
            }
            t.push('\n');
            let _ = writeln!(t, "[upstream.server_tls]\nmode = {}", q(&u.server_tls.mode));
            if let Some(ca) = &u.server_tls.ca {
                let _ = writeln!(t, "ca = {}", q(&ca.to_string_lossy()));
            }
            if let Some(name) = &u.server_tls.server_name {
                let _ = writeln!(t, "server_name = {}", q(name));
            }
            t.push('\n');
            t.push_str("[upstream.auth]\n");
            if u.protocol != "mysql" {
                let _ = writeln!(t, "users_file = {}", q(&u.users_file_name()));
            }
            for (key, value) in &u.auth {
                let _ = writeln!(t, "{key} = {value}");
            }
            t.push('\n');
        }
        t.push_str(&self.extra_toml);
        t
    }
}

/// A TOML basic string (JSON string escaping is valid TOML).
pub fn q(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}
