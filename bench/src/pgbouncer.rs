//! PgBouncer, the reference proxy: a configuration the harness writes, and the process.
//!
//! It runs from Debian's `pgbouncer` package (`apt-get install pgbouncer`), as the `postgres`
//! OS user when the harness is root (PgBouncer refuses to run as root). Like warden, it
//! authenticates clients itself against the verifiers PostgreSQL stores (`auth_file`, with
//! SCRAM secrets and md5 hashes from `pg_authid`) and logs in to the database with the keys
//! the client proved, so no cleartext password is written anywhere.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use warden_tests::process::ServerProcess;
use warden_tests::scratch::Scratch;

/// `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// One server connection per client for its whole life (what warden does).
    Session,
    /// A server connection per transaction: many clients share a few server connections.
    Transaction,
}

/// What a PgBouncer should look like.
#[derive(Debug, Clone)]
pub struct PgBouncerSpec {
    pub mode: PoolMode,
    /// The PostgreSQL server it pools for.
    pub server: SocketAddr,
    /// `"user" "verifier"` lines.
    pub users: String,
    /// Server connections per (database, user).
    pub pool_size: u32,
    pub max_client_conn: u32,
}

/// A running PgBouncer.
pub struct PgBouncer {
    scratch: Scratch,
    port: u16,
    process: ServerProcess,
}

/// The pgbouncer binary: `PGBOUNCER_BIN`, or the Debian package's.
pub fn binary() -> Result<PathBuf> {
    let path = std::env::var_os("PGBOUNCER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/sbin/pgbouncer"));
    if !path.is_file() {
        bail!(
            "PgBouncer is not installed at {} (install Debian's package: `apt-get install \
             pgbouncer`, or set PGBOUNCER_BIN)",
            path.display()
        );
    }
    Ok(path)
}

impl PgBouncerSpec {
    /// The configuration file's text, with files in `dir` and listening on `port`.
    pub fn render(&self, dir: &Path, port: u16) -> String {
        let mode = match self.mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        format!(
            "; Written by warden-bench.\n\
             [databases]\n\
             * = host={host} port={server_port}\n\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = md5\n\
             auth_file = {auth}\n\
             pool_mode = {mode}\n\
             max_client_conn = {max_client}\n\
             default_pool_size = {pool}\n\
             max_db_connections = 0\n\
             server_tls_sslmode = disable\n\
             client_tls_sslmode = disable\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             log_connections = 0\n\
             log_disconnections = 0\n\
             log_pooler_errors = 1\n\
             stats_period = 60\n",
            host = self.server.ip(),
            server_port = self.server.port(),
            auth = dir.join("users.txt").display(),
            max_client = self.max_client_conn,
            pool = self.pool_size,
        )
    }
}

impl PgBouncer {
    /// Writes the configuration and starts PgBouncer; returns once it accepts connections.
    pub fn start(spec: &PgBouncerSpec) -> Result<PgBouncer> {
        let binary = binary()?;
        let scratch = Scratch::new("pgbouncer")?;
        let dir = scratch.path().to_path_buf();
        let port = warden_tests::ports::free_port()?;
        std::fs::write(dir.join("users.txt"), auth_file(&spec.users))?;
        let config = dir.join("pgbouncer.ini");
        std::fs::write(&config, spec.render(&dir, port))?;
        let owner = postgres_owner()?;
        if let Some((uid, gid)) = owner {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
            for path in [&dir, &dir.join("users.txt"), &config] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .with_context(|| format!("cannot give {} to postgres", path.display()))?;
            }
        }
        let mut command = Command::new(binary);
        command.arg(&config).current_dir(&dir);
        if let Some((uid, gid)) = owner {
            command.uid(uid).gid(gid).env("HOME", "/tmp");
        }
        let log = dir.join("pgbouncer.log");
        let process = ServerProcess::spawn("pgbouncer", command, &log, &log, libc::SIGKILL)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = process.try_wait()? {
                bail!(
                    "pgbouncer exited at startup ({status})\n{}",
                    process.log_tail(30)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "pgbouncer did not listen within 20 s\n{}",
                    process.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(PgBouncer {
            scratch,
            port,
            process,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// The log, for failures.
    pub fn log_file(&self) -> PathBuf {
        self.scratch.join("pgbouncer.log")
    }

    /// Stops it (SIGINT: PgBouncer's immediate shutdown).
    pub fn stop(self) {
        self.process.stop(libc::SIGINT, Duration::from_secs(5));
    }
}

/// A users file as PgBouncer's `auth_file`: it has no comments (a `#` line makes it skip the
/// users after it), so only the `"name" "verifier"` lines are kept.
pub fn auth_file(users: &str) -> String {
    users
        .lines()
        .filter(|l| l.trim_start().starts_with('"'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The uid and gid of the `postgres` OS user when the harness runs as root.
fn postgres_owner() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&"postgres") && fields.len() > 3)
                .then(|| Some((fields[2].parse().ok()?, fields[3].parse().ok()?)))
                .flatten()
        })
        .map(Some)
        .context("running as root needs a `postgres` OS user for PgBouncer (Debian's postgresql package makes one)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_files_have_no_comments() {
        let users = "# made by the harness\n\"a\" \"md5x\"\n\n\"b\" \"SCRAM-SHA-256$1:s$k:s\"\n";
        assert_eq!(
            auth_file(users),
            "\"a\" \"md5x\"\n\"b\" \"SCRAM-SHA-256$1:s$k:s\"\n"
        );
    }

    #[test]
    fn renders_a_session_pool_in_front_of_the_server() {
        let spec = PgBouncerSpec {
            mode: PoolMode::Session,
            server: "127.0.0.1:5432".parse().unwrap(),
            users: String::new(),
            pool_size: 2100,
            max_client_conn: 12000,
        };
        let text = spec.render(Path::new("/tmp/b"), 6000);
        assert!(text.contains("* = host=127.0.0.1 port=5432\n"));
        assert!(text.contains("listen_port = 6000\n"));
        assert!(text.contains("pool_mode = session\n"));
        assert!(text.contains("default_pool_size = 2100\n"));
        assert!(text.contains("auth_file = /tmp/b/users.txt\n"));
    }
}
