//! Stored values written by this version of Warden must stay readable, and the deterministic
//! modes must keep producing the same bytes: databases hold these values (and their indexes
//! hold the deterministic ones) for years. These are the stored forms of fixed inputs under a
//! fixed data key, recorded when the format was defined; a change that breaks one of them
//! breaks every deployed database.

use warden_crypto::{Algorithm, ColumnCipher, ColumnKey, DataKey, KeyDomain, KeyParams, Mode};

const STORED: [(Algorithm, Mode, &str); 8] = [
    (
        Algorithm::Sm4,
        Mode::Randomized,
        "5701010100000007000000038e0a49f6a44394c605dc3355900dfb5a47c30b5cb0c2efe9403b9a90631629b26d11ca02e88524ee5082573edc",
    ),
    (
        Algorithm::Sm4,
        Mode::Deterministic,
        "57010102000000070000000391526f6b4c491da0eecd1f5149ef940e5f4d9dffeb55b62fbce1a8a479ab8abd9a",
    ),
    (
        Algorithm::Sm4,
        Mode::OrderPreserving,
        "800000002738ae5bb08844878f122a9f570101030000000700000003",
    ),
    (
        Algorithm::Sm4,
        Mode::FormatPreserving,
        "3733313637343639363937383530363830",
    ),
    (
        Algorithm::Aes256,
        Mode::Randomized,
        "570102010000000700000003a5da05712556f6602a92938920a9e6cfd608be66f5e55f9b5f5f4c93bfa80c6c00749f317b6871dd967db37639",
    ),
    (
        Algorithm::Aes256,
        Mode::Deterministic,
        "5701020200000007000000031deec2b3be829a451dbd8f2fab6b0e707dd64bf003294700e9fa969d44944706af",
    ),
    (
        Algorithm::Aes256,
        Mode::OrderPreserving,
        "7fffffffdb68494884c59c651cb57b67570102030000000700000003",
    ),
    (
        Algorithm::Aes256,
        Mode::FormatPreserving,
        "3039363232343337353933363536313935",
    ),
];

fn plaintext(mode: Mode) -> Vec<u8> {
    match mode {
        Mode::OrderPreserving => (-20_240_315i64).to_be_bytes().to_vec(),
        _ => b"11010119900307457".to_vec(),
    }
}

#[test]
fn recorded_stored_forms_open_and_deterministic_ones_reproduce() {
    let dk = DataKey::from_bytes(core::array::from_fn(|i| i as u8));
    let domain = KeyDomain::new("public.customers.id_card");
    for (algorithm, mode, stored) in STORED {
        let key = ColumnKey::new(
            "customers.id_card",
            7,
            algorithm,
            mode,
            &KeyParams::default(),
            [(3, &dk)],
            3,
        )
        .unwrap();
        let stored = hex::decode(stored).unwrap();
        assert_eq!(
            key.open(&stored, &domain).unwrap(),
            plaintext(mode),
            "{algorithm}/{mode}"
        );
        if mode != Mode::Randomized {
            assert_eq!(
                key.seal(&plaintext(mode), &domain).unwrap(),
                stored,
                "{algorithm}/{mode} changed"
            );
        }
    }
}
