//! The tables of a day file, and its meta table that links it to the day before.
//!
//! The `records` columns hold every field of the record in the order of the canonical encoding
//! (see `chain.rs`), so `verify` recomputes hashes from exactly what `query` shows.

use rusqlite::{Connection, OptionalExtension};

/// Value of the `format` meta key.
pub const FORMAT_NAME: &str = "warden-audit";
/// Value of the `schema_version` meta key.
pub const SCHEMA_VERSION: &str = "1";

/// Tables and indexes of a new day file (without the full-text index).
pub const CREATE_TABLES: &str = "
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE records (
    seq             INTEGER PRIMARY KEY,  -- position in the chain, across all day files
    time_us         INTEGER NOT NULL,     -- event time, microseconds since 1970-01-01 UTC
    event           TEXT NOT NULL,        -- login | login_failed | statement | session_end
    session_id      INTEGER NOT NULL,     -- u64 stored as its two's-complement i64
    upstream        TEXT NOT NULL,
    protocol        TEXT NOT NULL,        -- postgres | mysql
    user_name       TEXT NOT NULL,
    database_name   TEXT NOT NULL,
    client_ip       TEXT NOT NULL,
    client_port     INTEGER NOT NULL,
    client_mac      TEXT,
    program         TEXT,
    client_host     TEXT,
    os_user         TEXT,
    tls_subject     TEXT,
    statement_kind  TEXT,
    fingerprint     TEXT,
    sql_text        TEXT,                 -- literals redacted
    statement_count INTEGER,
    tables_json     TEXT NOT NULL,        -- JSON array of strings
    columns_json    TEXT NOT NULL,        -- JSON array of strings
    datasets_json   TEXT NOT NULL,        -- JSON array of strings
    row_count       INTEGER,
    result_bytes    INTEGER,
    latency_us      INTEGER,
    result          TEXT NOT NULL,        -- ok | error | refused
    error_code      TEXT,
    message         TEXT,
    decision        TEXT,
    rule_name       TEXT,
    hash            BLOB NOT NULL         -- SM3(previous hash || canonical encoding)
) STRICT;

-- Kept while the day's records are written: cheap to maintain.
CREATE INDEX records_time    ON records(time_us);
CREATE INDEX records_user    ON records(user_name, time_us);
CREATE INDEX records_session ON records(session_id, time_us);
-- Failures and non-statement events are few: partial indexes find them at almost no cost.
CREATE INDEX records_result  ON records(result, time_us) WHERE result <> 'ok';
CREATE INDEX records_event   ON records(event, time_us) WHERE event <> 'statement';

-- Filled when the day is sealed: one row per table a record touches, lower-cased (ASCII), under
-- its full name and (when qualified) under its last component too, so `--table users` finds
-- `public.users`.
CREATE TABLE record_tables (
    name TEXT NOT NULL,
    seq  INTEGER NOT NULL,
    PRIMARY KEY (name, seq)
) STRICT, WITHOUT ROWID;

-- One row per written batch when a checkpoint key is configured.
CREATE TABLE checkpoints (
    seq           INTEGER PRIMARY KEY,  -- last record the checkpoint covers
    hash          BLOB NOT NULL,        -- that record's chain hash
    prev_seq      INTEGER NOT NULL,     -- seq of the checkpoint before (0: none)
    written_at_us INTEGER NOT NULL,
    key_id        TEXT NOT NULL,        -- which key made the MAC
    mac           BLOB NOT NULL         -- HMAC-SM3(key, checkpoint encoding)
) STRICT;
";

/// Indexes built when a day file is sealed (after its day is over): maintaining them per record
/// would cost more than the rest of the write together.
pub const SEAL_INDEXES: &str = "
CREATE INDEX IF NOT EXISTS records_ip      ON records(client_ip, time_us);
CREATE INDEX IF NOT EXISTS records_program ON records(program, time_us);
CREATE INDEX IF NOT EXISTS records_kind    ON records(statement_kind, time_us);
";

/// Fills the full-text index of a sealed file.
pub const FILL_FULL_TEXT: &str = "INSERT INTO records_fts (rowid, sql_text, message) \
    SELECT seq, sql_text, message FROM records \
    WHERE sql_text IS NOT NULL OR message IS NOT NULL";

/// The full-text index over the SQL text and messages: contentless FTS5 with the trigram
/// tokenizer, so any substring of three or more characters (Chinese included) is indexed,
/// case-insensitively. Its rowid is the record's `seq`.
pub const CREATE_FULL_TEXT: &str = "
CREATE VIRTUAL TABLE IF NOT EXISTS records_fts USING fts5(
    sql_text, message, content='', tokenize='trigram'
);
";

/// Columns read back into a [`crate::StoredRecord`], in the order `read.rs` decodes them.
pub const RECORD_COLUMNS: &str = "seq, time_us, event, session_id, upstream, protocol, \
    user_name, database_name, client_ip, client_port, client_mac, program, client_host, \
    os_user, tls_subject, statement_kind, fingerprint, sql_text, statement_count, tables_json, \
    columns_json, datasets_json, row_count, result_bytes, latency_us, result, error_code, \
    message, decision, rule_name, hash";

/// Insert of one record (parameters in `RECORD_COLUMNS` order).
pub const INSERT_RECORD: &str = "INSERT INTO records (seq, time_us, event, session_id, \
    upstream, protocol, user_name, database_name, client_ip, client_port, client_mac, program, \
    client_host, os_user, tls_subject, statement_kind, fingerprint, sql_text, statement_count, \
    tables_json, columns_json, datasets_json, row_count, result_bytes, latency_us, result, \
    error_code, message, decision, rule_name, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, \
    ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, \
    ?28, ?29, ?30, ?31)";

/// Insert of one table-name row.
pub const INSERT_TABLE: &str = "INSERT OR IGNORE INTO record_tables (name, seq) VALUES (?1, ?2)";

/// Insert of one checkpoint.
pub const INSERT_CHECKPOINT: &str = "INSERT INTO checkpoints (seq, hash, prev_seq, \
    written_at_us, key_id, mac) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Meta keys written when a day file is created.
pub mod meta_key {
    /// Always `warden-audit`.
    pub const FORMAT: &str = "format";
    /// Schema version, `1`.
    pub const SCHEMA_VERSION: &str = "schema_version";
    /// The file's UTC day, `YYYY-MM-DD`.
    pub const DAY: &str = "day";
    /// When the file was created (RFC 3339).
    pub const CREATED_AT: &str = "created_at";
    /// `seq` the file's first record gets.
    pub const FIRST_SEQ: &str = "first_seq";
    /// Chain hash of the record before this file's first (hex): the previous file's last.
    pub const PREV_HASH: &str = "prev_hash";
    /// Name of the previous day file, empty when this file starts the chain.
    pub const PREV_FILE: &str = "prev_file";
    /// `seq` of the last checkpoint before this file, `0` when none.
    pub const PREV_CHECKPOINT_SEQ: &str = "prev_checkpoint_seq";
    /// `1` once the file is sealed: its day is over and its `record_tables` and sealed
    /// indexes are built.
    pub const SEALED: &str = "sealed";
    /// `1` once the file's full-text index is built (at sealing, when configured).
    pub const FULL_TEXT: &str = "full_text";
    /// The software that created the file.
    pub const CREATED_BY: &str = "created_by";
}

/// Reads one meta value.
pub fn meta_value(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}
