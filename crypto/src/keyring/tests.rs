//! Keyring tests with local master keys (the PKCS#11 provider has its own integration test,
//! `tests/pkcs11_softhsm.rs`).

use std::sync::Arc;

use super::*;
use crate::domain::KeyDomain;
use crate::modes::ColumnCipher;

fn master(byte: u8) -> Arc<dyn MasterKey> {
    Arc::new(LocalMasterKey::new([byte; 32], format!("test key {byte}")))
}

fn domain() -> KeyDomain {
    KeyDomain::new("public.customers.id_card")
}

#[test]
fn create_add_rotate_reopen_and_decrypt_old_versions() {
    for wrap in [WrapAlgorithm::Sm4Gcm, WrapAlgorithm::Aes256Gcm] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keyring.json");
        let mut kr = Keyring::create(&path, master(1), Some(wrap)).unwrap();
        assert_eq!(kr.wrap_algorithm(), wrap);
        let info = kr
            .add_key(
                "customers.id_card",
                Algorithm::Sm4,
                Mode::Deterministic,
                KeyParams::default(),
            )
            .unwrap();
        assert_eq!(
            (info.id, info.active_version, info.versions.len()),
            (1, 1, 1)
        );
        kr.add_key(
            "customers.phone",
            Algorithm::Aes256,
            Mode::Randomized,
            KeyParams::default(),
        )
        .unwrap();
        let v1 = kr
            .column_key("customers.id_card")
            .unwrap()
            .seal(b"110101199003074578", &domain())
            .unwrap();

        let info = kr.rotate("customers.id_card").unwrap();
        assert_eq!(info.active_version, 2);
        assert_eq!(
            info.versions.iter().map(|v| v.0).collect::<Vec<_>>(),
            vec![1, 2]
        );

        // A fresh process: reopen from disk.
        let kr = Keyring::open(&path, master(1)).unwrap();
        let key = kr.column_key("customers.id_card").unwrap();
        assert_eq!(key.active_version(), 2);
        let v2 = key.seal(b"110101199003074578", &domain()).unwrap();
        assert_eq!(key.stored_version(&v2).unwrap(), Some(2));
        assert_eq!(key.open(&v1, &domain()).unwrap(), b"110101199003074578");
        assert_eq!(key.open(&v2, &domain()).unwrap(), b"110101199003074578");
        assert_eq!(kr.keys().len(), 2);
        assert_eq!(kr.column_keys().unwrap().len(), 2);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the keyring is private");
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }
}

#[test]
fn wrong_master_key_is_named_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut kr = Keyring::create(&path, master(1), None).unwrap();
    kr.add_key(
        "t.c",
        Algorithm::Sm4,
        Mode::Randomized,
        KeyParams::default(),
    )
    .unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = Keyring::open(&path, master(2)).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, KeyringError::WrongMasterKey { .. }), "{err}");
    assert!(
        text.contains("key check failed") && text.contains("nothing was changed"),
        "{text}"
    );
    assert!(text.contains("test key 2"), "names the provider: {text}");

    // A keyring opened with the right key, whose file is then re-read with a wrong one, refuses
    // to write too.
    let mut wrong = Keyring {
        master: master(2),
        ..Keyring::open(&path, master(1)).unwrap()
    };
    assert!(matches!(
        wrong.rotate("t.c"),
        Err(KeyringError::WrongMasterKey { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before, "nothing overwritten");
}

#[test]
fn init_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut kr = Keyring::create(&path, master(1), None).unwrap();
    kr.add_key("a", Algorithm::Sm4, Mode::Randomized, KeyParams::default())
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let err = Keyring::create(&path, master(1), None).unwrap_err();
    assert!(
        matches!(err, KeyringError::Exists { keys: Some(1), .. }),
        "{err}"
    );
    assert!(err.to_string().contains("never overwrites"));
    std::fs::write(dir.path().join("other"), b"not a keyring").unwrap();
    assert!(matches!(
        Keyring::create(&dir.path().join("other"), master(1), None),
        Err(KeyringError::Exists { keys: None, .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut kr = Keyring::create(&path, master(1), None).unwrap();
    kr.add_key("a", Algorithm::Sm4, Mode::Randomized, KeyParams::default())
        .unwrap();
    kr.rotate("a").unwrap();
    let original = std::fs::read_to_string(&path).unwrap();

    // Roll the active version back.
    let rolled = original.replace("\"active_version\": 2", "\"active_version\": 1");
    assert_ne!(rolled, original);
    std::fs::write(&path, &rolled).unwrap();
    assert!(matches!(
        Keyring::open(&path, master(1)),
        Err(KeyringError::Tampered { .. })
    ));

    // Swap the two versions' wrapped keys (and fix nothing else).
    let mut file: serde_json::Value = serde_json::from_str(&original).unwrap();
    let versions = file["keys"][0]["versions"].as_array_mut().unwrap();
    let (w1, w2) = (
        versions[0]["wrapped"].clone(),
        versions[1]["wrapped"].clone(),
    );
    versions[0]["wrapped"] = w2;
    versions[1]["wrapped"] = w1;
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    assert!(matches!(
        Keyring::open(&path, master(1)),
        Err(KeyringError::Tampered { .. })
    ));

    // Garbage and other formats.
    std::fs::write(&path, b"{}").unwrap();
    assert!(matches!(
        Keyring::open(&path, master(1)),
        Err(KeyringError::Format { .. })
    ));
    std::fs::write(&path, original.replace("warden-keyring", "other")).unwrap();
    assert!(matches!(
        Keyring::open(&path, master(1)),
        Err(KeyringError::Format { .. })
    ));

    // Reformatting alone (whitespace) is not tampering.
    let compact: serde_json::Value = serde_json::from_str(&original).unwrap();
    std::fs::write(&path, serde_json::to_vec(&compact).unwrap()).unwrap();
    Keyring::open(&path, master(1)).unwrap();
}

#[test]
fn concurrent_administrators_do_not_lose_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    Keyring::create(&path, master(1), None).unwrap();
    let mut a = Keyring::open(&path, master(1)).unwrap();
    let mut b = Keyring::open(&path, master(1)).unwrap();
    a.add_key("x", Algorithm::Sm4, Mode::Randomized, KeyParams::default())
        .unwrap();
    b.add_key(
        "y",
        Algorithm::Aes256,
        Mode::OrderPreserving,
        KeyParams::default(),
    )
    .unwrap();
    assert_eq!(b.keys().len(), 2, "b saw a's key");
    a.rotate("y").unwrap();
    let c = Keyring::open(&path, master(1)).unwrap();
    let names: Vec<_> = c
        .keys()
        .into_iter()
        .map(|k| (k.name, k.id, k.active_version))
        .collect();
    assert_eq!(names, vec![("x".into(), 1, 1), ("y".into(), 2, 2)]);
}

#[test]
fn names_params_and_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyring.json");
    let mut kr = Keyring::create(&path, master(1), None).unwrap();
    assert!(matches!(
        kr.add_key(
            "bad name",
            Algorithm::Sm4,
            Mode::Randomized,
            KeyParams::default()
        ),
        Err(KeyringError::InvalidName { .. })
    ));
    let bad = KeyParams {
        alphabet: Some("klingon".into()),
    };
    assert!(
        kr.add_key("t.code", Algorithm::Sm4, Mode::FormatPreserving, bad)
            .is_err()
    );
    let good = KeyParams {
        alphabet: Some("alnum".into()),
    };
    kr.add_key(
        "t.code",
        Algorithm::Sm4,
        Mode::FormatPreserving,
        good.clone(),
    )
    .unwrap();
    assert!(matches!(
        kr.add_key(
            "t.code",
            Algorithm::Sm4,
            Mode::Randomized,
            KeyParams::default()
        ),
        Err(KeyringError::DuplicateKey { .. })
    ));
    let err = kr.rotate("nope").unwrap_err();
    assert!(
        err.to_string().contains("t.code"),
        "lists known keys: {err}"
    );
    let reopened = Keyring::open(&path, master(1)).unwrap();
    assert_eq!(reopened.info("t.code").unwrap().params, good);
    let t = reopened
        .column_key("t.code")
        .unwrap()
        .seal(b"AbC-12345", &domain())
        .unwrap();
    assert_eq!(t[3], b'-');
}

#[test]
fn config_section_parses_resolves_and_rejects_typos() {
    let text = r#"
        [keys]
        keyring = "keyring.json"
        master_key = { provider = "file", path = "secrets/master.key" }
        wrap = "aes-256-gcm"
    "#;
    #[derive(serde::Deserialize)]
    struct Top {
        keys: KeysConfig,
    }
    let mut cfg = toml::from_str::<Top>(text).unwrap().keys;
    cfg.resolve_relative_to(std::path::Path::new("/etc/warden"));
    assert_eq!(
        cfg.keyring,
        std::path::Path::new("/etc/warden/keyring.json")
    );
    assert_eq!(
        cfg.master_key,
        MasterKeyConfig::File {
            path: "/etc/warden/secrets/master.key".into()
        }
    );
    assert_eq!(cfg.wrap, Some(WrapAlgorithm::Aes256Gcm));

    let env: Top = toml::from_str(
        "[keys]\nkeyring = \"k.json\"\nmaster_key = { provider = \"env\", var = \"WARDEN_MASTER_KEY\" }\n",
    )
    .unwrap();
    assert_eq!(
        env.keys.master_key,
        MasterKeyConfig::Env {
            var: "WARDEN_MASTER_KEY".into()
        }
    );

    let p11: Top = toml::from_str(
        "[keys]\nkeyring = \"k.json\"\nmaster_key = { provider = \"pkcs11\", module = \"/usr/lib/softhsm/libsofthsm2.so\", token_label = \"warden\", pin_env = \"WARDEN_HSM_PIN\", key_label = \"warden-master\" }\n",
    )
    .unwrap();
    assert!(p11.keys.pkcs11_location().is_some());

    for typo in [
        "[keys]\nkeyring = \"k\"\nmaster_key = { provider = \"env\", variable = \"X\" }\n",
        "[keys]\nkeyring = \"k\"\nmaster_key = { provider = \"vault\", var = \"X\" }\n",
        "[keys]\nkeyring = \"k\"\nmaster_key = { provider = \"env\", var = \"X\" }\nwarp = \"sm4-gcm\"\n",
    ] {
        assert!(toml::from_str::<Top>(typo).is_err(), "{typo}");
    }
}

#[test]
fn config_opens_and_creates_with_a_file_master_key() {
    let dir = tempfile::tempdir().unwrap();
    write_new_master_key_file(&dir.path().join("master.key")).unwrap();
    let mut cfg = KeysConfig {
        keyring: "keyring.json".into(),
        master_key: MasterKeyConfig::File {
            path: "master.key".into(),
        },
        wrap: None,
    };
    cfg.resolve_relative_to(dir.path());
    let mut kr = cfg.create_keyring().unwrap();
    assert_eq!(
        kr.wrap_algorithm(),
        WrapAlgorithm::Sm4Gcm,
        "SM4 by default for local keys"
    );
    kr.add_key("a", Algorithm::Sm4, Mode::Randomized, KeyParams::default())
        .unwrap();
    assert_eq!(cfg.open_keyring().unwrap().keys().len(), 1);
}
