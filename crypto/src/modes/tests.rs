//! Tests of the column modes through [`ColumnCipher`], for every algorithm and mode.

use proptest::prelude::*;

use super::*;
use crate::data_key::DataKey;
use crate::envelope::{HEADER_LEN, OPE_STORED_LEN};

fn data_key(seed: u8) -> DataKey {
    DataKey::from_bytes([seed; 32])
}

fn key(algorithm: Algorithm, mode: Mode, versions: &[u32], active: u32) -> ColumnKey {
    let keys: Vec<(u32, DataKey)> = versions.iter().map(|&v| (v, data_key(v as u8))).collect();
    ColumnKey::new(
        "customers.id_card",
        42,
        algorithm,
        mode,
        &KeyParams::default(),
        keys.iter().map(|(v, k)| (*v, k)),
        active,
    )
    .unwrap()
}

fn plaintext(mode: Mode) -> Vec<u8> {
    match mode {
        Mode::OrderPreserving => (-1234i64).to_be_bytes().to_vec(),
        Mode::FormatPreserving => b"110101199003074578".to_vec(),
        _ => b"110101199003074578".to_vec(),
    }
}

fn all_keys() -> Vec<ColumnKey> {
    let mut keys = Vec::new();
    for algorithm in Algorithm::ALL {
        for mode in Mode::ALL {
            keys.push(key(algorithm, mode, &[1], 1));
        }
    }
    keys
}

fn domain() -> KeyDomain {
    KeyDomain::column("public", "customers", "id_card")
}

#[test]
fn every_algorithm_and_mode_round_trips() {
    for k in all_keys() {
        let pt = plaintext(k.mode());
        let stored = k.seal(&pt, &domain()).unwrap();
        assert_ne!(stored, pt, "{k:?}");
        assert_eq!(k.open(&stored, &domain()).unwrap(), pt, "{k:?}");
        let text = k.seal_text(&pt, &domain()).unwrap();
        assert_eq!(k.open_text(&text, &domain()).unwrap(), pt, "{k:?}");
        assert_eq!(
            k.stored_version(&stored).unwrap(),
            (k.mode() != Mode::FormatPreserving).then_some(1)
        );
    }
}

#[test]
fn stored_forms_have_the_documented_shape() {
    for algorithm in Algorithm::ALL {
        let pt = b"13800138000";
        let r = key(algorithm, Mode::Randomized, &[1], 1)
            .seal(pt, &domain())
            .unwrap();
        assert_eq!(r.len(), HEADER_LEN + 12 + pt.len() + 16);
        assert_eq!(r[..4], [0x57, 1, algorithm.code(), 1]);
        assert_eq!(r[4..12], [0, 0, 0, 42, 0, 0, 0, 1]);
        let d = key(algorithm, Mode::Deterministic, &[1], 1)
            .seal(pt, &domain())
            .unwrap();
        assert_eq!(d.len(), HEADER_LEN + 16 + pt.len());
        assert_eq!(d[3], 2);
        let o = key(algorithm, Mode::OrderPreserving, &[1], 1)
            .seal(&7i64.to_be_bytes(), &domain())
            .unwrap();
        assert_eq!(o.len(), OPE_STORED_LEN);
        assert_eq!(
            o[16..20],
            [0x57, 1, algorithm.code(), 3],
            "header is a trailer"
        );
        let f = key(algorithm, Mode::FormatPreserving, &[1], 1)
            .seal(pt, &domain())
            .unwrap();
        assert_eq!(f.len(), pt.len());
        assert!(f.iter().all(u8::is_ascii_digit));
    }
}

#[test]
fn randomized_differs_deterministic_repeats() {
    for algorithm in Algorithm::ALL {
        let r = key(algorithm, Mode::Randomized, &[1], 1);
        assert_ne!(
            r.seal(b"x", &domain()).unwrap(),
            r.seal(b"x", &domain()).unwrap()
        );
        for mode in [
            Mode::Deterministic,
            Mode::OrderPreserving,
            Mode::FormatPreserving,
        ] {
            let k = key(algorithm, mode, &[1], 1);
            let pt = plaintext(mode);
            assert_eq!(
                k.seal(&pt, &domain()).unwrap(),
                k.seal(&pt, &domain()).unwrap(),
                "{k:?}"
            );
        }
    }
}

#[test]
fn values_are_bound_to_their_key_domain() {
    let other = KeyDomain::column("public", "staff", "id_card");
    for k in all_keys() {
        let pt = plaintext(k.mode());
        let stored = k.seal(&pt, &domain()).unwrap();
        assert_ne!(k.seal(&pt, &other).unwrap(), stored, "{k:?}");
        match k.mode() {
            // FF1 has no redundancy to detect the wrong domain; it decrypts to another value.
            Mode::FormatPreserving => assert_ne!(k.open(&stored, &other).unwrap(), pt),
            _ => assert!(
                matches!(
                    k.open(&stored, &other),
                    Err(CryptoError::Authentication { .. })
                ),
                "{k:?}"
            ),
        }
    }
}

#[test]
fn rotation_writes_the_new_version_and_still_opens_the_old() {
    for algorithm in Algorithm::ALL {
        for mode in [Mode::Randomized, Mode::Deterministic, Mode::OrderPreserving] {
            let before = key(algorithm, mode, &[1], 1);
            let after = key(algorithm, mode, &[1, 2], 2);
            let pt = plaintext(mode);
            let old = before.seal(&pt, &domain()).unwrap();
            let new = after.seal(&pt, &domain()).unwrap();
            assert_eq!(after.stored_version(&old).unwrap(), Some(1));
            assert_eq!(after.stored_version(&new).unwrap(), Some(2));
            assert_eq!(after.open(&old, &domain()).unwrap(), pt);
            assert_eq!(after.open(&new, &domain()).unwrap(), pt);
            // The re-encryption job moves old values and leaves new ones alone.
            let moved = after.reencrypt(&old, &domain()).unwrap().unwrap();
            assert_eq!(after.stored_version(&moved).unwrap(), Some(2));
            assert!(after.reencrypt(&new, &domain()).unwrap().is_none());
            // A keyring that lost version 2 says so.
            let err = before.open(&new, &domain()).unwrap_err();
            assert!(
                matches!(err, CryptoError::UnknownVersion { version: 2, .. }),
                "{err}"
            );
            assert!(err.to_string().contains("holds versions 1"), "{err}");
        }
        let ff1 = key(algorithm, Mode::FormatPreserving, &[1, 2], 2);
        let old_token = key(algorithm, Mode::FormatPreserving, &[1], 1)
            .seal(b"13800138000", &domain())
            .unwrap();
        let mut out = Vec::new();
        ff1.open_version_into(1, &old_token, &domain(), &mut out)
            .unwrap();
        assert_eq!(out, b"13800138000");
    }
}

#[test]
fn wrong_key_and_wrong_scheme_are_named() {
    let a = key(Algorithm::Sm4, Mode::Randomized, &[1], 1);
    let stored = a.seal(b"v", &domain()).unwrap();
    let dk = data_key(1);
    let b = ColumnKey::new(
        "staff.phone",
        7,
        Algorithm::Sm4,
        Mode::Randomized,
        &KeyParams::default(),
        [(1, &dk)],
        1,
    )
    .unwrap();
    let err = b.open(&stored, &domain()).unwrap_err();
    assert!(
        matches!(
            err,
            CryptoError::WrongKey {
                expected: 7,
                found: 42,
                ..
            }
        ),
        "{err}"
    );
    let aes = key(Algorithm::Aes256, Mode::Randomized, &[1], 1);
    assert!(matches!(
        aes.open(&stored, &domain()),
        Err(CryptoError::WrongScheme { .. })
    ));
    let det = key(Algorithm::Sm4, Mode::Deterministic, &[1], 1);
    assert!(matches!(
        det.open(&stored, &domain()),
        Err(CryptoError::WrongScheme { .. })
    ));
}

#[test]
fn a_different_data_key_under_the_same_id_fails_authentication() {
    let a = key(Algorithm::Sm4, Mode::Deterministic, &[1], 1);
    let stored = a.seal(b"v", &domain()).unwrap();
    let wrong = data_key(99);
    let b = ColumnKey::new(
        "customers.id_card",
        42,
        Algorithm::Sm4,
        Mode::Deterministic,
        &KeyParams::default(),
        [(1, &wrong)],
        1,
    )
    .unwrap();
    let err = b.open(&stored, &domain()).unwrap_err();
    assert!(
        matches!(err, CryptoError::Authentication { version: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("customers.id_card"));
}

#[test]
fn invalid_plaintexts_are_refused_with_the_reason() {
    let ope = key(Algorithm::Sm4, Mode::OrderPreserving, &[1], 1);
    let err = ope.seal(b"abc", &domain()).unwrap_err();
    assert!(err.to_string().contains("8-byte"), "{err}");
    let ff1 = key(Algorithm::Sm4, Mode::FormatPreserving, &[1], 1);
    assert!(ff1.seal(b"12345", &domain()).is_err(), "too short");
    assert!(
        ff1.seal(b"1234567x", &domain()).is_err(),
        "letter outside digits"
    );
    assert!(ff1.seal(&[0xff, 0xfe], &domain()).is_err(), "not UTF-8");
    let mut out = b"keep".to_vec();
    assert!(ff1.seal_into(b"12", &domain(), &mut out).is_err());
    assert_eq!(out, b"keep", "failed seal leaves the buffer as it was");
}

#[test]
fn ff1_alphabet_comes_from_the_key_params() {
    let dk = data_key(3);
    let params = KeyParams {
        alphabet: Some("alnum".into()),
    };
    let k = ColumnKey::new(
        "t.code",
        1,
        Algorithm::Sm4,
        Mode::FormatPreserving,
        &params,
        [(1, &dk)],
        1,
    )
    .unwrap();
    let t = k.seal(b"AbCd-1234", &domain()).unwrap();
    assert_eq!(t[4], b'-');
    assert_eq!(k.open(&t, &domain()).unwrap(), b"AbCd-1234");
    let bad = KeyParams {
        alphabet: Some("klingon".into()),
    };
    assert!(
        ColumnKey::new(
            "t.code",
            1,
            Algorithm::Sm4,
            Mode::FormatPreserving,
            &bad,
            [(1, &dk)],
            1
        )
        .is_err()
    );
}

#[test]
fn ope_column_orders_by_memcmp() {
    for algorithm in Algorithm::ALL {
        let k = key(algorithm, Mode::OrderPreserving, &[1], 1);
        let values = [i64::MIN, -5, -1, 0, 1, 1000, i64::MAX];
        let stored: Vec<Vec<u8>> = values
            .iter()
            .map(|v| k.seal(&v.to_be_bytes(), &domain()).unwrap())
            .collect();
        for w in stored.windows(2) {
            assert!(w[0] < w[1]);
        }
        let text: Vec<String> = values
            .iter()
            .map(|v| k.seal_text(&v.to_be_bytes(), &domain()).unwrap())
            .collect();
        for w in text.windows(2) {
            assert!(w[0] < w[1], "hex text sorts the same way");
        }
    }
}

#[test]
fn batches_match_single_calls() {
    for k in all_keys() {
        let pts: Vec<Vec<u8>> = (0..37)
            .map(|i| match k.mode() {
                Mode::OrderPreserving => (i as i64 * 1000 - 7).to_be_bytes().to_vec(),
                _ => format!("{:0width$}", i * 7919, width = 6 + i % 30).into_bytes(),
            })
            .collect();
        let refs: Vec<&[u8]> = pts.iter().map(Vec::as_slice).collect();
        let mut sealed = Batch::new();
        k.seal_batch(&refs, &domain(), &mut sealed);
        assert_eq!(sealed.len(), pts.len());
        let stored: Vec<Vec<u8>> = sealed.iter().map(|r| r.unwrap().to_vec()).collect();
        for (s, p) in stored.iter().zip(&pts) {
            assert_eq!(&k.open(s, &domain()).unwrap(), p, "{k:?}");
        }
        let mut with_bad: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
        let garbage = [0x57u8, 1, 2, 3];
        with_bad.insert(5, &garbage);
        let mut opened = Batch::new();
        k.open_batch(&with_bad, &domain(), &mut opened);
        assert_eq!(opened.len(), pts.len() + 1);
        for (i, r) in opened.iter().enumerate() {
            match i.cmp(&5) {
                core::cmp::Ordering::Less => assert_eq!(r.unwrap(), pts[i].as_slice()),
                core::cmp::Ordering::Equal => {
                    assert!(r.is_err() || k.mode() == Mode::FormatPreserving)
                }
                core::cmp::Ordering::Greater => assert_eq!(r.unwrap(), pts[i - 1].as_slice()),
            }
        }
    }
}

#[test]
fn one_batch_opens_values_of_several_versions_and_isolates_failures() {
    for algorithm in Algorithm::ALL {
        for mode in [Mode::Randomized, Mode::Deterministic] {
            let v1 = key(algorithm, mode, &[1], 1);
            let v12 = key(algorithm, mode, &[1, 2], 2);
            let pts: Vec<Vec<u8>> = (0..20)
                .map(|i| format!("value number {i}").into_bytes())
                .collect();
            let mut stored: Vec<Vec<u8>> = pts
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    if i % 3 == 0 {
                        v1.seal(p, &domain())
                    } else {
                        v12.seal(p, &domain())
                    }
                    .unwrap()
                })
                .collect();
            stored[4][20] ^= 1; // tampered
            stored[7].truncate(10); // malformed
            let refs: Vec<&[u8]> = stored.iter().map(Vec::as_slice).collect();
            let mut out = Batch::new();
            v12.open_batch(&refs, &domain(), &mut out);
            for (i, r) in out.iter().enumerate() {
                match i {
                    4 => assert!(
                        matches!(r, Err(CryptoError::Authentication { .. })),
                        "{r:?}"
                    ),
                    7 => assert!(matches!(r, Err(CryptoError::Malformed { .. })), "{r:?}"),
                    _ => assert_eq!(
                        r.unwrap(),
                        pts[i].as_slice(),
                        "{algorithm}/{mode} value {i}"
                    ),
                }
            }
            // A keyring without version 2 opens the version-1 values and names the others.
            v1.open_batch(&refs, &domain(), &mut out);
            assert_eq!(out.get(0).unwrap(), pts[0].as_slice());
            assert!(matches!(
                out.get(1),
                Err(CryptoError::UnknownVersion { version: 2, .. })
            ));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// No input makes any open function panic; every failure is a typed error.
    #[test]
    fn open_never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        for k in all_keys() {
            let _ = k.open(&bytes, &domain());
            let _ = k.open_text(&String::from_utf8_lossy(&bytes), &domain());
            let _ = k.stored_version(&bytes);
            let mut batch = Batch::new();
            k.open_batch(&[&bytes, &bytes[..bytes.len() / 2]], &domain(), &mut batch);
        }
    }

    /// Any single-byte change or truncation of a valid stored value fails to open (FF1 aside,
    /// which has no redundancy), and never panics.
    #[test]
    fn mutated_values_are_rejected(pos in 0usize..64, flip in 1u8..=255, cut in 0usize..64) {
        for k in all_keys() {
            let stored = k.seal(&plaintext(k.mode()), &domain()).unwrap();
            let mut m = stored.clone();
            let p = pos % m.len();
            m[p] ^= flip;
            let r = k.open(&m, &domain());
            if k.mode() != Mode::FormatPreserving {
                prop_assert!(r.is_err(), "{:?}: flipping byte {} went unnoticed", k, p);
            }
            let t = &stored[..cut.min(stored.len().saturating_sub(1))];
            let r = k.open(t, &domain());
            if k.mode() != Mode::FormatPreserving {
                prop_assert!(r.is_err());
            }
        }
    }
}
