//! `warden keys`: the security administrator's commands over the keyring (ENC-6).
//!
//! `init` creates an empty keyring protected by the configured master key, `add` creates a
//! column key, `list` shows keys and versions (never key material), `rotate` adds a version and
//! makes it the active one, `new-master-key` writes a fresh local master key file. Every
//! command reads the `[keys]` table of a warden configuration file (`--config`); relative paths
//! in it are relative to that file's directory. The logic lives in `warden_crypto::keyring`;
//! this is the command line over it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use warden_crypto::keyring::pkcs11::Pkcs11MasterKey;
use warden_crypto::keyring::{
    KeyInfo, Keyring, KeysConfig, WrapAlgorithm, write_new_master_key_file,
};
use warden_crypto::{Algorithm, KeyParams, Mode};

/// Manage the keyring: the data keys of encrypted columns, wrapped under the master key.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a new, empty keyring at `[keys] keyring`, protected by the configured master key.
    ///
    /// Refuses if the keyring file exists: Warden never overwrites a keyring, because its keys
    /// are the only way to read the data they encrypted.
    ///
    /// Examples:
    ///   warden keys new-master-key --out /etc/warden/master.key
    ///   warden keys init --config /etc/warden/warden.toml
    ///   warden keys init -c warden.toml --create-token-key    (PKCS#11: make the key on the token)
    #[command(verbatim_doc_comment)]
    Init {
        #[command(flatten)]
        config: ConfigArg,
        /// PKCS#11 only: first create the master key object (AES-256, sensitive,
        /// non-extractable) on the token under the configured `key_label`.
        #[arg(long)]
        create_token_key: bool,
        /// How data keys are wrapped (overrides `[keys] wrap`). Default: sm4-gcm for env and
        /// file master keys, aes-256-gcm on a PKCS#11 token.
        #[arg(long, value_enum)]
        wrap: Option<WrapArg>,
    },
    /// Create a column key at version 1.
    ///
    /// Examples:
    ///   warden keys add customers.id_card --algorithm sm4 --mode deterministic -c warden.toml
    ///   warden keys add orders.amount --algorithm sm4 --mode ope -c warden.toml
    ///   warden keys add customers.phone --algorithm sm4 --mode ff1 --alphabet digits -c warden.toml
    #[command(verbatim_doc_comment)]
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// The key's name, usually `table.column` (letters, digits, '.', '_', '-').
        name: String,
        /// The block cipher.
        #[arg(long, value_enum, default_value_t = AlgorithmArg::Sm4)]
        algorithm: AlgorithmArg,
        /// The column mode. randomized: store and return only; deterministic: equality, joins,
        /// UNIQUE (leaks equality); ope: ranges and ORDER BY (leaks order); ff1: tokens that keep
        /// the value's format.
        #[arg(long, value_enum, default_value_t = ModeArg::Randomized)]
        mode: ModeArg,
        /// ff1 only: digits, alnum-upper, alnum-lower, alnum, id-card, or chars:<characters>.
        #[arg(long)]
        alphabet: Option<String>,
    },
    /// List the keys: name, id, algorithm, mode, versions with their creation times and which
    /// one is active. Never prints key material.
    List {
        #[command(flatten)]
        config: ConfigArg,
        /// Output: a readable listing, or JSON.
        #[arg(long, value_enum, default_value_t = ListFormat::Text)]
        format: ListFormat,
    },
    /// Add a new version to a key and make it the active one.
    ///
    /// New values are encrypted with the new version at once (after the proxy reloads the
    /// keyring); values of older versions still decrypt, because every value names its version.
    /// Order-preserving and FF1 columns must be re-encrypted as a whole before queries compare
    /// old and new values.
    Rotate {
        #[command(flatten)]
        config: ConfigArg,
        /// The key to rotate.
        name: String,
    },
    /// Write a new random master key (64 hex digits, mode 0600) to a file that must not exist.
    NewMasterKey {
        /// Where to write it.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `--config FILE`.
#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The warden configuration file whose `[keys]` table names the keyring and the master key.
    #[arg(long, short, value_name = "FILE")]
    pub config: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AlgorithmArg {
    /// SM4 (GB/T 32907).
    Sm4,
    /// AES-256.
    #[value(alias = "aes-256")]
    Aes,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Randomized,
    Deterministic,
    Ope,
    Ff1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WrapArg {
    #[value(name = "sm4-gcm")]
    Sm4Gcm,
    #[value(name = "aes-256-gcm")]
    Aes256Gcm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Text,
    Json,
}

impl From<AlgorithmArg> for Algorithm {
    fn from(a: AlgorithmArg) -> Self {
        match a {
            AlgorithmArg::Sm4 => Algorithm::Sm4,
            AlgorithmArg::Aes => Algorithm::Aes256,
        }
    }
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Self {
        match m {
            ModeArg::Randomized => Mode::Randomized,
            ModeArg::Deterministic => Mode::Deterministic,
            ModeArg::Ope => Mode::OrderPreserving,
            ModeArg::Ff1 => Mode::FormatPreserving,
        }
    }
}

impl From<WrapArg> for WrapAlgorithm {
    fn from(w: WrapArg) -> Self {
        match w {
            WrapArg::Sm4Gcm => WrapAlgorithm::Sm4Gcm,
            WrapArg::Aes256Gcm => WrapAlgorithm::Aes256Gcm,
        }
    }
}

/// Reads the `[keys]` table of a warden configuration file, paths resolved against its
/// directory.
pub fn load_keys_config(path: &Path) -> Result<KeysConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", path.display()))?;
    let keys = table.remove("keys").ok_or_else(|| {
        anyhow!(
            "{} has no [keys] table; add one naming the keyring and the master key, for example:\n\
             [keys]\n\
             keyring = \"keyring.json\"\n\
             master_key = {{ provider = \"file\", path = \"master.key\" }}",
            path.display()
        )
    })?;
    let mut config: KeysConfig = keys
        .try_into()
        .with_context(|| format!("the [keys] table of {} is not valid", path.display()))?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    config.resolve_relative_to(base);
    Ok(config)
}

/// Runs a `warden keys` command, printing what it did.
pub fn run(cmd: KeysCommand) -> Result<()> {
    let mut out = std::io::stdout().lock();
    run_to(cmd, &mut out)
}

fn run_to(cmd: KeysCommand, out: &mut dyn std::io::Write) -> Result<()> {
    match cmd {
        KeysCommand::Init {
            config,
            create_token_key,
            wrap,
        } => {
            let mut cfg = load_keys_config(&config.config)?;
            if let Some(w) = wrap {
                cfg.wrap = Some(w.into());
            }
            if create_token_key {
                let location = cfg.pkcs11_location().ok_or_else(|| {
                    anyhow!("--create-token-key needs a PKCS#11 master key (provider = \"pkcs11\")")
                })?;
                let pin = cfg.pkcs11_pin()?.expect("a PKCS#11 provider has a PIN");
                Pkcs11MasterKey::create_key(&location, &pin)?;
                writeln!(
                    out,
                    "created master key {:?} on token {:?}",
                    location.key_label, location.token_label
                )?;
            }
            let keyring = cfg.create_keyring()?;
            writeln!(
                out,
                "created keyring {} (data keys wrapped with {}, master key: {})",
                keyring.path().display(),
                keyring.wrap_algorithm(),
                keyring.master_description()
            )?;
            writeln!(
                out,
                "next: add column keys with `warden keys add NAME --algorithm sm4 --mode randomized -c {}`;\n\
                 back up the keyring file, and keep the master key apart from it",
                config.config.display()
            )?;
        }
        KeysCommand::Add {
            config,
            name,
            algorithm,
            mode,
            alphabet,
        } => {
            let mode: Mode = mode.into();
            if alphabet.is_some() && mode != Mode::FormatPreserving {
                bail!("--alphabet only applies to --mode ff1");
            }
            let mut keyring = load_keys_config(&config.config)?.open_keyring()?;
            let info = keyring.add_key(&name, algorithm.into(), mode, KeyParams { alphabet })?;
            writeln!(
                out,
                "added key {:?} (id {}): {}/{}, version 1 active",
                info.name, info.id, info.algorithm, info.mode
            )?;
        }
        KeysCommand::List { config, format } => {
            let keyring = load_keys_config(&config.config)?.open_keyring()?;
            match format {
                ListFormat::Text => print_list(&keyring, out)?,
                ListFormat::Json => {
                    serde_json::to_writer_pretty(&mut *out, &list_json(&keyring))?;
                    writeln!(out)?;
                }
            }
        }
        KeysCommand::Rotate { config, name } => {
            let mut keyring = load_keys_config(&config.config)?.open_keyring()?;
            let info = keyring.rotate(&name)?;
            writeln!(
                out,
                "key {:?}: version {} is now active ({} versions); values of older versions still decrypt",
                info.name,
                info.active_version,
                info.versions.len()
            )?;
            if matches!(info.mode, Mode::OrderPreserving | Mode::FormatPreserving) {
                writeln!(
                    out,
                    "note: {} values of different versions do not compare; re-encrypt the column before relying on range or equality queries",
                    info.mode
                )?;
            }
        }
        KeysCommand::NewMasterKey { out: path } => {
            write_new_master_key_file(&path)?;
            writeln!(
                out,
                "wrote a new master key to {} (mode 0600); configure it with\n\
                 [keys]\n\
                 master_key = {{ provider = \"file\", path = \"{}\" }}\n\
                 and keep a copy somewhere safe: without it the keyring cannot be opened",
                path.display(),
                path.display()
            )?;
        }
    }
    Ok(())
}

fn print_list(keyring: &Keyring, out: &mut dyn std::io::Write) -> Result<()> {
    writeln!(
        out,
        "keyring {} (created {}, data keys wrapped with {}, master key: {})",
        keyring.path().display(),
        keyring.created_at(),
        keyring.wrap_algorithm(),
        keyring.master_description()
    )?;
    let keys = keyring.keys();
    if keys.is_empty() {
        writeln!(out, "no keys yet; add one with `warden keys add`")?;
    }
    for k in keys {
        let alphabet = k
            .params
            .alphabet
            .as_deref()
            .map(|a| format!(", alphabet {a}"))
            .unwrap_or_default();
        writeln!(
            out,
            "\n{}  (id {})  {}/{}{alphabet}  active: v{}",
            k.name, k.id, k.algorithm, k.mode, k.active_version
        )?;
        for (version, created) in &k.versions {
            let marker = if *version == k.active_version {
                "  (active)"
            } else {
                ""
            };
            writeln!(out, "    v{version}  created {created}{marker}")?;
        }
    }
    Ok(())
}

fn list_json(keyring: &Keyring) -> serde_json::Value {
    let key = |k: KeyInfo| {
        serde_json::json!({
            "name": k.name,
            "id": k.id,
            "algorithm": k.algorithm,
            "mode": k.mode,
            "alphabet": k.params.alphabet,
            "active_version": k.active_version,
            "versions": k.versions.iter().map(|(v, created)| serde_json::json!({
                "version": v,
                "created_at": created,
                "active": *v == k.active_version,
            })).collect::<Vec<_>>(),
        })
    };
    serde_json::json!({
        "keyring": keyring.path(),
        "created_at": keyring.created_at(),
        "wrap": keyring.wrap_algorithm(),
        "master_key": keyring.master_description(),
        "keys": keyring.keys().into_iter().map(key).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(subcommand)]
        keys: KeysCommand,
    }

    fn run_args(args: &[&str]) -> Result<String> {
        let cmd =
            Harness::try_parse_from(std::iter::once("keys").chain(args.iter().copied()))?.keys;
        let mut out = Vec::new();
        run_to(cmd, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn init_add_list_rotate_through_a_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("warden.toml");
        std::fs::write(
            &conf,
            "[audit]\ndir = \"audit\"\n\n[keys]\nkeyring = \"keyring.json\"\n\
             master_key = { provider = \"file\", path = \"master.key\" }\n",
        )
        .unwrap();
        let c = conf.to_str().unwrap();
        let key_path = dir.path().join("master.key");
        run_args(&["new-master-key", "--out", key_path.to_str().unwrap()]).unwrap();
        assert!(run_args(&["new-master-key", "--out", key_path.to_str().unwrap()]).is_err());

        let text = run_args(&["init", "-c", c]).unwrap();
        assert!(text.contains("sm4-gcm"), "{text}");
        let err = run_args(&["init", "-c", c]).unwrap_err().to_string();
        assert!(err.contains("never overwrites"), "{err}");

        run_args(&[
            "add",
            "customers.id_card",
            "--algorithm",
            "sm4",
            "--mode",
            "deterministic",
            "-c",
            c,
        ])
        .unwrap();
        run_args(&[
            "add",
            "customers.phone",
            "--mode",
            "ff1",
            "--alphabet",
            "digits",
            "-c",
            c,
        ])
        .unwrap();
        assert!(
            run_args(&[
                "add",
                "x",
                "--mode",
                "randomized",
                "--alphabet",
                "digits",
                "-c",
                c
            ])
            .is_err()
        );
        let text = run_args(&["rotate", "customers.id_card", "-c", c]).unwrap();
        assert!(text.contains("version 2 is now active"), "{text}");

        let list = run_args(&["list", "-c", c]).unwrap();
        assert!(
            list.contains("customers.id_card  (id 1)  sm4/deterministic  active: v2"),
            "{list}"
        );
        assert!(
            list.contains("(active)") && list.contains("alphabet digits"),
            "{list}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&run_args(&["list", "-c", c, "--format", "json"]).unwrap())
                .unwrap();
        assert_eq!(json["keys"][0]["versions"][1]["active"], true);
        let keyring_text = std::fs::read_to_string(dir.path().join("keyring.json")).unwrap();
        let master_text = std::fs::read_to_string(&key_path).unwrap();
        assert!(!list.contains(master_text.trim()) && !keyring_text.contains(master_text.trim()));

        // A wrong master key: a clear error and an untouched keyring.
        std::fs::remove_file(&key_path).unwrap();
        run_args(&["new-master-key", "--out", key_path.to_str().unwrap()]).unwrap();
        let before = std::fs::read(dir.path().join("keyring.json")).unwrap();
        let err = format!(
            "{:#}",
            run_args(&["rotate", "customers.id_card", "-c", c]).unwrap_err()
        );
        assert!(
            err.contains("does not open keyring") && err.contains("nothing was changed"),
            "{err}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("keyring.json")).unwrap(),
            before
        );
    }

    #[test]
    fn missing_or_invalid_keys_table_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("warden.toml");
        std::fs::write(&conf, "[audit]\ndir = \"audit\"\n").unwrap();
        let err = format!("{:#}", load_keys_config(&conf).unwrap_err());
        assert!(err.contains("no [keys] table"), "{err}");
        std::fs::write(
            &conf,
            "[keys]\nkeyring = \"k\"\nmaster_key = { provider = \"env\", vr = \"X\" }\n",
        )
        .unwrap();
        assert!(load_keys_config(&conf).is_err());
    }
}
