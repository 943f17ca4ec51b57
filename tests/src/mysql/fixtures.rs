//! What the MySQL tests of one test binary share: one MariaDB server with standard users and
//! a schema, and one warden in front of it (upstream `mysql`), each started on first use.

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Result, anyhow};

use super::{MariaDbInstance, MyLogin, MyTarget};
use crate::pg::Via;
use crate::process::at_exit;
use crate::upstream::UpstreamDatabase;
use crate::warden::{UpstreamSpec, Warden, WardenConfig};

/// The mysql_native_password user most tests log in as (all privileges on [`DATABASE`]).
pub const APP_USER: &str = "warden_my_app";
/// A second mysql_native_password user (for COM_CHANGE_USER).
pub const OTHER_USER: &str = "warden_my_other";
/// A user authenticated by MariaDB's ed25519 plugin.
pub const ED25519_USER: &str = "warden_my_ed";
/// The schema most tests work in; tests create uniquely named tables in it.
pub const DATABASE: &str = "warden_app";

/// The shared MariaDB server, with [`APP_USER`], [`ED25519_USER`] and [`DATABASE`].
pub fn mariadb() -> Result<&'static MariaDbInstance> {
    static DB: OnceLock<Result<MariaDbInstance, String>> = OnceLock::new();
    DB.get_or_init(|| start_shared().map_err(|e| format!("{e:?}")))
        .as_ref()
        .map_err(|e| anyhow!("the shared MariaDB server could not be started: {e}"))
}

fn start_shared() -> Result<MariaDbInstance> {
    let db = MariaDbInstance::start()?;
    let pid = db.pid();
    let root = db.root().to_path_buf();
    at_exit(move || {
        crate::process::stop_pid(pid, libc::SIGKILL, Duration::from_secs(5));
        let _ = std::fs::remove_dir_all(root);
    });
    db.admin_sql(&format!("CREATE DATABASE IF NOT EXISTS `{DATABASE}`"))?;
    db.create_user(
        APP_USER,
        &password(APP_USER),
        "mysql_native_password",
        DATABASE,
    )?;
    db.create_user(
        OTHER_USER,
        &password(OTHER_USER),
        "mysql_native_password",
        DATABASE,
    )?;
    db.create_user(ED25519_USER, &password(ED25519_USER), "ed25519", DATABASE)?;
    Ok(db)
}

/// The password the harness gives MySQL user `name` (unique per user and test process).
pub fn password(name: &str) -> String {
    crate::pg::password_for(name)
}

/// [`APP_USER`] in [`DATABASE`].
pub fn app_login() -> MyLogin {
    login(APP_USER)
}

/// User `name` (with the harness's password for it) in [`DATABASE`].
pub fn login(name: &str) -> MyLogin {
    MyLogin {
        user: name.to_string(),
        password: password(name),
        database: DATABASE.to_string(),
    }
}

/// The shared MariaDB server as a target.
pub fn direct() -> Result<MyTarget> {
    let db = mariadb()?;
    Ok(MyTarget {
        via: Via::Direct,
        host: "127.0.0.1".into(),
        port: db.port(),
        ca_cert: db.ca_cert().to_path_buf(),
        logs: db.log_files(),
    })
}

/// The standard MySQL upstream spec: named `mysql`, client TLS allowed, upstream TLS
/// verify-full, authentication relayed to the database.
pub fn upstream() -> Result<UpstreamSpec> {
    Ok(UpstreamSpec::new("mysql", mariadb()?, String::new()))
}

/// The shared warden in front of the shared MariaDB server (upstream `mysql`).
pub fn warden() -> Result<&'static Warden> {
    static WARDEN: OnceLock<Result<Warden, String>> = OnceLock::new();
    WARDEN
        .get_or_init(|| {
            let start = || -> Result<Warden> {
                let warden = Warden::start(WardenConfig::new(upstream()?))?;
                let pid = warden.pid();
                let dir = warden.dir().to_path_buf();
                at_exit(move || {
                    crate::process::stop_pid(pid, libc::SIGKILL, Duration::from_secs(1));
                    let _ = std::fs::remove_dir_all(dir);
                });
                Ok(warden)
            };
            start().map_err(|e| format!("{e:?}"))
        })
        .as_ref()
        .map_err(|e| anyhow!("the shared MySQL warden could not be started: {e}"))
}

/// The shared warden's `mysql` listener as a target.
pub fn through_warden() -> Result<MyTarget> {
    warden()?.my_target("mysql")
}
