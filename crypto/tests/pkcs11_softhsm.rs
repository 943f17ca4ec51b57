//! The PKCS#11 master key against a real token: SoftHSM2 (Debian package `softhsm2`).
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` when the module is initialised, so the
//! test builds a private token directory and configuration, initialises a token with
//! `softhsm2-util`, and then re-runs itself as a child process with that environment (setting
//! the variable in this process would need `unsafe`). Without SoftHSM2 installed the test fails
//! and says how to install it; it never skips silently.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use warden_crypto::keyring::pkcs11::{Pkcs11Location, Pkcs11MasterKey};
use warden_crypto::keyring::{
    KeysConfig, MasterKey, MasterKeyConfig, MasterKeyError, WrapAlgorithm,
};
use warden_crypto::{Algorithm, ColumnCipher, KeyDomain, KeyParams, Keyring, KeyringError, Mode};

const CHILD_VAR: &str = "WARDEN_SOFTHSM_CHILD";
const TOKEN: &str = "warden-test";
const PIN: &str = "123456";
const SO_PIN: &str = "12345678";

fn module() -> Option<PathBuf> {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

#[test]
fn softhsm2_master_key_wraps_and_runs_a_keyring() {
    if std::env::var_os(CHILD_VAR).is_some() {
        child();
        return;
    }
    let module = module().unwrap_or_else(|| {
        panic!(
            "SoftHSM2 is not installed, so the PKCS#11 master key cannot be tested. \
             Install it with `apt-get install -y softhsm2` (it provides softhsm2-util and \
             libsofthsm2.so)."
        )
    });
    let util = which("softhsm2-util").unwrap_or_else(|| {
        panic!("softhsm2-util is missing; install it with `apt-get install -y softhsm2`")
    });

    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let init = Command::new(&util)
        .env("SOFTHSM2_CONF", &conf)
        .args([
            "--init-token",
            "--free",
            "--label",
            TOKEN,
            "--pin",
            PIN,
            "--so-pin",
            SO_PIN,
        ])
        .output()
        .expect("run softhsm2-util");
    assert!(
        init.status.success(),
        "softhsm2-util --init-token failed: {}{}",
        String::from_utf8_lossy(&init.stdout),
        String::from_utf8_lossy(&init.stderr)
    );

    let test_name = "softhsm2_master_key_wraps_and_runs_a_keyring";
    let out = Command::new(std::env::current_exe().unwrap())
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SOFTHSM2_CONF", &conf)
        .env(CHILD_VAR, dir.path())
        .env("WARDEN_TEST_HSM_MODULE", &module)
        .env("WARDEN_TEST_HSM_PIN", PIN)
        .output()
        .expect("re-run the test binary");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the SoftHSM2 test failed:\n{text}");
    assert!(
        text.contains("softhsm2 checks passed"),
        "the child did not run its checks:\n{text}"
    );
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// Runs inside the child, where `SOFTHSM2_CONF` points at the private token.
fn child() {
    let dir = PathBuf::from(std::env::var_os(CHILD_VAR).unwrap());
    let module = PathBuf::from(std::env::var_os("WARDEN_TEST_HSM_MODULE").unwrap());
    let location = Pkcs11Location {
        module: module.clone(),
        token_label: TOKEN.into(),
        key_label: "warden-master".into(),
    };

    // No key yet: a clear error that says how to create one.
    let err = Pkcs11MasterKey::open(location.clone(), PIN)
        .err()
        .expect("no key yet");
    assert!(err.to_string().contains("no secret key labelled"), "{err}");
    // Wrong PIN and wrong token are named.
    let err = Pkcs11MasterKey::open(location.clone(), "000000")
        .err()
        .expect("wrong PIN");
    assert!(err.to_string().contains("wrong user PIN"), "{err}");
    let err = Pkcs11MasterKey::open(
        Pkcs11Location {
            token_label: "absent".into(),
            ..location.clone()
        },
        PIN,
    )
    .err()
    .expect("no such token");
    assert!(err.to_string().contains("no such token"), "{err}");

    // Create the master key inside the token, refuse a second one with the same label.
    Pkcs11MasterKey::create_key(&location, PIN).unwrap();
    assert!(Pkcs11MasterKey::create_key(&location, PIN).is_err());
    let hsm = Pkcs11MasterKey::open(location.clone(), PIN).unwrap();
    assert!(hsm.describe().contains("warden-master"));

    // Wrap and unwrap run in the token and bind the associated data.
    let wrapped = hsm
        .wrap(
            WrapAlgorithm::Aes256Gcm,
            b"0123456789abcdef0123456789abcdef",
            b"slot",
        )
        .unwrap();
    assert_eq!(wrapped.len(), 12 + 32 + 16);
    assert_eq!(
        hsm.unwrap(WrapAlgorithm::Aes256Gcm, &wrapped, b"slot")
            .unwrap()
            .as_slice(),
        b"0123456789abcdef0123456789abcdef"
    );
    assert_eq!(
        hsm.unwrap(WrapAlgorithm::Aes256Gcm, &wrapped, b"other slot"),
        Err(MasterKeyError::Authentication)
    );
    let mut tampered = wrapped.clone();
    tampered[20] ^= 1;
    assert_eq!(
        hsm.unwrap(WrapAlgorithm::Aes256Gcm, &tampered, b"slot"),
        Err(MasterKeyError::Authentication)
    );
    assert!(matches!(
        hsm.wrap(WrapAlgorithm::Sm4Gcm, b"k", b""),
        Err(MasterKeyError::Unsupported { .. })
    ));

    // A whole keyring through the token, configured as the [keys] section would be.
    let pin_file = dir.join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let cfg = KeysConfig {
        keyring: dir.join("keyring.json"),
        master_key: MasterKeyConfig::Pkcs11 {
            module: module.clone(),
            token_label: TOKEN.into(),
            pin_env: None,
            pin_file: Some(pin_file),
            key_label: "warden-master".into(),
        },
        wrap: None,
    };
    let mut kr = cfg.create_keyring().unwrap();
    assert_eq!(kr.wrap_algorithm(), WrapAlgorithm::Aes256Gcm);
    kr.add_key(
        "customers.id_card",
        Algorithm::Sm4,
        Mode::Deterministic,
        KeyParams::default(),
    )
    .unwrap();
    let domain = KeyDomain::new("public.customers.id_card");
    let v1 = kr
        .column_key("customers.id_card")
        .unwrap()
        .seal(b"11010119900307457X", &domain)
        .unwrap();
    kr.rotate("customers.id_card").unwrap();
    drop(kr);
    let kr = cfg.open_keyring().unwrap();
    let key = kr.column_key("customers.id_card").unwrap();
    assert_eq!(key.active_version(), 2);
    assert_eq!(key.open(&v1, &domain).unwrap(), b"11010119900307457X");

    // Another key on the token is the wrong master key for this keyring: clear error, no write.
    let other = Pkcs11Location {
        key_label: "other-master".into(),
        ..location
    };
    Pkcs11MasterKey::create_key(&other, PIN).unwrap();
    let before = std::fs::read(dir.join("keyring.json")).unwrap();
    let err = Keyring::open(
        &dir.join("keyring.json"),
        Arc::new(Pkcs11MasterKey::open(other, PIN).unwrap()),
    )
    .unwrap_err();
    assert!(matches!(err, KeyringError::WrongMasterKey { .. }), "{err}");
    assert_eq!(std::fs::read(dir.join("keyring.json")).unwrap(), before);
    check_path_is_private(&dir.join("keyring.json"));
    println!("softhsm2 checks passed");
}

fn check_path_is_private(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
