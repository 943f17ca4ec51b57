//! A throwaway PostgreSQL cluster: initdb in a scratch directory, a random port, TLS on.
//!
//! The cluster is made for speed and isolation, not durability: no fsync, small buffers, the C
//! locale. It listens on 127.0.0.1 with a certificate from its own test CA (valid for
//! `localhost` and `127.0.0.1`, so `verify-full` works with either), demands SCRAM-SHA-256 over
//! TCP (md5 for members of the `md5_users` role), and trusts its unix socket, which only the
//! harness uses for administration. PostgreSQL refuses to run as root, so when the tests run as
//! root the cluster belongs to the `postgres` OS user.
//!
//! `postgres` itself is the child (not `pg_ctl`'s daemon), spawned with a parent-death signal
//! of SIGQUIT (immediate shutdown), so the server never outlives the test process.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::pg::session::Session;
use crate::pki::TestCa;
use crate::process::ServerProcess;
use crate::scratch::Scratch;
use crate::tools::{self, ToolRun};
use crate::upstream::UpstreamDatabase;

/// The superuser initdb creates; reachable only over the unix socket.
pub const SUPERUSER: &str = "postgres";

/// The role whose members authenticate with md5 over TCP (pg_hba.conf).
pub const MD5_GROUP: &str = "md5_users";

/// A running throwaway PostgreSQL cluster.
#[derive(Debug)]
pub struct PgInstance {
    scratch: Scratch,
    bin_dir: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    ca_cert: PathBuf,
    log_file: PathBuf,
    port: u16,
    server: ServerProcess,
}

impl PgInstance {
    /// Creates and starts a new cluster.
    pub fn start() -> Result<PgInstance> {
        Self::start_with(&[])
    }

    /// Creates and starts a new cluster with `settings` (`name=value`, as for `postgres -c`)
    /// applied after the harness's own, so they win (the benchmark raises `max_connections`).
    pub fn start_with(settings: &[String]) -> Result<PgInstance> {
        let bin_dir = bin_dir()?;
        let scratch = Scratch::new("pg")?;
        let owner = os_owner()?;
        let root = scratch.path().to_path_buf();
        let data_dir = root.join("data");
        let socket_dir = root.join("socket");
        let tls_dir = root.join("tls");
        for dir in [&socket_dir, &tls_dir] {
            std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }

        let ca = TestCa::new("Warden test database CA")?;
        let ca_cert = ca.write_cert(&root.join("db-ca.crt"))?;
        let server_cert = ca
            .issue_server(&["localhost", "127.0.0.1"])?
            .write(&tls_dir, "server")?;
        if let Some((uid, gid)) = owner {
            for path in [
                &root,
                &socket_dir,
                &tls_dir,
                &server_cert.cert,
                &server_cert.key,
            ] {
                std::os::unix::fs::chown(path, Some(uid), Some(gid))
                    .with_context(|| format!("cannot give {} to postgres", path.display()))?;
            }
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot open {} to postgres", root.display()))?;
        }

        let mut initdb = Command::new(bin_dir.join("initdb"));
        initdb
            .arg("--pgdata")
            .arg(&data_dir)
            .args([
                "--username",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .env_remove("PGDATA")
            .env("LC_ALL", "C");
        as_owner(&mut initdb, owner);
        let run = tools::run(initdb, Duration::from_secs(120))?;
        if !run.success() {
            bail!("initdb failed\n{}", run.describe());
        }
        std::fs::write(data_dir.join("pg_hba.conf"), PG_HBA).context("cannot write pg_hba.conf")?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(data_dir.join("pg_hba.conf"), Some(uid), Some(gid))
                .context("cannot give pg_hba.conf to postgres")?;
        }

        let log_file = root.join("postgres.log");
        let mut attempt = 0;
        let (port, server) = loop {
            attempt += 1;
            let port = crate::ports::free_port()?;
            let mut postgres = Command::new(bin_dir.join("postgres"));
            postgres
                .arg("-D")
                .arg(&data_dir)
                .args(["-c", &format!("port={port}")])
                .args(["-c", "listen_addresses=127.0.0.1"])
                .args([
                    "-c",
                    &format!("unix_socket_directories={}", socket_dir.display()),
                ])
                .args(["-c", "ssl=on"])
                .args([
                    "-c",
                    &format!("ssl_cert_file={}", server_cert.cert.display()),
                ])
                .args(["-c", &format!("ssl_key_file={}", server_cert.key.display())])
                .args(SETTINGS.iter().flat_map(|s| ["-c", s]))
                .args(settings.iter().flat_map(|s| ["-c", s.as_str()]))
                .env("LC_ALL", "C");
            as_owner(&mut postgres, owner);
            let server =
                ServerProcess::spawn("postgres", postgres, &log_file, &log_file, libc::SIGQUIT)?;
            match wait_ready(&server, &data_dir, Duration::from_secs(60)) {
                Ok(()) => break (port, server),
                Err(e) if attempt < 4 && server.log().contains("could not bind") => {
                    drop(e);
                    continue;
                }
                Err(e) => return Err(e),
            }
        };
        let instance = PgInstance {
            scratch,
            bin_dir,
            data_dir,
            socket_dir,
            ca_cert,
            log_file,
            port,
            server,
        };
        instance
            .admin_sql(&format!("CREATE ROLE {MD5_GROUP} NOLOGIN"))
            .context("cannot create the md5 group role")?;
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

    /// The directory of the unix socket (trusted, for administration).
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding psql, pgbench and the server binaries.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The server's process id.
    pub fn pid(&self) -> i32 {
        self.server.pid()
    }

    /// The scratch directory the cluster lives in.
    pub fn root(&self) -> &Path {
        self.scratch.path()
    }

    /// The last `lines` lines of the server log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.server.log_tail(lines)
    }

    /// Runs `sql` as the superuser with psql over the unix socket; returns the unaligned,
    /// tuples-only output. Fails (with the server log tail) on any SQL error.
    pub fn admin_sql(&self, sql: &str) -> Result<String> {
        self.admin_sql_in("postgres", sql)
    }

    /// Runs `pg_dump ARGS...` on `database` as the superuser over the unix socket (what an
    /// operator's backup sees, behind warden's back); returns the dump.
    pub fn pg_dump(&self, database: &str, args: &[&str]) -> Result<String> {
        let mut dump = Command::new(self.bin_dir.join("pg_dump"));
        dump.arg("-h")
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .args(args);
        clear_libpq_env(&mut dump);
        Ok(tools::run(dump, Duration::from_secs(120))?
            .ensure_success()?
            .stdout_text())
    }

    /// As [`PgInstance::admin_sql`], in database `database`.
    pub fn admin_sql_in(&self, database: &str, sql: &str) -> Result<String> {
        let mut psql = Command::new(self.bin_dir.join("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                database,
            ])
            .arg("-c")
            .arg(sql);
        clear_libpq_env(&mut psql);
        let run: ToolRun = tools::run(psql, Duration::from_secs(60))?;
        if !run.success() {
            bail!(
                "administrative SQL failed: {sql}\n{}\n{}",
                run.describe(),
                self.log_tail(20)
            );
        }
        Ok(run.stdout_text().trim_end_matches('\n').to_string())
    }

    /// A superuser session over the unix socket, for checks behind warden's back
    /// (pg_stat_activity, pg_stat_ssl, the real contents of tables).
    pub async fn admin(&self) -> Result<Session> {
        self.admin_in("postgres").await
    }

    /// As [`PgInstance::admin`], in database `database`.
    pub async fn admin_in(&self, database: &str) -> Result<Session> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(&self.socket_dir)
            .port(self.port)
            .user(SUPERUSER)
            .dbname(database)
            .application_name("warden-tests-admin")
            .connect_timeout(Duration::from_secs(10));
        let (client, connection) =
            config
                .connect(tokio_postgres::NoTls)
                .await
                .with_context(|| {
                    format!(
                        "cannot connect to the test cluster's socket\n{}",
                        self.log_tail(20)
                    )
                })?;
        Ok(Session::new(client, connection))
    }

    /// Stops the server (immediate shutdown) and removes the cluster's files.
    pub fn stop(self) {
        self.server.stop(libc::SIGQUIT, Duration::from_secs(10));
    }
}

impl UpstreamDatabase for PgInstance {
    fn protocol(&self) -> &'static str {
        "postgres"
    }

    fn address(&self) -> SocketAddr {
        self.addr()
    }

    fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    fn log_files(&self) -> Vec<(String, PathBuf)> {
        vec![("postgres".into(), self.log_file.clone())]
    }
}

/// Settings for a fast, disposable cluster (and TLS/auth choices the tests rely on).
const SETTINGS: &[&str] = &[
    "password_encryption=scram-sha-256",
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
    "shared_buffers=32MB",
    "max_connections=200",
    "max_wal_size=1GB",
    "checkpoint_timeout=30min",
    "jit=off",
    "huge_pages=off",
    "logging_collector=off",
    "log_destination=stderr",
    "log_line_prefix=%m [%p] %q%u@%d/%a ",
    "lc_messages=C",
    "timezone=UTC",
];

/// TCP: SCRAM for everyone but the md5 group; the unix socket is trusted for the harness.
const PG_HBA: &str = "\
# Written by the warden test harness.
# TYPE  DATABASE  USER        ADDRESS        METHOD
local   all       all                        trust
host    all       +md5_users  127.0.0.1/32   md5
host    all       +md5_users  ::1/128        md5
host    all       all         127.0.0.1/32   scram-sha-256
host    all       all         ::1/128        scram-sha-256
";

/// Waits until postmaster.pid says `ready`, or fails with the server log.
fn wait_ready(server: &ServerProcess, data_dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = server.try_wait()? {
            bail!(
                "postgres exited during startup ({status})\n{}",
                server.log_tail(40)
            );
        }
        if let Ok(pid_file) = std::fs::read_to_string(data_dir.join("postmaster.pid"))
            && pid_file.lines().nth(7).map(str::trim) == Some("ready")
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "postgres did not become ready within {timeout:?}\n{}",
                server.log_tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The directory with initdb, postgres, psql and pgbench: `WARDEN_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `pg_config --bindir`.
pub fn bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("WARDEN_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let output = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .context("no PostgreSQL found: set WARDEN_PG_BIN to the directory holding initdb")?;
    let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    if !dir.join("initdb").exists() {
        bail!(
            "no initdb in {} (from pg_config): set WARDEN_PG_BIN",
            dir.display()
        );
    }
    Ok(dir)
}

/// The uid and gid to run PostgreSQL as: the `postgres` OS user when we are root.
fn os_owner() -> Result<Option<(u32, u32)>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let (uid, gid) = lookup_user("postgres").context(
        "the tests run as root, and PostgreSQL refuses to: create a `postgres` OS user \
         (Debian's postgresql packages do) or run the tests as another user",
    )?;
    Ok(Some((uid, gid)))
}

fn lookup_user(name: &str) -> Result<(u32, u32)> {
    let c_name = std::ffi::CString::new(name)?;
    let mut buf = vec![0 as libc::c_char; 16384];
    // SAFETY: a zeroed passwd is a valid out-parameter; getpwnam_r writes into it and `buf`.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the given lengths for the duration of the call.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        bail!("no OS user named {name}");
    }
    Ok((pwd.pw_uid, pwd.pw_gid))
}

fn as_owner(command: &mut Command, owner: Option<(u32, u32)>) {
    if let Some((uid, gid)) = owner {
        command
            .uid(uid)
            .gid(gid)
            .env("HOME", "/tmp")
            .env("USER", "postgres");
    }
}

/// Removes libpq's environment variables (PGHOST, PGSSLMODE...) inherited from the caller, so
/// that only what the test sets applies.
pub fn clear_libpq_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
}
