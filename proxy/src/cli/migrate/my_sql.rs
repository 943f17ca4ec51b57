//! The SQL text of the online migrations on MySQL / MariaDB: quoting, the names of warden's
//! helper objects, the column types written, and every statement the MySQL job runs.
//!
//! The service client sends one statement per COM_QUERY and has no parameters, so values are
//! literals: the session runs with `NO_BACKSLASH_ESCAPES` ([`SESSION_SETTINGS`]), so a string
//! literal only needs its quotes doubled ([`sql::literal`]), and binary values are `X'…'`.
//! Values are read as text: `CAST(column AS CHAR)` for plaintext (MariaDB's text form, which the
//! logical types read), `HEX(column)` for binary-stored ciphertext, the column itself for
//! text-stored ciphertext. Guards compare what was read, byte for byte (`CAST(… AS BINARY)`),
//! so a change of case under a case-insensitive collation still counts as a change.

use warden_crypto::Mode;
use warden_crypto::envelope::{FORMAT_VERSION, HEADER_LEN, MAGIC, OPE_STORED_LEN};
use warden_encryption::{Catalog, LogicalType, Storage};

use super::sql::{self, VERSION_OFFSET, base64_prefix, fnv1a, helper_name};

/// Settings of the migration connection, one statement each: literals without backslash
/// escapes, strict conversions (a value that does not fit its new type fails its batch instead
/// of being truncated), and bounded waits for metadata and row locks (a statement queued behind
/// a long transaction would otherwise hold up the application's queries behind it).
pub const SESSION_SETTINGS: [&str; 4] = [
    "SET NAMES utf8mb4",
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION lock_wait_timeout = 5",
    "SET SESSION innodb_lock_wait_timeout = 5",
];

/// Largest `VARBINARY` the shadow column gets; longer bounds become BLOBs.
const MAX_VARBINARY: u32 = 4096;

/// A quoted identifier.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// Takes the named lock of migrations of `column` (`schema.table.column`, hashed: lock names
/// are limited to 64 characters); answers `1` when taken, `0` when another session holds it.
pub fn try_lock(column: &str) -> String {
    format!(
        "SELECT GET_LOCK('warden_migration_{:016x}', 0)",
        fnv1a(column.as_bytes())
    )
}

/// How the migrated column's values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// Plaintext of the logical type: `CAST(c AS CHAR)`.
    Plain,
    /// Binary-stored ciphertext: `HEX(c)`.
    Hex,
    /// Text-stored ciphertext: `c`.
    Text,
}

/// The bytes of ciphertext a value of `logical` can take: its longest text (4 bytes a
/// character) and 64 bytes of envelope; `None` when unbounded.
fn ciphertext_bound(logical: LogicalType, mode: Mode) -> Option<u32> {
    if mode == Mode::OrderPreserving {
        return Some(OPE_STORED_LEN as u32);
    }
    let text = match logical {
        LogicalType::Text | LogicalType::Varchar(None) => return None,
        LogicalType::Varchar(Some(n)) | LogicalType::Char(n) => n.checked_mul(4)?,
        LogicalType::Int2 => 6,
        LogicalType::Int4 => 11,
        LogicalType::Int8 => 20,
        LogicalType::Numeric { precision, .. } => u32::from(precision) + 3,
        LogicalType::Date => 10,
        LogicalType::Timestamp => 26,
    };
    text.checked_add(64)
}

/// The column type ciphertext is stored in: `VARBINARY(n)` (or a BLOB) for binary storage, an
/// ASCII `VARCHAR(n)` (or `LONGTEXT`) with a binary collation for text storage (base64 is
/// case-sensitive: equality and UNIQUE must compare bytes).
pub fn storage_type(logical: LogicalType, mode: Mode, storage: Storage) -> String {
    let bound = ciphertext_bound(logical, mode);
    match (storage, bound) {
        (Storage::Binary, Some(n)) if n <= MAX_VARBINARY => format!("VARBINARY({n})"),
        (Storage::Binary, Some(n)) if n <= 65_535 => "BLOB".into(),
        (Storage::Binary, _) => "LONGBLOB".into(),
        (Storage::Text, Some(n)) => {
            let chars = if mode == Mode::OrderPreserving {
                2 * n
            } else {
                n.div_ceil(3) * 4
            };
            if chars <= MAX_VARBINARY {
                format!("VARCHAR({chars}) CHARACTER SET ascii COLLATE ascii_bin")
            } else {
                "LONGTEXT CHARACTER SET ascii COLLATE ascii_bin".into()
            }
        }
        (Storage::Text, None) => "LONGTEXT CHARACTER SET ascii COLLATE ascii_bin".into(),
    }
}

/// The MySQL type of the logical type: what `decrypt` gives the column back. (A `text` column
/// becomes `LONGTEXT`, a `timestamp` `DATETIME(6)`: the policy does not say which of the
/// family it was.)
pub fn logical_type(logical: LogicalType) -> String {
    match logical {
        LogicalType::Text | LogicalType::Varchar(None) => "LONGTEXT".into(),
        LogicalType::Varchar(Some(n)) => format!("VARCHAR({n})"),
        LogicalType::Char(n) => format!("CHAR({n})"),
        LogicalType::Int2 => "SMALLINT".into(),
        LogicalType::Int4 => "INT".into(),
        LogicalType::Int8 => "BIGINT".into(),
        LogicalType::Numeric { precision, scale } => format!("DECIMAL({precision},{scale})"),
        LogicalType::Date => "DATE".into(),
        LogicalType::Timestamp => "DATETIME(6)".into(),
    }
}

/// `information_schema`'s `DATA_TYPE` of a type this module writes (`VARBINARY(136)` →
/// `varbinary`).
pub fn data_type(column_type: &str) -> String {
    column_type
        .split(['(', ' '])
        .next()
        .unwrap_or_default()
        .to_lowercase()
}

/// The check that every value of an encrypted column is an envelope of its mode (see
/// `sql::envelope_check`, its PostgreSQL twin).
pub fn envelope_check(column: &str, mode: Mode, storage: Storage) -> String {
    let magic = format!("{MAGIC:02X}{FORMAT_VERSION:02X}");
    let condition = match (storage, mode) {
        (Storage::Binary, Mode::OrderPreserving) => format!(
            "LENGTH({column}) = {OPE_STORED_LEN} AND SUBSTRING({column}, {}, 2) = X'{magic}'",
            OPE_STORED_LEN - HEADER_LEN + 1
        ),
        (Storage::Binary, _) => format!("LEFT({column}, 2) = X'{magic}'"),
        (Storage::Text, Mode::OrderPreserving) => {
            format!("{column} REGEXP '^[0-9a-f]{{{}}}$'", 2 * OPE_STORED_LEN)
        }
        (Storage::Text, _) => format!("{column} LIKE '{}%'", base64_prefix()),
    };
    format!("{column} IS NULL OR ({condition})")
}

/// One index that contains the migrated column, as `information_schema.STATISTICS` has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: String,
    pub unique: bool,
    /// `(column, prefix length, descending)` in index order.
    pub parts: Vec<(String, Option<String>, bool)>,
}

impl Index {
    /// `ADD [UNIQUE] INDEX name (parts)`.
    fn add(&self) -> String {
        let parts: Vec<String> = self
            .parts
            .iter()
            .map(|(column, prefix, desc)| {
                let mut part = ident(column);
                if let Some(prefix) = prefix {
                    part.push_str(&format!("({prefix})"));
                }
                if *desc {
                    part.push_str(" DESC");
                }
                part
            })
            .collect();
        format!(
            "ADD {}INDEX {} ({})",
            if self.unique { "UNIQUE " } else { "" },
            ident(&self.name),
            parts.join(", ")
        )
    }
}

/// What the swap needs besides the names: the column's new type and its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    pub new_type: String,
    pub not_null: bool,
    pub comment: String,
    /// The column before it, or `None` when it is the first.
    pub after: Option<String>,
    pub indexes: Vec<Index>,
    pub drop_check: bool,
    pub add_check: Option<String>,
}

/// The names of one migration, quoted, ready to splice into SQL (see `sql::Names`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub schema_name: String,
    pub table_name: String,
    /// `` `schema`.`table` ``.
    pub table: String,
    pub column: String,
    pub column_name: String,
    /// `` `<column>__warden` ``.
    pub shadow: String,
    pub shadow_name: String,
    /// The BEFORE INSERT and BEFORE UPDATE triggers (MariaDB: one per event), qualified.
    pub triggers: [String; 2],
    /// `` `warden_enc_<column>` ``.
    pub constraint: String,
    pub pk: String,
    /// Whether the primary key is a number (its values are spliced unquoted).
    pub pk_numeric: bool,
}

impl Names {
    pub fn new(schema: &str, table: &str, column: &str, pk: &str, pk_numeric: bool) -> Names {
        let shadow_name = helper_name("", column, "__warden");
        let trigger = |event: &str| {
            format!(
                "{}.{}",
                ident(schema),
                ident(&helper_name(
                    "warden_mig_",
                    &format!("{table}_{column}"),
                    event
                ))
            )
        };
        Names {
            schema_name: schema.to_string(),
            table_name: table.to_string(),
            table: format!("{}.{}", ident(schema), ident(table)),
            column: ident(column),
            column_name: column.to_string(),
            shadow: ident(&shadow_name),
            shadow_name,
            triggers: [trigger("_ins"), trigger("_upd")],
            constraint: ident(&Catalog::constraint_name(column)),
            pk: ident(pk),
            pk_numeric,
        }
    }

    /// A primary key value as a literal: a number as it is (checked), anything else quoted.
    fn key(&self, value: &str) -> String {
        let number = !value.is_empty()
            && value
                .bytes()
                .enumerate()
                .all(|(i, b)| b.is_ascii_digit() || (b == b'-' && i == 0) || b == b'.');
        if self.pk_numeric && number {
            value.to_string()
        } else {
            sql::literal(value)
        }
    }

    /// The expression reading the column of table alias `t`.
    fn read(&self, read: Read) -> String {
        match read {
            Read::Plain => format!("CAST(t.{} AS CHAR)", self.column),
            Read::Hex => format!("HEX(t.{})", self.column),
            Read::Text => format!("t.{}", self.column),
        }
    }

    fn after(&self, last: Option<&str>) -> String {
        match last {
            Some(last) => format!("t.{} > {} AND ", self.pk, self.key(last)),
            None => String::new(),
        }
    }

    /// The columns of the table: name, position, nullable, default, comment, extra, data
    /// type.
    pub fn columns(&self) -> String {
        format!(
            "SELECT COLUMN_NAME, ORDINAL_POSITION, IS_NULLABLE, COLUMN_DEFAULT, COLUMN_COMMENT, \
             EXTRA, DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} ORDER BY ORDINAL_POSITION",
            sql::literal(&self.schema_name),
            sql::literal(&self.table_name)
        )
    }

    /// The statistics rows of the primary key and of every index containing the column:
    /// index, non-unique, column, prefix, collation (`D` descending), index type.
    pub fn indexes(&self) -> String {
        let (schema, table) = (
            sql::literal(&self.schema_name),
            sql::literal(&self.table_name),
        );
        format!(
            "SELECT INDEX_NAME, NON_UNIQUE, COLUMN_NAME, SUB_PART, COLLATION, INDEX_TYPE \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} \
             AND (INDEX_NAME = 'PRIMARY' OR INDEX_NAME IN (SELECT INDEX_NAME FROM information_schema.STATISTICS \
               WHERE TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} AND COLUMN_NAME = {column})) \
             ORDER BY INDEX_NAME, SEQ_IN_INDEX",
            column = sql::literal(&self.column_name)
        )
    }

    /// Foreign keys from or to the column: constraint, its table.
    pub fn foreign_keys(&self) -> String {
        let (schema, table, column) = (
            sql::literal(&self.schema_name),
            sql::literal(&self.table_name),
            sql::literal(&self.column_name),
        );
        format!(
            "SELECT CONSTRAINT_NAME, CONCAT(TABLE_SCHEMA, '.', TABLE_NAME) \
             FROM information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_NAME IS NOT NULL AND \
             ((TABLE_SCHEMA = {schema} AND TABLE_NAME = {table} AND COLUMN_NAME = {column}) OR \
              (REFERENCED_TABLE_SCHEMA = {schema} AND REFERENCED_TABLE_NAME = {table} \
               AND REFERENCED_COLUMN_NAME = {column}))"
        )
    }

    /// The shadow column's `DATA_TYPE` and character set, when it exists.
    pub fn shadow_column(&self) -> String {
        format!(
            "SELECT DATA_TYPE, CHARACTER_SET_NAME FROM information_schema.COLUMNS \
             WHERE TABLE_SCHEMA = {} AND TABLE_NAME = {} AND COLUMN_NAME = {}",
            sql::literal(&self.schema_name),
            sql::literal(&self.table_name),
            sql::literal(&self.shadow_name)
        )
    }

    /// Adds the shadow column and the triggers that empty a row's shadow value whenever the
    /// application writes the column. The shadow column is `INVISIBLE` (MariaDB 10.3), so the
    /// application's `SELECT *` and `INSERT` without a column list do not see it; the swap's
    /// `CHANGE COLUMN` makes it visible. Idempotent, and never without the triggers once they
    /// exist: a resumed migration finds everything in place.
    pub fn setup(&self, shadow_type: &str) -> Vec<String> {
        let [insert, update] = &self.triggers;
        vec![
            format!(
                "ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} {shadow_type} INVISIBLE",
                self.table, self.shadow
            ),
            format!(
                "CREATE TRIGGER IF NOT EXISTS {insert} BEFORE INSERT ON {} FOR EACH ROW \
                 SET NEW.{} = NULL",
                self.table, self.shadow
            ),
            format!(
                "CREATE TRIGGER IF NOT EXISTS {update} BEFORE UPDATE ON {table} FOR EACH ROW \
                 IF NOT (CAST(NEW.{column} AS BINARY) <=> CAST(OLD.{column} AS BINARY)) \
                 THEN SET NEW.{shadow} = NULL; END IF",
                table = self.table,
                column = self.column,
                shadow = self.shadow
            ),
        ]
    }

    /// Rows whose shadow value is still missing.
    pub fn count_remaining(&self) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NOT NULL AND {} IS NULL",
            self.table, self.column, self.shadow
        )
    }

    /// Rows whose shadow value is there already.
    pub fn count_done(&self) -> String {
        format!(
            "SELECT COUNT(*) FROM {} WHERE {} IS NOT NULL AND {} IS NOT NULL",
            self.table, self.column, self.shadow
        )
    }

    /// The next batch of rows without a shadow value: `pk, value` as text.
    pub fn select_missing(&self, read: Read, last: Option<&str>, limit: usize) -> String {
        format!(
            "SELECT CAST(t.{pk} AS CHAR), {value} FROM {table} AS t \
             WHERE {after}t.{column} IS NOT NULL AND t.{shadow} IS NULL ORDER BY t.{pk} LIMIT {limit}",
            pk = self.pk,
            value = self.read(read),
            table = self.table,
            after = self.after(last),
            column = self.column,
            shadow = self.shadow,
        )
    }

    /// Writes new values into `target` (the shadow column, or the column itself for rekey);
    /// `rows` are `(pk, new value literal, original text)` in key order. A row whose column
    /// changed since it was read (`read` no longer gives the original) is left alone.
    pub fn update(&self, target: &str, read: Read, rows: &[(String, String, String)]) -> String {
        let mut values = String::with_capacity(rows.len() * 180);
        for (i, (key, new, original)) in rows.iter().enumerate() {
            if i == 0 {
                values.push_str("SELECT ");
            } else {
                values.push_str(" UNION ALL SELECT ");
            }
            values.push_str(&self.key(key));
            values.push_str(if i == 0 { " AS k, " } else { ", " });
            values.push_str(new);
            values.push_str(if i == 0 { " AS s, " } else { ", " });
            values.push_str(&sql::literal(original));
            if i == 0 {
                values.push_str(" AS o");
            }
        }
        let range = match (rows.first(), rows.last()) {
            (Some((first, ..)), Some((last, ..))) => format!(
                " AND t.{} BETWEEN {} AND {}",
                self.pk,
                self.key(first),
                self.key(last)
            ),
            _ => String::new(),
        };
        format!(
            "UPDATE {table} AS t JOIN ({values}) AS v ON t.{pk} = v.k SET t.{target} = v.s \
             WHERE CAST({value} AS BINARY) <=> CAST(v.o AS BINARY){range}",
            table = self.table,
            pk = self.pk,
            value = self.read(read),
        )
    }

    /// Locks the table (by name, and as `t`, the alias the batches use) for the swap.
    pub fn lock(&self) -> String {
        format!("LOCK TABLES {0} WRITE, {0} AS t WRITE", self.table)
    }

    /// The swap, one `ALTER TABLE` (atomic in MariaDB): the indexes containing the column
    /// dropped, the column dropped, the shadow renamed into its place with its type, its
    /// `NOT NULL` and comment, the indexes added again as they were, and the check constraint
    /// dropped (decrypt) or added (encrypt).
    pub fn swap(&self, swap: &Swap) -> String {
        let mut alter = Vec::new();
        if swap.drop_check {
            alter.push(format!("DROP CONSTRAINT IF EXISTS {}", self.constraint));
        }
        for index in &swap.indexes {
            alter.push(format!("DROP INDEX {}", ident(&index.name)));
        }
        alter.push(format!("DROP COLUMN {}", self.column));
        let mut change = format!(
            "CHANGE COLUMN {} {} {}{}",
            self.shadow,
            self.column,
            swap.new_type,
            if swap.not_null { " NOT NULL" } else { " NULL" }
        );
        if !swap.comment.is_empty() {
            change.push_str(&format!(" COMMENT {}", sql::literal(&swap.comment)));
        }
        match &swap.after {
            Some(after) => change.push_str(&format!(" AFTER {}", ident(after))),
            None => change.push_str(" FIRST"),
        }
        alter.push(change);
        alter.extend(swap.indexes.iter().map(Index::add));
        if let Some(check) = &swap.add_check {
            alter.push(format!(
                "ADD CONSTRAINT {} CHECK ({check})",
                self.constraint
            ));
        }
        format!("ALTER TABLE {} {}", self.table, alter.join(", "))
    }

    /// Drops the triggers (after the swap, still under the lock).
    pub fn drop_triggers(&self) -> Vec<String> {
        self.triggers
            .iter()
            .map(|t| format!("DROP TRIGGER IF EXISTS {t}"))
            .collect()
    }

    /// Rekey: the next batch of values not sealed with key version `active`.
    pub fn select_stale(
        &self,
        read: Read,
        stale: &str,
        last: Option<&str>,
        limit: usize,
    ) -> String {
        format!(
            "SELECT CAST(t.{pk} AS CHAR), {value} FROM {table} AS t \
             WHERE {after}t.{column} IS NOT NULL AND {stale} ORDER BY t.{pk} LIMIT {limit}",
            pk = self.pk,
            value = self.read(read),
            table = self.table,
            after = self.after(last),
            column = self.column,
        )
    }

    /// Rekey: how many values are not sealed with key version `active`.
    pub fn count_stale(&self, stale: &str) -> String {
        format!(
            "SELECT COUNT(*) FROM {} AS t WHERE t.{} IS NOT NULL AND {stale}",
            self.table, self.column
        )
    }

    /// A condition (on alias `t`) true when the envelope's key version is not `active`.
    pub fn not_version(&self, mode: Mode, storage: Storage, active: u32) -> String {
        let c = format!("t.{}", self.column);
        let start = if mode == Mode::OrderPreserving {
            OPE_STORED_LEN - HEADER_LEN + VERSION_OFFSET
        } else {
            VERSION_OFFSET
        };
        let version = format!("{active:08x}");
        match (storage, mode) {
            (Storage::Binary, _) => {
                format!("NOT (SUBSTRING({c}, {}, 4) <=> X'{version}')", start + 1)
            }
            (Storage::Text, Mode::OrderPreserving) => format!(
                "NOT (CAST(SUBSTRING({c}, {}, 8) AS BINARY) <=> '{version}')",
                2 * start + 1
            ),
            (Storage::Text, _) => format!(
                "NOT (SUBSTRING(FROM_BASE64({c}), {}, 4) <=> X'{version}')",
                start + 1
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Names {
        Names::new("shop", "people", "card", "id", true)
    }

    #[test]
    fn names_are_quoted_and_fit() {
        let n = names();
        assert_eq!(n.table, "`shop`.`people`");
        assert_eq!(n.shadow, "`card__warden`");
        assert_eq!(
            n.triggers,
            [
                "`shop`.`warden_mig_people_card_ins`".to_string(),
                "`shop`.`warden_mig_people_card_upd`".to_string()
            ]
        );
        assert_eq!(ident("a`b"), "`a``b`");
        let long = "x".repeat(64);
        let n = Names::new("s", &long, &long, "id", true);
        assert!(n.shadow_name.len() <= 64);
        assert!(try_lock("s.t.c").starts_with("SELECT GET_LOCK('warden_migration_"));
    }

    #[test]
    fn types_bound_the_ciphertext() {
        let varchar = LogicalType::Varchar(Some(18));
        assert_eq!(
            storage_type(varchar, Mode::Deterministic, Storage::Binary),
            "VARBINARY(136)"
        );
        assert_eq!(
            storage_type(LogicalType::Text, Mode::Randomized, Storage::Binary),
            "LONGBLOB"
        );
        let decimal = LogicalType::Numeric {
            precision: 12,
            scale: 2,
        };
        assert_eq!(
            storage_type(decimal, Mode::OrderPreserving, Storage::Binary),
            "VARBINARY(28)"
        );
        assert_eq!(
            storage_type(decimal, Mode::OrderPreserving, Storage::Text),
            "VARCHAR(56) CHARACTER SET ascii COLLATE ascii_bin"
        );
        assert_eq!(
            storage_type(LogicalType::Int4, Mode::Deterministic, Storage::Text),
            "VARCHAR(100) CHARACTER SET ascii COLLATE ascii_bin"
        );
        assert_eq!(logical_type(decimal), "DECIMAL(12,2)");
        assert_eq!(data_type("VARBINARY(136)"), "varbinary");
        assert_eq!(data_type("VARCHAR(56) CHARACTER SET ascii"), "varchar");
        assert_eq!(data_type("INT"), "int");
    }

    #[test]
    fn batches_read_and_guard_what_they_read() {
        let n = names();
        assert_eq!(
            n.select_missing(Read::Plain, Some("42"), 10),
            "SELECT CAST(t.`id` AS CHAR), CAST(t.`card` AS CHAR) FROM `shop`.`people` AS t \
             WHERE t.`id` > 42 AND t.`card` IS NOT NULL AND t.`card__warden` IS NULL ORDER BY t.`id` LIMIT 10"
        );
        let rows = vec![
            ("1".to_string(), "X'5701'".to_string(), "a'b".to_string()),
            ("2".to_string(), "X'5702'".to_string(), "c".to_string()),
        ];
        assert_eq!(
            n.update(&n.shadow, Read::Plain, &rows),
            "UPDATE `shop`.`people` AS t JOIN (SELECT 1 AS k, X'5701' AS s, 'a''b' AS o \
             UNION ALL SELECT 2, X'5702', 'c') AS v ON t.`id` = v.k SET t.`card__warden` = v.s \
             WHERE CAST(CAST(t.`card` AS CHAR) AS BINARY) <=> CAST(v.o AS BINARY) AND t.`id` BETWEEN 1 AND 2"
        );
        // A key that is not a number is quoted even when the key column is numeric.
        assert_eq!(n.key("1 OR 1"), "'1 OR 1'");
        let text_key = Names::new("s", "t", "c", "code", false);
        assert_eq!(text_key.key("7"), "'7'");
    }

    #[test]
    fn the_swap_keeps_place_and_indexes() {
        let n = names();
        let swap = Swap {
            new_type: "VARBINARY(136)".into(),
            not_null: true,
            comment: "it's".into(),
            after: Some("name".into()),
            indexes: vec![Index {
                name: "people_multi".into(),
                unique: true,
                parts: vec![
                    ("name".into(), Some("4".into()), false),
                    ("card".into(), None, true),
                ],
            }],
            drop_check: false,
            add_check: Some(envelope_check(
                "`card`",
                Mode::Deterministic,
                Storage::Binary,
            )),
        };
        assert_eq!(
            n.swap(&swap),
            "ALTER TABLE `shop`.`people` DROP INDEX `people_multi`, DROP COLUMN `card`, \
             CHANGE COLUMN `card__warden` `card` VARBINARY(136) NOT NULL COMMENT 'it''s' AFTER `name`, \
             ADD UNIQUE INDEX `people_multi` (`name`(4), `card` DESC), \
             ADD CONSTRAINT `warden_enc_card` CHECK (`card` IS NULL OR (LEFT(`card`, 2) = X'5701'))"
        );
    }

    #[test]
    fn envelope_checks_and_versions_follow_the_format() {
        assert_eq!(
            envelope_check("`c`", Mode::OrderPreserving, Storage::Binary),
            "`c` IS NULL OR (LENGTH(`c`) = 28 AND SUBSTRING(`c`, 17, 2) = X'5701')"
        );
        assert_eq!(
            envelope_check("`c`", Mode::Randomized, Storage::Text),
            "`c` IS NULL OR (`c` LIKE 'VwE%')"
        );
        assert_eq!(
            envelope_check("`c`", Mode::OrderPreserving, Storage::Text),
            "`c` IS NULL OR (`c` REGEXP '^[0-9a-f]{56}$')"
        );
        let n = names();
        assert_eq!(
            n.not_version(Mode::Deterministic, Storage::Binary, 2),
            "NOT (SUBSTRING(t.`card`, 9, 4) <=> X'00000002')"
        );
        assert_eq!(
            n.not_version(Mode::OrderPreserving, Storage::Binary, 2),
            "NOT (SUBSTRING(t.`card`, 25, 4) <=> X'00000002')"
        );
        assert_eq!(
            n.not_version(Mode::Deterministic, Storage::Text, 2),
            "NOT (SUBSTRING(FROM_BASE64(t.`card`), 9, 4) <=> X'00000002')"
        );
    }
}
