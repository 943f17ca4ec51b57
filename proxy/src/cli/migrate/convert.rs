//! Converting the values of one batch: what a migration does in warden between reading rows and
//! writing them back.
//!
//! Values arrive as the database's text output of the column (`pk::text, column::text`; on
//! MySQL `CAST(column AS CHAR)`, or `HEX(column)` for binary-stored ciphertext) and leave as
//! SQL literals of the new value: the envelope for `encrypt` (and `rekey`, when the value is
//! sealed with an older key version), the logical type's text for `decrypt` (MariaDB's text
//! form on MySQL). The first
//! value that fails (a wrong key, a damaged envelope, a value that does not fit the logical
//! type) fails the whole batch, naming its row, so nothing of that batch is written.

use std::sync::Arc;

use anyhow::{Result, bail};
use warden_crypto::{ColumnKey, KeyDomain};
use warden_encryption::{ColumnCrypto, EncryptionError, Storage, ValueError};

use super::Direction;
use super::sql;
use crate::pg::service::Rows;

/// `(pk, new value literal, original text)`: one row of a batch to write.
pub type Row = (String, String, String);

/// The database the values come from and go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    /// MySQL / MariaDB, with `NO_BACKSLASH_ESCAPES` (a literal only needs its quotes doubled).
    MySql,
}

/// Converts values of one column in one direction.
pub struct Converter {
    pub direction: Direction,
    pub dialect: Dialect,
    /// `schema.table.column`, for messages.
    pub qualified: String,
    /// The primary key's quoted name, for messages.
    pub pk: String,
    pub crypto: Arc<ColumnCrypto>,
    /// The column's key (rekey reads versions and re-seals with it).
    pub key: Arc<ColumnKey>,
    pub domain: KeyDomain,
}

impl Converter {
    /// The SQL literal of the value to write for `value` (the column's text output), or `None`
    /// when it needs no change.
    fn convert(&self, value: &str) -> Result<Option<String>, EncryptionError> {
        let crypto = &self.crypto;
        match self.direction {
            Direction::Encrypt => {
                let stored = crypto.encrypt_text(value.as_bytes())?;
                Ok(Some(self.stored_literal(&stored)))
            }
            Direction::Decrypt => {
                let stored = self.stored(value)?;
                let mut text = crypto.decrypt_to_text(&stored)?;
                if self.dialect == Dialect::MySql {
                    text = warden_encryption::mysql::text_from_logical(crypto.logical(), text);
                }
                Ok(Some(sql::literal(&String::from_utf8_lossy(&text))))
            }
            Direction::Rekey => {
                let stored = self.stored(value)?;
                let fresh = self
                    .key
                    .reencrypt(&stored, &self.domain)
                    .map_err(|source| EncryptionError::Crypto {
                        column: crypto.column.display_name(),
                        source,
                    })?;
                Ok(fresh.map(|s| self.stored_literal(&s)))
            }
        }
    }

    /// The stored value from the text a batch read (MySQL reads binary storage as `HEX()`).
    fn stored(&self, value: &str) -> Result<Vec<u8>, EncryptionError> {
        let crypto = &self.crypto;
        match (self.dialect, crypto.storage()) {
            (Dialect::MySql, Storage::Binary) => {
                hex::decode(value).map_err(|_| EncryptionError::Value {
                    column: crypto.column.display_name(),
                    source: ValueError::new("the stored value is not an envelope (bad HEX())"),
                })
            }
            _ => crypto.stored_from_db_text(value.as_bytes()),
        }
    }

    /// The SQL literal of a stored value.
    fn stored_literal(&self, stored: &[u8]) -> String {
        match self.dialect {
            Dialect::Postgres => self.crypto.pg_literal(stored),
            Dialect::MySql => self.crypto.mysql_literal(stored),
        }
    }

    /// Converts the `pk, value` rows of one batch (in key order) into the rows to write.
    pub fn batch(&self, rows: Rows) -> Result<Vec<Row>> {
        let mut batch = Vec::with_capacity(rows.len());
        for row in rows {
            let mut values = row.into_iter();
            let (Some(Some(pk)), Some(Some(value))) = (values.next(), values.next()) else {
                bail!(
                    "a batch of {} returned a row without a key or value",
                    self.qualified
                );
            };
            match self.convert(&value) {
                Ok(Some(new)) => batch.push((pk, new, value)),
                Ok(None) => {}
                Err(e) => bail!(
                    "cannot {} the value of {} in the row with primary key {} = {}: {e}; \
                     nothing of this batch was written",
                    self.direction.verb(),
                    self.qualified,
                    self.pk,
                    sql::literal(&pk)
                ),
            }
        }
        Ok(batch)
    }
}
