//! What the tests of one test binary share: one PostgreSQL cluster, its standard roles, one
//! warden in front of it, and the test PKI.
//!
//! Starting a cluster takes a couple of seconds, so each test binary starts one on first use
//! (a process-wide `OnceLock`) and every test in it shares it, creating its own tables,
//! databases and roles with unique names so tests run in parallel threads without interfering.
//! Tests that need a special proxy configuration start their own [`Warden`]; the others share
//! [`warden`]. Shared servers live in statics, which are never dropped: exit hooks stop them
//! and remove their files when the test binary ends, and the parent-death signal covers a
//! test binary that is killed.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Result, anyhow};

use crate::pg::{Login, PasswordAuth, PgInstance, Role, Target, Via};
use crate::pki::{CertFiles, IssuedCert, TestCa};
use crate::process::at_exit;
use crate::scratch::Scratch;
use crate::upstream::UpstreamDatabase;
use crate::warden::{UpstreamSpec, Warden, WardenConfig};

/// The SCRAM role most tests log in as (CREATEDB, owner of [`APP_DATABASE`]).
pub const APP_ROLE: &str = "warden_app";
/// The md5 role.
pub const MD5_ROLE: &str = "warden_md5";
/// The database most tests work in; tests create uniquely named tables in it.
pub const APP_DATABASE: &str = "warden_app";

/// The test certificate authorities and warden's listener certificate.
#[derive(Debug)]
pub struct TestPki {
    dir: PathBuf,
    /// Signs warden's listener certificate; clients verify warden against it.
    pub warden_ca: TestCa,
    /// Warden's listener certificate (localhost, 127.0.0.1).
    pub warden_cert: IssuedCert,
    /// Signs client certificates warden accepts for mTLS.
    pub client_ca: TestCa,
    /// A CA nobody trusts.
    pub stranger_ca: TestCa,
}

impl TestPki {
    fn generate() -> Result<TestPki> {
        let dir = Scratch::new("pki")?.into_path();
        let remove = dir.clone();
        at_exit(move || {
            let _ = std::fs::remove_dir_all(remove);
        });
        let warden_ca = TestCa::new("Warden test listener CA")?;
        let warden_cert = warden_ca.issue_server(&["localhost", "127.0.0.1"])?;
        let client_ca = TestCa::new("Warden test client CA")?;
        let stranger_ca = TestCa::new("Warden test stranger CA")?;
        warden_ca.write_cert(&dir.join("warden-ca.crt"))?;
        client_ca.write_cert(&dir.join("clients-ca.crt"))?;
        stranger_ca.write_cert(&dir.join("stranger-ca.crt"))?;
        Ok(TestPki {
            dir,
            warden_ca,
            warden_cert,
            client_ca,
            stranger_ca,
        })
    }

    /// The CA certificate clients use to verify warden (`sslrootcert`).
    pub fn warden_ca_file(&self) -> PathBuf {
        self.dir.join("warden-ca.crt")
    }

    /// The client CA certificate (warden's `client_ca`).
    pub fn client_ca_file(&self) -> PathBuf {
        self.dir.join("clients-ca.crt")
    }

    /// The stranger CA certificate.
    pub fn stranger_ca_file(&self) -> PathBuf {
        self.dir.join("stranger-ca.crt")
    }

    /// A new client certificate with subject CN=`common_name`, signed by the client CA (or the
    /// stranger CA), written to the PKI directory.
    pub fn client_cert(&self, common_name: &str, by_stranger: bool) -> Result<CertFiles> {
        let ca = if by_stranger {
            &self.stranger_ca
        } else {
            &self.client_ca
        };
        ca.issue_client(common_name)?
            .write(&self.dir, &format!("client-{common_name}"))
    }

    /// The directory holding the PKI files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The test PKI, generated once per test process.
pub fn pki() -> Result<&'static TestPki> {
    static PKI: OnceLock<Result<TestPki, String>> = OnceLock::new();
    PKI.get_or_init(|| TestPki::generate().map_err(|e| format!("{e:?}")))
        .as_ref()
        .map_err(|e| anyhow!("the test PKI could not be generated: {e}"))
}

/// The shared PostgreSQL cluster, with [`APP_ROLE`], [`MD5_ROLE`] and [`APP_DATABASE`].
pub fn pg() -> Result<&'static PgInstance> {
    static PG: OnceLock<Result<PgInstance, String>> = OnceLock::new();
    PG.get_or_init(|| start_shared_pg().map_err(|e| format!("{e:?}")))
        .as_ref()
        .map_err(|e| anyhow!("the shared PostgreSQL cluster could not be started: {e}"))
}

fn start_shared_pg() -> Result<PgInstance> {
    let pg = PgInstance::start()?;
    let pid = pg.pid();
    let root = pg.root().to_path_buf();
    at_exit(move || {
        crate::process::stop_pid(pid, libc::SIGQUIT, Duration::from_secs(10));
        let _ = std::fs::remove_dir_all(root);
    });
    pg.create_named_role(APP_ROLE, PasswordAuth::Scram, "CREATEDB")?;
    pg.create_named_role(MD5_ROLE, PasswordAuth::Md5, "")?;
    pg.admin_sql(&format!(
        "CREATE DATABASE {APP_DATABASE} OWNER {APP_ROLE}; "
    ))?;
    pg.admin_sql_in(
        APP_DATABASE,
        &format!("GRANT ALL ON SCHEMA public TO {MD5_ROLE}"),
    )?;
    Ok(pg)
}

/// The SCRAM role of the shared cluster.
pub fn app_role() -> Role {
    Role {
        name: APP_ROLE.into(),
        password: crate::pg::password_for(APP_ROLE),
        auth: PasswordAuth::Scram,
    }
}

/// The md5 role of the shared cluster.
pub fn md5_role() -> Role {
    Role {
        name: MD5_ROLE.into(),
        password: crate::pg::password_for(MD5_ROLE),
        auth: PasswordAuth::Md5,
    }
}

/// [`APP_ROLE`] in [`APP_DATABASE`].
pub fn app_login() -> Login {
    app_role().login(APP_DATABASE)
}

/// [`MD5_ROLE`] in [`APP_DATABASE`].
pub fn md5_login() -> Login {
    md5_role().login(APP_DATABASE)
}

/// The shared cluster as a target.
pub fn direct() -> Result<Target> {
    let pg = pg()?;
    Ok(Target {
        via: Via::Direct,
        host: "127.0.0.1".into(),
        port: pg.port(),
        ca_cert: pg.ca_cert().to_path_buf(),
        logs: pg.log_files(),
    })
}

/// The standard upstream spec for the shared cluster: named `main`, users [`APP_ROLE`] and
/// [`MD5_ROLE`], client TLS allowed, upstream TLS verify-full.
pub fn main_upstream() -> Result<UpstreamSpec> {
    let pg = pg()?;
    let users = pg.users_file(&[APP_ROLE, MD5_ROLE])?;
    Ok(UpstreamSpec::new("main", pg, users))
}

/// The shared warden in front of the shared cluster (upstream `main`).
pub fn warden() -> Result<&'static Warden> {
    static WARDEN: OnceLock<Result<Warden, String>> = OnceLock::new();
    WARDEN
        .get_or_init(|| {
            let start = || -> Result<Warden> {
                let warden = Warden::start(WardenConfig::new(main_upstream()?))?;
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
        .map_err(|e| anyhow!("the shared warden could not be started: {e}"))
}

/// The shared warden's `main` listener as a target.
pub fn through_warden() -> Result<Target> {
    warden()?.target("main")
}
