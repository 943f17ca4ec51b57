//! Where a MySQL client connects: MariaDB directly, or warden in front of it.
//!
//! Scenarios are written against a [`MyTarget`], so the same client-side scenario runs directly
//! (the control) and through warden. mysql_async connects over TCP only (`prefer_socket`
//! off: left on, it would switch to the server's unix socket and bypass the proxy).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use mysql_async::{Conn, OptsBuilder, SslOpts};

use crate::pg::Via;
use crate::tools::{self, ToolRun};

/// An endpoint that speaks the MySQL protocol.
#[derive(Debug, Clone)]
pub struct MyTarget {
    pub via: Via,
    pub host: String,
    pub port: u16,
    /// The CA certificate that verifies this endpoint.
    pub ca_cert: PathBuf,
    /// Labelled log files shown when a test against this target fails.
    pub logs: Vec<(String, PathBuf)>,
}

/// Who logs in, and to which schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyLogin {
    pub user: String,
    pub password: String,
    pub database: String,
}

impl MyLogin {
    /// The same user with another password.
    pub fn with_password(&self, password: &str) -> MyLogin {
        MyLogin {
            password: password.to_string(),
            ..self.clone()
        }
    }
}

/// TLS from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MyTls {
    /// No TLS.
    #[default]
    Disable,
    /// TLS, verifying the endpoint against its CA and the name `localhost`.
    VerifyFull,
}

/// How a mysql_async client connects.
#[derive(Debug, Clone, Default)]
pub struct MyOptions {
    pub tls: MyTls,
    /// The `program_name` connect attribute.
    pub program: Option<String>,
    /// A file LOAD DATA LOCAL INFILE may read.
    pub local_infile: Option<PathBuf>,
    /// Further connect attributes (mysql_async sends none of its own).
    pub attributes: Vec<(String, String)>,
}

impl MyOptions {
    pub fn program(name: &str) -> MyOptions {
        MyOptions {
            program: Some(name.to_string()),
            ..MyOptions::default()
        }
    }

    pub fn tls(mut self, tls: MyTls) -> MyOptions {
        self.tls = tls;
        self
    }
}

impl MyTarget {
    /// mysql_async options for `login`.
    pub fn opts(&self, login: &MyLogin, options: &MyOptions) -> OptsBuilder {
        let mut opts = OptsBuilder::default()
            .ip_or_hostname(if options.tls == MyTls::VerifyFull {
                "localhost".to_string()
            } else {
                self.host.clone()
            })
            .tcp_port(self.port)
            .user(Some(login.user.clone()))
            .pass(Some(login.password.clone()))
            .db_name(Some(login.database.clone()))
            .prefer_socket(false)
            .stmt_cache_size(0);
        if let Some(program) = &options.program {
            opts = opts.connect_attribute("program_name", program.clone());
        }
        for (key, value) in &options.attributes {
            opts = opts.connect_attribute(key.clone(), value.clone());
        }
        if options.tls == MyTls::VerifyFull {
            opts = opts
                .ssl_opts(SslOpts::default().with_root_certs(vec![self.ca_cert.clone().into()]));
        }
        if let Some(file) = &options.local_infile {
            opts = opts.local_infile_handler(Some(mysql_async::WhiteListFsHandler::new(vec![
                file.clone(),
            ])));
        }
        opts
    }

    /// Connects with mysql_async.
    pub async fn connect(&self, login: &MyLogin, options: &MyOptions) -> Result<Conn> {
        let opts = self.opts(login, options);
        tokio::time::timeout(Duration::from_secs(30), Conn::new(opts))
            .await
            .context("connecting timed out")?
            .with_context(|| {
                format!(
                    "cannot connect to {:?} {}:{} as {}",
                    self.via, self.host, self.port, login.user
                )
            })
    }

    /// Runs `test` with the test time limit; on failure shows the logs.
    pub async fn watch<F, T>(&self, test: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        crate::watch::watch(&self.logs, crate::watch::TEST_TIME_LIMIT, test).await
    }

    /// The `mariadb` command-line client connected to this target over TCP as `login`, with
    /// `args` after the connection options and `input` on standard input.
    pub fn mariadb(&self, login: &MyLogin, args: &[&str], input: Option<&str>) -> Result<ToolRun> {
        let mut command = Command::new(crate::mysql::instance::find("mariadb")?);
        command
            .arg("--no-defaults")
            .arg("--protocol=TCP")
            .arg(format!("--host={}", self.host))
            .arg(format!("--port={}", self.port))
            .arg(format!("--user={}", login.user))
            .arg(format!("--database={}", login.database))
            .args(args)
            .env("MYSQL_PWD", &login.password);
        tools::run_with_input(command, input.map(str::as_bytes), Duration::from_secs(120))
    }

    /// `sysbench` with the MySQL driver against this target; `args` name the test and phase.
    pub fn sysbench(&self, login: &MyLogin, args: &[&str], timeout: Duration) -> Result<ToolRun> {
        let mut command = Command::new("sysbench");
        command
            .arg("--db-driver=mysql")
            .arg(format!("--mysql-host={}", self.host))
            .arg(format!("--mysql-port={}", self.port))
            .arg(format!("--mysql-user={}", login.user))
            .arg(format!("--mysql-password={}", login.password))
            .arg(format!("--mysql-db={}", login.database))
            .arg("--mysql-ssl=off")
            .args(args);
        tools::run(command, timeout)
    }
}
