//! Column encryption for tests: a keyring with its master key, a policy file, warden's service
//! login, and the configuration that names them.
//!
//! [`EncryptionFiles::create`] makes a directory holding a new master key file and an empty
//! keyring, made the way an operator makes them (`warden keys new-master-key`, `warden keys
//! init`), and a small `keys.toml` whose `[keys]` table names them, for the `warden keys`
//! commands ([`EncryptionFiles::add_key`], [`EncryptionFiles::rotate`]). A test writes its
//! policy with [`EncryptionFiles::write_policy`] and points a [`WardenConfig`] at all of it with
//! [`EncryptionFiles::apply`]: the `[keys]` table, and the upstream's `policy` and `service`
//! settings, the service password passed in an environment variable as docs/CONFIG.md says.
//!
//! A configuration can be started as a proxy ([`crate::warden::Warden::start`]) or only written
//! ([`ConfigDir::write`]) for commands that need no proxy, such as `warden encrypt`;
//! [`ConfigDir::cli`] runs `warden` with the configuration's environment.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::pg::Login;
use crate::scratch::Scratch;
use crate::tools::{self, ToolRun};
use crate::warden::binary::warden_binary;
use crate::warden::config::{WardenConfig, q};

/// How long a warden command of an encryption test may run (migrations of large tables).
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

/// The environment variable that carries the service login's password.
pub const SERVICE_PASSWORD_ENV: &str = "WARDEN_TEST_SERVICE_PASSWORD";

/// A master key file, a keyring and a policy file, in their own directory.
#[derive(Debug)]
pub struct EncryptionFiles {
    scratch: Scratch,
}

impl EncryptionFiles {
    /// A new master key and an empty keyring.
    pub fn create() -> Result<EncryptionFiles> {
        let files = EncryptionFiles {
            scratch: Scratch::new("keys")?,
        };
        std::fs::write(files.keys_config(), files.keys_toml()).context("cannot write keys.toml")?;
        let master = files.scratch.join("master.key");
        files.run(&["keys", "new-master-key", "--out", &master.to_string_lossy()])?;
        files.keys(&["init"])?;
        Ok(files)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// A configuration file holding only the `[keys]` table (what `warden keys` reads).
    pub fn keys_config(&self) -> PathBuf {
        self.scratch.join("keys.toml")
    }

    /// The policy file.
    pub fn policy_path(&self) -> PathBuf {
        self.scratch.join("policy.toml")
    }

    /// The `[keys]` table naming this keyring and master key (absolute paths).
    pub fn keys_toml(&self) -> String {
        format!(
            "[keys]\nkeyring = {}\nmaster_key = {{ provider = \"file\", path = {} }}\n",
            q(&self.scratch.join("keyring.json").to_string_lossy()),
            q(&self.scratch.join("master.key").to_string_lossy())
        )
    }

    /// Runs `warden keys SUBCOMMAND --config keys.toml ARGS...`, which must succeed.
    pub fn keys(&self, args: &[&str]) -> Result<ToolRun> {
        let config = self.keys_config().to_string_lossy().into_owned();
        let mut full = vec!["keys", args[0], "--config", &config];
        full.extend_from_slice(&args[1..]);
        self.run(&full)
    }

    /// `warden keys add NAME --algorithm ALGORITHM --mode MODE`.
    pub fn add_key(&self, name: &str, algorithm: &str, mode: &str) -> Result<ToolRun> {
        self.keys(&["add", name, "--algorithm", algorithm, "--mode", mode])
    }

    /// `warden keys rotate NAME`.
    pub fn rotate(&self, name: &str) -> Result<ToolRun> {
        self.keys(&["rotate", name])
    }

    /// Writes the policy file (`[[encrypt]]` entries).
    pub fn write_policy(&self, text: &str) -> Result<()> {
        std::fs::write(self.policy_path(), text).context("cannot write the policy file")
    }

    /// Points `config` at this keyring and policy: `[keys]`, and upstream `upstream`'s `policy`
    /// and `service` (logging in as `service` to its database, with the password in
    /// [`SERVICE_PASSWORD_ENV`]).
    pub fn apply(&self, config: &mut WardenConfig, upstream: &str, service: &Login) -> Result<()> {
        config.extra_toml.push_str(&self.keys_toml());
        let spec = config
            .upstream_mut(upstream)
            .with_context(|| format!("the configuration has no upstream {upstream}"))?;
        spec.settings
            .retain(|(key, _)| key != "policy" && key != "service");
        spec.settings
            .push(("policy".into(), q(&self.policy_path().to_string_lossy())));
        spec.settings.push((
            "service".into(),
            format!(
                "{{ user = {}, password_env = {}, database = {} }}",
                q(&service.user),
                q(SERVICE_PASSWORD_ENV),
                q(&service.database)
            ),
        ));
        config.env.retain(|(key, _)| key != SERVICE_PASSWORD_ENV);
        config
            .env
            .push((SERVICE_PASSWORD_ENV.into(), service.password.clone()));
        Ok(())
    }

    /// [`EncryptionFiles::apply`] for a MySQL upstream: the service login is `service`
    /// (mysql_native_password) in its database.
    pub fn apply_mysql(
        &self,
        config: &mut WardenConfig,
        upstream: &str,
        service: &crate::mysql::MyLogin,
    ) -> Result<()> {
        let login = Login {
            user: service.user.clone(),
            password: service.password.clone(),
            database: service.database.clone(),
        };
        self.apply(config, upstream, &login)
    }

    fn run(&self, args: &[&str]) -> Result<ToolRun> {
        let mut command = Command::new(warden_binary()?);
        command
            .args(args)
            .current_dir(self.scratch.path())
            .env_remove("RUST_LOG");
        tools::run(command, Duration::from_secs(60))?.ensure_success()
    }
}

/// A configuration written to a directory of its own, with the TLS files and users files it
/// names, for warden commands that need no running proxy.
#[derive(Debug)]
pub struct ConfigDir {
    scratch: Scratch,
    config: WardenConfig,
    config_path: PathBuf,
}

impl ConfigDir {
    /// Writes `config` (ports left open are chosen now, so the file is valid).
    pub fn write(mut config: WardenConfig) -> Result<ConfigDir> {
        let pki = crate::fixtures::pki()?;
        let scratch = Scratch::new("config")?;
        let tls = scratch.join("tls");
        std::fs::create_dir(&tls)?;
        pki.warden_cert.write(&tls, "warden")?;
        std::fs::copy(pki.client_ca_file(), tls.join("clients-ca.crt"))?;
        if config.admin_port.is_none() {
            config.admin_port = Some(crate::ports::free_port()?);
        }
        for u in &mut config.upstreams {
            if u.listen_port.is_none() {
                u.listen_port = Some(crate::ports::free_port()?);
            }
            if u.protocol != "mysql" {
                std::fs::write(scratch.join(u.users_file_name()), &u.users)?;
            }
        }
        let config_path = scratch.join("warden.toml");
        std::fs::write(&config_path, config.render())
            .with_context(|| format!("cannot write {}", config_path.display()))?;
        Ok(ConfigDir {
            scratch,
            config,
            config_path,
        })
    }

    /// The configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The configuration as written.
    pub fn config(&self) -> &WardenConfig {
        &self.config
    }

    /// Runs `warden ARGS...` in the directory with the configuration's environment; `{config}`
    /// in an argument is replaced by the configuration file's path. Fails only if warden cannot
    /// be run or outlives `timeout`; the exit status is the caller's to judge.
    pub fn cli(&self, args: &[&str], timeout: Duration) -> Result<ToolRun> {
        let path = self.config_path.to_string_lossy();
        let mut command = Command::new(warden_binary()?);
        command
            .args(args.iter().map(|a| a.replace("{config}", &path)))
            .current_dir(self.scratch.path())
            .env_remove("RUST_LOG")
            .envs(self.config.env.iter().map(|(k, v)| (k, v)));
        tools::run(command, timeout)
    }
}
