//! The warden proxy as a child process of the test.
//!
//! [`Warden::start`] writes the configuration, TLS material and users files into a scratch
//! directory, runs `warden serve --config FILE` with stdout and stderr captured to files there,
//! and waits until `GET /readyz` answers 200. Everything else a test does to the proxy goes
//! through the same doors an operator uses: signals (SIGHUP reload, SIGTERM drain), the admin
//! endpoint, and the `warden` CLI (`audit query`, `audit verify`, `config check`...).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::http::{self, HttpResponse};
use crate::pg::{Target, Via};
use crate::process::ServerProcess;
use crate::scratch::Scratch;
use crate::tools::{self, ToolRun};
use crate::warden::audit::{AuditRecord, parse_records, summarize};
use crate::warden::binary::warden_binary;
use crate::warden::config::WardenConfig;
use crate::warden::metrics::Metrics;

/// How long warden may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a CLI command may run.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

/// A running warden.
#[derive(Debug)]
pub struct Warden {
    scratch: Scratch,
    config: WardenConfig,
    config_path: PathBuf,
    stdout_log: PathBuf,
    stderr_log: PathBuf,
    process: ServerProcess,
}

impl Warden {
    /// Writes the configuration and starts warden; returns once `/readyz` answers 200. Ports
    /// the configuration leaves open are chosen here (and chosen again if warden loses one to
    /// another process).
    pub fn start(config: WardenConfig) -> Result<Warden> {
        let binary = warden_binary()?;
        let pki = crate::fixtures::pki()?;
        let scratch = Scratch::new("warden")?;
        let tls_dir = scratch.join("tls");
        std::fs::create_dir(&tls_dir)?;
        pki.warden_cert.write(&tls_dir, "warden")?;
        std::fs::copy(pki.client_ca_file(), tls_dir.join("clients-ca.crt"))?;
        let config_path = scratch.join("warden.toml");
        let stdout_log = scratch.join("warden.stdout");
        let stderr_log = scratch.join("warden.stderr");

        let mut attempt = 0;
        let (config, process) = loop {
            attempt += 1;
            let mut config = config.clone();
            assign_ports(&mut config)?;
            write_files(&config, scratch.path(), &config_path)?;
            // Fresh logs per attempt: the address-in-use check reads them.
            std::fs::write(&stdout_log, "")?;
            std::fs::write(&stderr_log, "")?;
            let mut command = Command::new(&binary);
            command
                .arg("serve")
                .arg("--config")
                .arg(&config_path)
                .current_dir(scratch.path())
                .env("RUST_BACKTRACE", "1")
                .env_remove("RUST_LOG")
                .envs(config.env.iter().map(|(k, v)| (k, v)));
            let process =
                ServerProcess::spawn("warden", command, &stdout_log, &stderr_log, libc::SIGKILL)?;
            match wait_ready(&process, &config, &config_path, READY_TIMEOUT) {
                Ok(()) => break (config, process),
                Err(e) => {
                    process.stop(libc::SIGKILL, Duration::from_secs(5));
                    if process.log().contains("Address already in use") && attempt < 4 {
                        continue;
                    }
                    return Err(e);
                }
            }
        };
        Ok(Warden {
            scratch,
            config,
            config_path,
            stdout_log,
            stderr_log,
            process,
        })
    }

    /// The configuration it was started with (ports filled in).
    pub fn config(&self) -> &WardenConfig {
        &self.config
    }

    /// The configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Warden's scratch directory.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// The audit store directory.
    pub fn audit_dir(&self) -> PathBuf {
        self.scratch.join("audit")
    }

    /// The process id.
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The admin endpoint's address.
    pub fn admin_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.config.admin_port.unwrap_or(0)))
    }

    /// Where upstream `name` listens.
    pub fn listen_addr(&self, name: &str) -> Result<SocketAddr> {
        let u = self
            .config
            .upstreams
            .iter()
            .find(|u| u.name == name)
            .with_context(|| format!("warden has no upstream {name}"))?;
        Ok(SocketAddr::new(u.listen_ip, u.listen_port.unwrap_or(0)))
    }

    /// Upstream `name` as a client target (127.0.0.1 when warden listens on every address).
    pub fn target(&self, name: &str) -> Result<Target> {
        let addr = self.listen_addr(name)?;
        let host = if addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            addr.ip()
        };
        Ok(Target {
            via: Via::Warden,
            host: host.to_string(),
            port: addr.port(),
            ca_cert: crate::fixtures::pki()?.warden_ca_file(),
            logs: self.logs(),
        })
    }

    /// MySQL upstream `name` as a client target.
    pub fn my_target(&self, name: &str) -> Result<crate::mysql::MyTarget> {
        let target = self.target(name)?;
        Ok(crate::mysql::MyTarget {
            via: Via::Warden,
            host: target.host,
            port: target.port,
            ca_cert: target.ca_cert,
            logs: target.logs,
        })
    }

    /// Warden's log files and those of the databases behind it.
    pub fn logs(&self) -> Vec<(String, PathBuf)> {
        let mut logs = vec![
            ("warden stdout".to_string(), self.stdout_log.clone()),
            ("warden stderr".to_string(), self.stderr_log.clone()),
        ];
        for u in &self.config.upstreams {
            for log in &u.server_logs {
                if !logs.contains(log) {
                    logs.push(log.clone());
                }
            }
        }
        logs
    }

    /// Everything warden has logged (stdout then stderr).
    pub fn log(&self) -> String {
        self.process.log()
    }

    /// The last `lines` lines of warden's logs.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }

    /// Runs `test` with the test time limit; on failure shows warden's and the databases' logs.
    pub async fn watch<F, T>(&self, test: F) -> Result<T>
    where
        F: std::future::Future<Output = Result<T>>,
    {
        crate::watch::watch(&self.logs(), crate::watch::TEST_TIME_LIMIT, test).await
    }

    /// Whether the process still runs.
    pub fn is_running(&self) -> bool {
        matches!(self.process.try_wait(), Ok(None))
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn reload(&self) -> Result<()> {
        self.process.signal(libc::SIGHUP)
    }

    /// Sends SIGTERM (drain and exit) without waiting.
    pub fn send_terminate(&self) -> Result<()> {
        self.process.signal(libc::SIGTERM)
    }

    /// Waits up to `timeout` for warden to exit.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        self.process.wait_timeout(timeout)?.ok_or_else(|| {
            anyhow!(
                "warden did not exit within {timeout:?}\n{}",
                self.log_tail(40)
            )
        })
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&self, timeout: Duration) -> Result<ExitStatus> {
        self.send_terminate()?;
        self.wait_exit(timeout)
    }

    /// Replaces the configuration file with `change` applied (ports of new upstreams are
    /// chosen now); call [`Warden::reload`] to apply it.
    pub fn rewrite_config(&mut self, change: impl FnOnce(&mut WardenConfig)) -> Result<()> {
        let mut config = self.config.clone();
        change(&mut config);
        assign_ports(&mut config)?;
        write_files(&config, self.scratch.path(), &self.config_path)?;
        self.config = config;
        Ok(())
    }

    /// Overwrites the configuration file with `text` (for broken-configuration tests); the
    /// harness's view of the configuration does not change.
    pub fn write_config_text(&self, text: &str) -> Result<()> {
        std::fs::write(&self.config_path, text)
            .with_context(|| format!("cannot write {}", self.config_path.display()))
    }

    /// `GET path` on the admin endpoint.
    pub fn http_get(&self, path: &str) -> Result<HttpResponse> {
        http::get(self.admin_addr(), path, Duration::from_secs(10))
    }

    /// The status code of `/readyz`.
    pub fn readyz(&self) -> Result<u16> {
        Ok(self.http_get("/readyz")?.status)
    }

    /// The status code of `/healthz`.
    pub fn healthz(&self) -> Result<u16> {
        Ok(self.http_get("/healthz")?.status)
    }

    /// The `/metrics` text.
    pub fn metrics_text(&self) -> Result<String> {
        let response = self.http_get("/metrics")?;
        if response.status != 200 {
            bail!("/metrics answered {}: {}", response.status, response.body);
        }
        Ok(response.body)
    }

    /// `/metrics`, parsed.
    pub fn metrics(&self) -> Result<Metrics> {
        Metrics::parse(&self.metrics_text()?)
    }

    /// Runs `warden ARGS...` in warden's directory.
    pub fn cli(&self, args: &[&str]) -> Result<ToolRun> {
        warden_cli(args, Some(self.scratch.path()))
    }

    /// `warden audit query --config FILE --format json ARGS...`, parsed.
    pub fn audit_query(&self, args: &[&str]) -> Result<Vec<AuditRecord>> {
        let config = self.config_path.to_string_lossy().into_owned();
        let mut full = vec!["audit", "query", "--config", &config, "--format", "json"];
        full.extend_from_slice(args);
        let run = self.cli(&full)?.ensure_success()?;
        parse_records(&run.stdout_text()).with_context(|| run.describe())
    }

    /// Polls [`Warden::audit_query`] until `done` accepts the records (audit writes are
    /// asynchronous), for at most `timeout`.
    pub fn wait_for_audit(
        &self,
        args: &[&str],
        timeout: Duration,
        done: impl Fn(&[AuditRecord]) -> bool,
    ) -> Result<Vec<AuditRecord>> {
        let deadline = Instant::now() + timeout;
        loop {
            let records = self.audit_query(args)?;
            if done(&records) {
                return Ok(records);
            }
            if Instant::now() >= deadline {
                bail!(
                    "the audit records for {args:?} were not as expected within {timeout:?}; they are:\n{}",
                    summarize(&records)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Polls `/readyz` until it answers 200; fails early if the process exits.
fn wait_ready(
    process: &ServerProcess,
    config: &WardenConfig,
    config_path: &Path,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let admin = SocketAddr::from((Ipv4Addr::LOCALHOST, config.admin_port.unwrap_or(0)));
    loop {
        if let Some(status) = process.try_wait()? {
            bail!(
                "warden exited during startup ({status})\nconfiguration {}:\n{}\n{}",
                config_path.display(),
                config.render(),
                process.log_tail(60)
            );
        }
        let last = match http::get(admin, "/readyz", Duration::from_secs(2)) {
            Ok(HttpResponse { status: 200, .. }) => return Ok(()),
            Ok(r) => format!("/readyz answered {}: {}", r.status, r.body.trim()),
            Err(e) => format!("{e:#}"),
        };
        if Instant::now() >= deadline {
            bail!(
                "warden did not become ready within {timeout:?} (last: {last})\n{}",
                process.log_tail(60)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs `warden ARGS...` (in `dir`, if given).
pub fn warden_cli(args: &[&str], dir: Option<&Path>) -> Result<ToolRun> {
    let mut command = Command::new(warden_binary()?);
    command.args(args).env_remove("RUST_LOG");
    if let Some(dir) = dir {
        command.current_dir(dir);
    }
    tools::run(command, CLI_TIMEOUT)
}

/// Chooses ports for the admin endpoint and every upstream that has none.
fn assign_ports(config: &mut WardenConfig) -> Result<()> {
    if config.admin_port.is_none() {
        config.admin_port = Some(crate::ports::free_port()?);
    }
    for u in &mut config.upstreams {
        if u.listen_port.is_none() {
            u.listen_port = Some(crate::ports::free_port()?);
        }
    }
    Ok(())
}

/// Writes the configuration file and the users files.
fn write_files(config: &WardenConfig, dir: &Path, config_path: &Path) -> Result<()> {
    for u in config.upstreams.iter().filter(|u| u.protocol != "mysql") {
        let path = dir.join(u.users_file_name());
        std::fs::write(&path, &u.users)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    std::fs::write(config_path, config.render())
        .with_context(|| format!("cannot write {}", config_path.display()))
}
