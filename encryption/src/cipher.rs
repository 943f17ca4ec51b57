//! One protected column's cryptography: its policy and its key, together.
//!
//! A [`ColumnCrypto`] is built by the catalog for every protected column once the policy and
//! the keyring agree on it (same algorithm, same mode). It seals plaintexts into the stored
//! envelope bound to the column's key domain and opens them again, converts stored values to
//! and from the text the database shows for the column (`bytea` hex output, or the envelope's
//! base64 / hex text form), writes them as SQL literals for rewritten statements, and chains
//! all of that with the [`LogicalType`] codecs for the wire: the application's value in text or
//! binary format in, the stored value out, and back.
//!
//! Errors name the column (`table.column`) and never contain key material; [`fmt::Debug`] shows
//! only the column, the key's name and the mode.

use std::fmt;
use std::sync::Arc;

use warden_crypto::envelope::{self, EnvelopeError};
use warden_crypto::{ColumnCipher, ColumnKey, CryptoError, Mode};

use crate::error::EncryptionError;
use crate::logical::{LogicalType, ValueError};
use crate::policy::{ColumnPolicy, Storage};

/// A protected column's policy with its key.
pub struct ColumnCrypto {
    pub column: Arc<ColumnPolicy>,
    key: Arc<ColumnKey>,
}

impl fmt::Debug for ColumnCrypto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColumnCrypto")
            .field("column", &self.column.qualified())
            .field("key", &self.key.key_name())
            .field("mode", &self.column.mode)
            .finish()
    }
}

impl ColumnCrypto {
    /// Pairs a column's policy with its key; the key must have the policy's algorithm and mode.
    pub fn new(column: Arc<ColumnPolicy>, key: Arc<ColumnKey>) -> Result<Self, EncryptionError> {
        if key.algorithm() != column.algorithm || key.mode() != column.mode {
            return Err(EncryptionError::Key {
                column: column.qualified(),
                message: format!(
                    "the policy says {}/{} but key {:?} is {}/{}",
                    column.algorithm,
                    column.mode,
                    key.key_name(),
                    key.algorithm(),
                    key.mode()
                ),
            });
        }
        Ok(ColumnCrypto { column, key })
    }

    /// The column's mode.
    pub fn mode(&self) -> Mode {
        self.column.mode
    }

    /// The type the application sees.
    pub fn logical(&self) -> LogicalType {
        self.column.logical
    }

    /// How the ciphertext is stored.
    pub fn storage(&self) -> Storage {
        self.column.storage
    }

    fn crypto_error(&self, source: CryptoError) -> EncryptionError {
        EncryptionError::Crypto {
            column: self.column.display_name(),
            source,
        }
    }

    fn value_error(&self, source: ValueError) -> EncryptionError {
        EncryptionError::Value {
            column: self.column.display_name(),
            source,
        }
    }

    fn malformed(&self, encoding: &'static str) -> EncryptionError {
        self.crypto_error(CryptoError::Malformed {
            key: self.key.key_name().to_owned(),
            source: EnvelopeError::BadText { encoding },
        })
    }

    /// The stored envelope of a plaintext, bound to the column's key domain.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        self.key
            .seal(plaintext, &self.column.domain)
            .map_err(|e| self.crypto_error(e))
    }

    /// The plaintext of a stored envelope.
    pub fn open(&self, stored: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        self.key
            .open(stored, &self.column.domain)
            .map_err(|e| self.crypto_error(e))
    }

    /// The stored value as the database's text output shows the column: `\x…` (bytea hex
    /// output) for binary storage, the envelope's text form for text storage.
    pub fn stored_to_db_text(&self, stored: &[u8]) -> String {
        match self.column.storage {
            Storage::Binary => {
                let mut out = String::with_capacity(2 + 2 * stored.len());
                out.push_str("\\x");
                out.push_str(&hex::encode(stored));
                out
            }
            Storage::Text => envelope::to_text(self.column.mode, stored),
        }
    }

    /// The stored value from the database's text output of the column.
    pub fn stored_from_db_text(&self, text: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        match self.column.storage {
            Storage::Binary => {
                let Some(digits) = text.strip_prefix(b"\\x") else {
                    return Err(self.malformed(
                        "bytea hex output (\\x…); the escape format (bytea_output = 'escape') is not supported, set bytea_output = 'hex'",
                    ));
                };
                hex::decode(digits).map_err(|_| self.malformed("bytea hex output (\\x…)"))
            }
            Storage::Text => {
                let encoding = if self.column.mode == Mode::OrderPreserving {
                    "hex"
                } else {
                    "base64"
                };
                let text = std::str::from_utf8(text).map_err(|_| self.malformed(encoding))?;
                envelope::from_text(self.column.mode, text).map_err(|source| {
                    self.crypto_error(CryptoError::Malformed {
                        key: self.key.key_name().to_owned(),
                        source,
                    })
                })
            }
        }
    }

    /// An SQL literal of the stored value for PostgreSQL (`standard_conforming_strings = on`):
    /// `'\x…'::bytea` for binary storage, `'<text form>'` for text storage. Hex and base64
    /// never contain quotes.
    pub fn pg_literal(&self, stored: &[u8]) -> String {
        match self.column.storage {
            Storage::Binary => format!("'{}'::bytea", self.stored_to_db_text(stored)),
            Storage::Text => format!("'{}'", self.stored_to_db_text(stored)),
        }
    }

    /// An SQL literal of the stored value for MySQL / MariaDB: `X'…'` for binary storage, the
    /// base64 (or hex) text for text storage (neither contains a quote or a backslash).
    pub fn mysql_literal(&self, stored: &[u8]) -> String {
        match self.column.storage {
            Storage::Binary => format!("X'{}'", hex::encode(stored)),
            Storage::Text => format!("'{}'", self.stored_to_db_text(stored)),
        }
    }

    /// The literal of the stored value in `dialect`.
    pub fn sql_literal(&self, stored: &[u8], dialect: warden_analysis::Dialect) -> String {
        match dialect {
            warden_analysis::Dialect::PostgreSql => self.pg_literal(stored),
            warden_analysis::Dialect::MySql { .. } => self.mysql_literal(stored),
        }
    }

    /// The keyring id of the column's key (written in every envelope).
    pub fn key_id(&self) -> u32 {
        self.key.id()
    }

    /// The stored value of an application value in text format.
    pub fn encrypt_text(&self, text: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let plaintext = self
            .column
            .logical
            .plaintext_from_text(self.column.mode, text)
            .map_err(|e| self.value_error(e))?;
        self.seal(&plaintext)
    }

    /// The stored value of an application value in PostgreSQL's binary format.
    pub fn encrypt_pg_binary(&self, bytes: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let plaintext = self
            .column
            .logical
            .plaintext_from_pg_binary(self.column.mode, bytes)
            .map_err(|e| self.value_error(e))?;
        self.seal(&plaintext)
    }

    /// The application's value, in text format, of a stored value.
    pub fn decrypt_to_text(&self, stored: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let plaintext = self.open(stored)?;
        self.column
            .logical
            .plaintext_to_text(self.column.mode, &plaintext)
            .map_err(|e| self.value_error(e))
    }

    /// The application's value, in PostgreSQL's binary format, of a stored value.
    pub fn decrypt_to_pg_binary(&self, stored: &[u8]) -> Result<Vec<u8>, EncryptionError> {
        let plaintext = self.open(stored)?;
        self.column
            .logical
            .plaintext_to_pg_binary(self.column.mode, &plaintext)
            .map_err(|e| self.value_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_crypto::{Algorithm, DataKey, KeyDomain, KeyParams};

    fn key(name: &str, algorithm: Algorithm, mode: Mode) -> Arc<ColumnKey> {
        let data_key = DataKey::from_bytes([7; 32]);
        Arc::new(
            ColumnKey::new(
                name,
                3,
                algorithm,
                mode,
                &KeyParams::default(),
                [(1, &data_key)],
                1,
            )
            .unwrap(),
        )
    }

    fn policy(
        column: &str,
        mode: Mode,
        logical: &str,
        storage: Storage,
        domain: Option<&str>,
    ) -> Arc<ColumnPolicy> {
        Arc::new(ColumnPolicy {
            schema: "public".into(),
            table: "customers".into(),
            column: column.into(),
            key: "k".into(),
            algorithm: Algorithm::Sm4,
            mode,
            logical: LogicalType::parse(logical).unwrap(),
            storage,
            domain: domain.map_or_else(
                || KeyDomain::column("public", "customers", column),
                KeyDomain::new,
            ),
            line: 1,
        })
    }

    fn crypto(mode: Mode, logical: &str, storage: Storage) -> ColumnCrypto {
        ColumnCrypto::new(
            policy("c", mode, logical, storage, None),
            key("k", Algorithm::Sm4, mode),
        )
        .unwrap()
    }

    const MODES: [Mode; 3] = [Mode::Randomized, Mode::Deterministic, Mode::OrderPreserving];

    #[test]
    fn round_trips_in_every_mode_and_storage() {
        for mode in MODES {
            for storage in [Storage::Binary, Storage::Text] {
                let (ty, value) = if mode == Mode::OrderPreserving {
                    ("numeric(12,2)", "12345.67")
                } else {
                    ("varchar(18)", "110101199003074578")
                };
                let c = crypto(mode, ty, storage);
                let stored = c.encrypt_text(value.as_bytes()).unwrap();
                assert_eq!(c.decrypt_to_text(&stored).unwrap(), value.as_bytes());
                let plaintext = c.open(&stored).unwrap();
                assert_eq!(c.open(&c.seal(&plaintext).unwrap()).unwrap(), plaintext);
                let db_text = c.stored_to_db_text(&stored);
                assert_eq!(c.stored_from_db_text(db_text.as_bytes()).unwrap(), stored);
                let binary = c.decrypt_to_pg_binary(&stored).unwrap();
                let again = c.encrypt_pg_binary(&binary).unwrap();
                assert_eq!(c.decrypt_to_text(&again).unwrap(), value.as_bytes());
                assert_eq!(c.mode(), mode);
                assert_eq!(c.storage(), storage);
                assert_eq!(c.logical(), LogicalType::parse(ty).unwrap());
            }
        }
    }

    #[test]
    fn deterministic_equal_values_give_equal_ciphertexts() {
        let c = crypto(Mode::Deterministic, "numeric(12,2)", Storage::Binary);
        let a = c.encrypt_text(b"1.5").unwrap();
        assert_eq!(a, c.encrypt_text(b" +001.50").unwrap());
        let binary = c.decrypt_to_pg_binary(&a).unwrap();
        assert_eq!(a, c.encrypt_pg_binary(&binary).unwrap());
        assert_ne!(a, c.encrypt_text(b"1.51").unwrap());
        let s = crypto(Mode::Deterministic, "char(4)", Storage::Text);
        assert_eq!(
            s.encrypt_text(b"ab").unwrap(),
            s.encrypt_text(b"ab  ").unwrap()
        );
        assert_eq!(
            s.decrypt_to_text(&s.encrypt_text(b"ab").unwrap()).unwrap(),
            b"ab  "
        );
        let r = crypto(Mode::Randomized, "text", Storage::Binary);
        assert_ne!(r.encrypt_text(b"x").unwrap(), r.encrypt_text(b"x").unwrap());
    }

    #[test]
    fn order_preserving_keeps_order() {
        let cases: [(&str, &[&str]); 3] = [
            (
                "numeric(12,2)",
                &[
                    "-100.50",
                    "-0.01",
                    "0.00",
                    "0.01",
                    "1.50",
                    "10.00",
                    "9999999999.99",
                ],
            ),
            (
                "date",
                &[
                    "0001-01-01",
                    "1969-12-31",
                    "1970-01-01",
                    "2024-02-29",
                    "9999-12-31",
                ],
            ),
            (
                "bigint",
                &[
                    "-9223372036854775808",
                    "-1",
                    "0",
                    "1",
                    "9223372036854775807",
                ],
            ),
        ];
        for (ty, values) in cases {
            for storage in [Storage::Binary, Storage::Text] {
                let c = crypto(Mode::OrderPreserving, ty, storage);
                let stored: Vec<Vec<u8>> = values
                    .iter()
                    .map(|v| c.encrypt_text(v.as_bytes()).unwrap())
                    .collect();
                assert!(stored.windows(2).all(|w| w[0] < w[1]), "{ty}");
                // The text form sorts the same way (hex under the C collation).
                let texts: Vec<String> = stored.iter().map(|s| c.stored_to_db_text(s)).collect();
                assert!(texts.windows(2).all(|w| w[0] < w[1]), "{ty}");
                for (v, s) in values.iter().zip(&stored) {
                    assert_eq!(c.decrypt_to_text(s).unwrap(), v.as_bytes());
                }
            }
        }
    }

    #[test]
    fn bytea_hex_text_form() {
        let c = crypto(Mode::Deterministic, "text", Storage::Binary);
        let stored = vec![0x0a, 0x1b, 0xff];
        assert_eq!(c.stored_to_db_text(&stored), "\\x0a1bff");
        assert_eq!(c.stored_from_db_text(b"\\x0A1BfF").unwrap(), stored);
        assert_eq!(c.stored_from_db_text(b"\\x").unwrap(), Vec::<u8>::new());
        assert_eq!(c.pg_literal(&stored), "'\\x0a1bff'::bytea");
        for bad in [&b"\\x0a1"[..], b"\\x0g", b"0a1b", b"\\x 0a", b"\\X0a"] {
            assert!(c.stored_from_db_text(bad).is_err(), "{bad:?}");
        }
        let e = c
            .stored_from_db_text(b"\\012\\033")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("customers.c") && e.contains("bytea_output"),
            "{e}"
        );

        let t = crypto(Mode::Randomized, "text", Storage::Text);
        let stored = t.encrypt_text(b"secret").unwrap();
        let text = t.stored_to_db_text(&stored);
        assert_eq!(text, envelope::to_text(Mode::Randomized, &stored));
        assert_eq!(t.pg_literal(&stored), format!("'{text}'"));
        assert_eq!(t.stored_from_db_text(text.as_bytes()).unwrap(), stored);
        assert!(t.stored_from_db_text(b"not base64!").is_err());
        assert!(t.stored_from_db_text(b"\xff").is_err());
    }

    #[test]
    fn key_must_match_the_policy() {
        let e = ColumnCrypto::new(
            policy("c", Mode::Deterministic, "text", Storage::Binary, None),
            key("k", Algorithm::Aes256, Mode::Randomized),
        )
        .unwrap_err();
        assert!(matches!(e, EncryptionError::Key { .. }));
        assert_eq!(
            e.to_string(),
            "public.customers.c: the policy says sm4/deterministic but key \"k\" is aes-256/randomized"
        );
        assert!(
            ColumnCrypto::new(
                policy("c", Mode::Deterministic, "text", Storage::Binary, None),
                key("k", Algorithm::Sm4, Mode::OrderPreserving),
            )
            .is_err()
        );
    }

    #[test]
    fn values_are_bound_to_the_domain() {
        for mode in MODES {
            let ty = if mode == Mode::OrderPreserving {
                "int"
            } else {
                "text"
            };
            let k = key("k", Algorithm::Sm4, mode);
            let a = ColumnCrypto::new(policy("a", mode, ty, Storage::Binary, None), Arc::clone(&k))
                .unwrap();
            let b = ColumnCrypto::new(policy("b", mode, ty, Storage::Binary, None), Arc::clone(&k))
                .unwrap();
            let stored = a.encrypt_text(b"42").unwrap();
            assert_eq!(a.decrypt_to_text(&stored).unwrap(), b"42");
            match b.decrypt_to_text(&stored) {
                Err(e) => assert!(matches!(e, EncryptionError::Crypto { .. }), "{e}"),
                // The order-preserving mode cannot authenticate; its domain changes the
                // function, so the value reads as something else.
                Ok(other) => {
                    assert_eq!(mode, Mode::OrderPreserving);
                    assert_ne!(other, b"42");
                }
            }
            // A shared domain makes two columns' values interchangeable (joins).
            let c = ColumnCrypto::new(
                policy("c", mode, ty, Storage::Binary, Some("shared")),
                Arc::clone(&k),
            )
            .unwrap();
            let d = ColumnCrypto::new(
                policy("d", mode, ty, Storage::Binary, Some("shared")),
                Arc::clone(&k),
            )
            .unwrap();
            let stored = c.encrypt_text(b"42").unwrap();
            assert_eq!(d.decrypt_to_text(&stored).unwrap(), b"42");
        }
    }

    #[test]
    fn errors_name_the_column() {
        let c = crypto(Mode::Deterministic, "varchar(3)", Storage::Binary);
        let e = c.encrypt_text(b"abcd").unwrap_err();
        assert!(matches!(e, EncryptionError::Value { .. }));
        assert_eq!(
            e.to_string(),
            "customers.c: value too long for type character varying(3)"
        );
        let e = c.decrypt_to_text(b"garbage").unwrap_err();
        assert!(matches!(e, EncryptionError::Crypto { .. }));
        assert!(e.to_string().starts_with("customers.c: "), "{e}");
        let o = crypto(Mode::OrderPreserving, "int2", Storage::Binary);
        let e = o.encrypt_pg_binary(&70_000i32.to_be_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "customers.c: value \"70000\" is out of range for type smallint"
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let c = crypto(Mode::Deterministic, "text", Storage::Binary);
        let shown = format!("{c:?}");
        assert_eq!(
            shown,
            "ColumnCrypto { column: \"public.customers.c\", key: \"k\", mode: Deterministic }"
        );
    }
}
