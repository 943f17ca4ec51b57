//! A throwaway MariaDB server: mariadb-install-db in a scratch directory, a random port, TLS on.
//!
//! Made for speed and isolation, not durability: no binary log, no doublewrite, lazy flushing,
//! a small buffer pool. It listens on 127.0.0.1 with a certificate from its own test CA (valid
//! for `localhost` and `127.0.0.1`), and on a unix socket in its directory, which only the
//! harness uses for administration (as `root`, without a password). We run as root in CI, so
//! the server runs with `--user=root`.
//!
//! `mariadbd` itself is the child, spawned with a parent-death signal of SIGKILL, so the server
//! never outlives the test process.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pki::TestCa;
use crate::process::ServerProcess;
use crate::scratch::Scratch;
use crate::tools::{self, ToolRun};
use crate::upstream::UpstreamDatabase;

/// A running throwaway MariaDB server.
#[derive(Debug)]
pub struct MariaDbInstance {
    scratch: Scratch,
    socket: PathBuf,
    ca_cert: PathBuf,
    log_file: PathBuf,
    port: u16,
    server: ServerProcess,
}

impl MariaDbInstance {
    /// Creates and starts a new server.
    pub fn start() -> Result<MariaDbInstance> {
        let install_db = find("mariadb-install-db")?;
        let mariadbd = find_server()?;
        let scratch = Scratch::new("mariadb")?;
        let root = scratch.path().to_path_buf();
        let data_dir = root.join("data");
        let tls_dir = root.join("tls");
        std::fs::create_dir(&tls_dir)?;
        let ca = TestCa::new("Warden test MariaDB CA")?;
        let ca_cert = ca.write_cert(&root.join("db-ca.crt"))?;
        let server_cert = ca
            .issue_server(&["localhost", "127.0.0.1"])?
            .write(&tls_dir, "server")?;

        let mut install = Command::new(&install_db);
        install
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data_dir.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
                "--skip-name-resolve",
            ])
            .env("LC_ALL", "C");
        let run = tools::run(install, Duration::from_secs(180))?;
        if !run.success() {
            bail!("mariadb-install-db failed\n{}", run.describe());
        }

        let socket = root.join("mariadb.sock");
        let log_file = root.join("mariadb.log");
        let mut attempt = 0;
        let (port, server) = loop {
            attempt += 1;
            let port = crate::ports::free_port()?;
            let mut command = Command::new(&mariadbd);
            command
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data_dir.display()))
                .arg(format!("--socket={}", socket.display()))
                .arg(format!("--pid-file={}", root.join("mariadb.pid").display()))
                .arg(format!("--log-error={}", log_file.display()))
                .arg(format!("--port={port}"))
                .arg(format!("--ssl-cert={}", server_cert.cert.display()))
                .arg(format!("--ssl-key={}", server_cert.key.display()))
                .arg(format!("--ssl-ca={}", ca_cert.display()))
                .args(SETTINGS)
                .env("LC_ALL", "C");
            let server =
                ServerProcess::spawn("mariadbd", command, &log_file, &log_file, libc::SIGKILL)?;
            match wait_ready(&server, &log_file, &socket, Duration::from_secs(60)) {
                Ok(()) => break (port, server),
                Err(e) if attempt < 4 && server.log().contains("Do you already have another") => {
                    drop(e);
                    server.stop(libc::SIGKILL, Duration::from_secs(5));
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        let instance = MariaDbInstance {
            scratch,
            socket,
            ca_cert,
            log_file,
            port,
            server,
        };
        // client_ed25519 logins for the tests that use MariaDB's ed25519 plugin.
        instance.admin_sql("INSTALL SONAME 'auth_ed25519'")?;
        Ok(instance)
    }

    /// The TCP port (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TCP address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The unix socket (root without a password, for administration).
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.server.pid()
    }

    /// The scratch directory the server lives in.
    pub fn root(&self) -> &Path {
        self.scratch.path()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }

    /// Runs `sql` as root with the mariadb client over the unix socket; returns the batch
    /// output without column names. Fails (with the server log tail) on any SQL error.
    pub fn admin_sql(&self, sql: &str) -> Result<String> {
        let mut client = Command::new(find("mariadb")?);
        client
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["--user=root", "--batch", "--skip-column-names", "-e"])
            .arg(sql);
        let run: ToolRun = tools::run(client, Duration::from_secs(60))?;
        if !run.success() {
            bail!(
                "administrative SQL failed: {sql}\n{}\n{}",
                run.describe(),
                self.log_tail(20)
            );
        }
        Ok(run.stdout_text().trim_end_matches('\n').to_string())
    }

    /// Creates user `name` (from any host) with `password` and `plugin`
    /// (`mysql_native_password` or `ed25519`), with every privilege on `database`.* (and
    /// `extra` global privileges such as `PROCESS`).
    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        plugin: &str,
        database: &str,
    ) -> Result<()> {
        let password = password.replace('\\', "\\\\").replace('\'', "\\'");
        let identified = match plugin {
            "ed25519" => format!("IDENTIFIED VIA ed25519 USING PASSWORD('{password}')"),
            _ => format!("IDENTIFIED VIA mysql_native_password USING PASSWORD('{password}')"),
        };
        self.admin_sql(&format!(
            "CREATE USER IF NOT EXISTS '{name}'@'%' {identified}; \
             GRANT ALL ON `{database}`.* TO '{name}'@'%'; \
             GRANT FILE, PROCESS ON *.* TO '{name}'@'%'"
        ))?;
        Ok(())
    }

    /// Stops the server at once.
    pub fn stop(self) {
        self.server.stop(libc::SIGKILL, Duration::from_secs(10));
    }
}

impl UpstreamDatabase for MariaDbInstance {
    fn protocol(&self) -> &'static str {
        "mysql"
    }

    fn address(&self) -> SocketAddr {
        self.addr()
    }

    fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    fn log_files(&self) -> Vec<(String, PathBuf)> {
        vec![("mariadb".into(), self.log_file.clone())]
    }
}

/// Settings for a fast, disposable server.
const SETTINGS: &[&str] = &[
    "--user=root",
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
    "--skip-log-bin",
    "--innodb-buffer-pool-size=128M",
    "--innodb-log-file-size=64M",
    "--innodb-flush-log-at-trx-commit=0",
    "--innodb-doublewrite=0",
    "--sync-binlog=0",
    "--max-connections=500",
    "--max-allowed-packet=64M",
    "--local-infile=1",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--secure-file-priv=",
    "--performance-schema=OFF",
];

/// Waits until the server logs "ready for connections" and its socket exists.
fn wait_ready(server: &ServerProcess, log: &Path, socket: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = server.try_wait()? {
            bail!(
                "mariadbd exited during startup ({status})\n{}",
                server.log_tail(40)
            );
        }
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("ready for connections") && socket.exists() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "mariadbd did not become ready within {timeout:?}\n{}",
                server.log_tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A MariaDB program: `WARDEN_MARIADB_BIN/name`, else on the PATH (or in /usr/sbin).
pub fn find(name: &str) -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WARDEN_MARIADB_BIN") {
        return Ok(PathBuf::from(dir).join(name));
    }
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/sbin", "/usr/bin"])
    {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return Ok(path);
        }
    }
    bail!("{name} not found: install MariaDB (Debian: mariadb-server) or set WARDEN_MARIADB_BIN")
}

fn find_server() -> Result<PathBuf> {
    find("mariadbd")
        .or_else(|_| find("mysqld"))
        .context("no MariaDB server binary")
}
