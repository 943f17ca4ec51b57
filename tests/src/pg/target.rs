//! Where a PostgreSQL client connects: the database directly, or warden in front of it.
//!
//! Tests are written against a [`Target`] so that the same client-side scenario runs directly
//! against PostgreSQL (which proves the scenario and the harness) and through warden (which
//! tests the proxy). A target knows its address, the CA that signed its certificate, and the
//! log files to show when a test against it fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use tokio_postgres::config::{ChannelBinding, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::pg::instance::clear_libpq_env;
use crate::pg::session::Session;
use crate::pki::CertFiles;
use crate::tls::{ServerCheck, client_config};

/// Which way a target reaches the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The PostgreSQL instance itself.
    Direct,
    /// A warden listener in front of it.
    Warden,
}

/// An endpoint that speaks the PostgreSQL protocol.
#[derive(Debug, Clone)]
pub struct Target {
    pub via: Via,
    pub host: String,
    pub port: u16,
    /// The CA certificate that verifies this endpoint (`sslrootcert`).
    pub ca_cert: PathBuf,
    /// Labelled log files shown when a test against this target fails.
    pub logs: Vec<(String, PathBuf)>,
}

/// Who logs in, and to which database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
    pub database: String,
}

impl Login {
    /// The same credentials for another database.
    pub fn in_database(&self, database: &str) -> Login {
        Login {
            database: database.to_string(),
            ..self.clone()
        }
    }

    /// The same user with another password.
    pub fn with_password(&self, password: &str) -> Login {
        Login {
            password: password.to_string(),
            ..self.clone()
        }
    }
}

/// TLS from the client, as libpq's sslmode names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientTls {
    /// `sslmode=disable`.
    Disable,
    /// `sslmode=require`: encrypted, server not verified.
    Require,
    /// `sslmode=verify-full` against the target's CA.
    #[default]
    VerifyFull,
}

impl ClientTls {
    /// libpq's name for the mode.
    pub fn sslmode(self) -> &'static str {
        match self {
            ClientTls::Disable => "disable",
            ClientTls::Require => "require",
            ClientTls::VerifyFull => "verify-full",
        }
    }
}

/// How a tokio-postgres client connects.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub tls: ClientTls,
    pub application_name: Option<String>,
    pub channel_binding: ChannelBinding,
    /// A client certificate to present (mTLS).
    pub client_cert: Option<CertFiles>,
    /// The startup `options` parameter (such as `-c TimeZone=UTC`).
    pub options: Option<String>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            tls: ClientTls::default(),
            application_name: None,
            channel_binding: ChannelBinding::Prefer,
            client_cert: None,
            options: None,
        }
    }
}

impl ConnectOptions {
    /// Default options with `application_name` set.
    pub fn app(name: &str) -> ConnectOptions {
        ConnectOptions {
            application_name: Some(name.to_string()),
            ..ConnectOptions::default()
        }
    }

    /// These options with another TLS mode.
    pub fn tls(mut self, tls: ClientTls) -> ConnectOptions {
        self.tls = tls;
        self
    }
}

impl Target {
    /// Connects with tokio-postgres; fails with context if the connection is refused.
    pub async fn connect(&self, login: &Login, options: &ConnectOptions) -> Result<Session> {
        self.try_connect(login, options).await?.with_context(|| {
            format!(
                "cannot connect to {:?} at {}:{} as {} (tls {:?})",
                self.via, self.host, self.port, login.user, options.tls
            )
        })
    }

    /// Connects with tokio-postgres. The outer error is a harness failure (a bad CA file, no
    /// answer within 20 s); the inner one is what the server or the TLS layer said.
    pub async fn try_connect(
        &self,
        login: &Login,
        options: &ConnectOptions,
    ) -> Result<std::result::Result<Session, tokio_postgres::Error>> {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(&login.user)
            .password(&login.password)
            .dbname(&login.database)
            .connect_timeout(Duration::from_secs(15))
            .channel_binding(options.channel_binding)
            .ssl_mode(match options.tls {
                ClientTls::Disable => SslMode::Disable,
                ClientTls::Require | ClientTls::VerifyFull => SslMode::Require,
            });
        if let Some(name) = &options.application_name {
            config.application_name(name);
        }
        if let Some(startup_options) = &options.options {
            config.options(startup_options);
        }
        let check = match options.tls {
            ClientTls::VerifyFull => ServerCheck::VerifyFull {
                ca: self.ca_cert.clone(),
            },
            ClientTls::Disable | ClientTls::Require => ServerCheck::None,
        };
        let tls_config = client_config(&check, options.client_cert.as_ref())?;
        let tls = MakeRustlsConnect::new((*tls_config).clone());
        let connected = tokio::time::timeout(Duration::from_secs(20), config.connect(tls))
            .await
            .map_err(|_| {
                anyhow!(
                    "connecting to {}:{} did not finish within 20 s",
                    self.host,
                    self.port
                )
            })?;
        Ok(connected.map(|(client, connection)| Session::new(client, connection)))
    }

    /// A libpq connection string for `login` with `sslmode` (and `sslrootcert` for the verify
    /// modes), plus `extra` keywords.
    pub fn conninfo(&self, login: &Login, sslmode: &str, extra: &[(&str, &str)]) -> String {
        let port = self.port.to_string();
        let ca = self.ca_cert.to_string_lossy().into_owned();
        let mut pairs: Vec<(&str, &str)> = vec![
            ("host", &self.host),
            ("port", &port),
            ("user", &login.user),
            ("password", &login.password),
            ("dbname", &login.database),
            ("sslmode", sslmode),
            ("connect_timeout", "15"),
        ];
        if sslmode.starts_with("verify") {
            pairs.push(("sslrootcert", &ca));
        }
        pairs.extend_from_slice(extra);
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// A command for a libpq program (psql, pgbench) with the connection in environment
    /// variables (PGHOST, PGPORT, ...), any inherited PG* variables removed, and the C locale.
    pub fn libpq_command(&self, program: PathBuf, login: &Login, sslmode: &str) -> Command {
        let mut command = Command::new(program);
        clear_libpq_env(&mut command);
        command
            .env("PGHOST", &self.host)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", &login.user)
            .env("PGPASSWORD", &login.password)
            .env("PGDATABASE", &login.database)
            .env("PGSSLMODE", sslmode)
            .env("PGCONNECT_TIMEOUT", "15")
            .env("LC_ALL", "C");
        if sslmode.starts_with("verify") {
            command.env("PGSSLROOTCERT", &self.ca_cert);
        }
        command
    }

    /// Runs `test` with a time limit; when it fails or panics, shows this target's logs.
    pub async fn watch<F, T>(&self, test: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        crate::watch::watch(&self.logs, crate::watch::TEST_TIME_LIMIT, test).await
    }
}

/// A value quoted for a libpq connection string.
pub fn conninfo_value(value: &str) -> String {
    if !value.is_empty()
        && value
            .chars()
            .all(|c| !c.is_whitespace() && c != '\'' && c != '\\')
    {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}
