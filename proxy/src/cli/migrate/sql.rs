//! The SQL text of the online migrations: quoting, the names warden gives its helper objects,
//! and every statement the migrations run.
//!
//! Statements go through the simple Query protocol (the service client has no parameters), so
//! every value is a quoted literal and every name a quoted identifier; the session runs with
//! `standard_conforming_strings = on`, so a literal only needs its quotes doubled.

use warden_crypto::Mode;
use warden_crypto::envelope::{FORMAT_VERSION, HEADER_LEN, MAGIC, OPE_STORED_LEN};
use warden_encryption::{Catalog, Storage};

/// PostgreSQL's longest identifier, in bytes (longer ones are truncated).
const MAX_IDENT: usize = 63;

/// Where the key version sits in an envelope header (after magic, format, algorithm, mode and
/// the 4-byte key id).
pub(super) const VERSION_OFFSET: usize = 8;

/// Session settings of a migration connection: values printed the way the codecs read them,
/// waits for locks bounded (an `ALTER TABLE` queued behind a long transaction would otherwise
/// block every application query behind it), and batch commits that need not wait for the
/// disk (a lost batch is redone by the next run; the swap commits synchronously).
pub const SESSION_SETTINGS: &str = "SET standard_conforming_strings = on; \
     SET bytea_output = 'hex'; SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; \
     SET extra_float_digits = 3; SET lock_timeout = '5s'; SET statement_timeout = 0; \
     SET synchronous_commit = off";

/// Takes the session-level advisory lock of migrations of `column` (`schema.table.column`);
/// answers `t` when taken, `f` when another session holds it.
pub fn try_lock(column: &str) -> String {
    format!(
        "SELECT pg_catalog.pg_try_advisory_lock(pg_catalog.hashtextextended({}, 0))",
        literal(&format!("warden migration {column}"))
    )
}

/// Settings of the connection that reads the batches: a batch is the next rows in primary key
/// order that still need work, and the planner, which cannot know that the rows after the
/// last batch are exactly those (the shadow column has no statistics, or stale ones), would
/// otherwise often scan and sort the whole table for each batch. (The swap's last rows, few
/// and scattered, are read on the writing connection, where a scan is right.)
pub const READER_SETTINGS: &str = "SET enable_seqscan = off; SET enable_bitmapscan = off";

/// A quoted identifier.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A quoted string literal (`standard_conforming_strings = on`).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `name` cut to PostgreSQL's identifier length on a character boundary.
fn truncated(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A name for a helper object: `prefix` + `body`, made unique with a hash of the full name
/// when it would not fit in an identifier.
pub(super) fn helper_name(prefix: &str, body: &str, suffix: &str) -> String {
    let full = format!("{prefix}{body}{suffix}");
    if full.len() <= MAX_IDENT {
        return full;
    }
    let hash = format!("_{:08x}", fnv1a(full.as_bytes()) as u32);
    let room = MAX_IDENT - prefix.len() - suffix.len() - hash.len();
    format!("{prefix}{}{hash}{suffix}", truncated(body, room))
}

pub(super) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The names of one migration: the table, its column and primary key, and warden's helper
/// objects (the shadow column, the trigger and its function, the check constraint). Every
/// field is ready to splice into SQL (quoted), except `column_name` and `shadow_name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// `"schema"."table"`.
    pub table: String,
    /// `"column"`.
    pub column: String,
    pub column_name: String,
    /// `"<column>__warden"`: the column the new values are written to before the swap.
    pub shadow: String,
    pub shadow_name: String,
    /// `"warden_mig_<column>"`, on the table.
    pub trigger: String,
    /// `"schema"."warden_mig_<table>_<column>"`: the trigger's function.
    pub function: String,
    /// `"warden_enc_<column>"`: the check constraint of an encrypted column.
    pub constraint: String,
    /// `"pk"`.
    pub pk: String,
    /// The primary key's type, as `format_type` prints it.
    pub pk_type: String,
}

impl Names {
    pub fn new(schema: &str, table: &str, column: &str, pk: &str, pk_type: &str) -> Names {
        let shadow_name = helper_name("", column, "__warden");
        Names {
            table: format!("{}.{}", ident(schema), ident(table)),
            column: ident(column),
            column_name: column.to_string(),
            shadow: ident(&shadow_name),
            shadow_name,
            trigger: ident(&helper_name("warden_mig_", column, "")),
            function: format!(
                "{}.{}",
                ident(schema),
                ident(&helper_name(
                    "warden_mig_",
                    &format!("{table}_{column}"),
                    ""
                ))
            ),
            constraint: ident(&Catalog::constraint_name(column)),
            pk: ident(pk),
            pk_type: pk_type.to_string(),
        }
    }

    /// `t.pk > 'last'::type`, or nothing at the start of a pass. (Batches name the table `t`
    /// and their output columns `k` and `v`: `ORDER BY "id"` would otherwise sort by the
    /// output column `"id"::text`, in text order.)
    fn after(&self, last: Option<&str>) -> String {
        match last {
            Some(last) => format!("t.{} > {}::{} AND ", self.pk, literal(last), self.pk_type),
            None => String::new(),
        }
    }

    /// Adds the shadow column and the trigger that empties it whenever the application
    /// changes the column, so rows written during the migration are done again. Idempotent:
    /// a resumed migration finds them in place.
    pub fn setup(&self, shadow_type: &str) -> String {
        format!(
            "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {shadow} {shadow_type}; \
             CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $warden$ \
             BEGIN \
               IF TG_OP = 'INSERT' THEN NEW.{shadow} := NULL; \
               ELSIF NEW.{column} IS DISTINCT FROM OLD.{column} THEN NEW.{shadow} := NULL; \
               END IF; \
               RETURN NEW; \
             END $warden$; \
             DROP TRIGGER IF EXISTS {trigger} ON {table}; \
             CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE OF {column} ON {table} \
             FOR EACH ROW EXECUTE FUNCTION {function}()",
            table = self.table,
            shadow = self.shadow,
            function = self.function,
            column = self.column,
            trigger = self.trigger,
        )
    }

    /// Rows whose shadow value is still missing.
    pub fn count_remaining(&self) -> String {
        format!(
            "SELECT count(*) FROM {} WHERE {} IS NOT NULL AND {} IS NULL",
            self.table, self.column, self.shadow
        )
    }

    /// Rows whose shadow value is there already (work a previous run did).
    pub fn count_done(&self) -> String {
        format!(
            "SELECT count(*) FROM {} WHERE {} IS NOT NULL AND {} IS NOT NULL",
            self.table, self.column, self.shadow
        )
    }

    /// The next batch of rows without a shadow value: `pk::text, column::text`.
    pub fn select_missing(&self, last: Option<&str>, limit: usize) -> String {
        format!(
            "SELECT t.{pk}::text AS k, t.{column}::text AS v FROM {table} AS t \
             WHERE {after}t.{column} IS NOT NULL AND t.{shadow} IS NULL ORDER BY t.{pk} LIMIT {limit}",
            pk = self.pk,
            column = self.column,
            table = self.table,
            after = self.after(last),
            shadow = self.shadow,
        )
    }

    /// `AND t.pk BETWEEN first AND last` of a batch (its rows are in key order): the planner
    /// then joins the batch with an index range scan instead of a scan of the whole table.
    fn key_range(&self, rows: &[(String, String, String)]) -> String {
        match (rows.first(), rows.last()) {
            (Some((first, ..)), Some((last, ..))) => format!(
                " AND t.{pk} BETWEEN {}::{ty} AND {}::{ty}",
                literal(first),
                literal(last),
                pk = self.pk,
                ty = self.pk_type
            ),
            _ => String::new(),
        }
    }

    /// Writes shadow values; `rows` are `(pk, new value literal, original text)`, in key
    /// order. A row whose column changed since it was read is left alone (the trigger emptied
    /// its shadow anyway).
    pub fn update_shadow(&self, shadow_type: &str, rows: &[(String, String, String)]) -> String {
        format!(
            "UPDATE {table} AS t SET {shadow} = v.s::{shadow_type} FROM (VALUES {values}) AS v(k, s, o) \
             WHERE t.{pk} = v.k::{pk_type} AND t.{column}::text IS NOT DISTINCT FROM v.o{range}",
            table = self.table,
            shadow = self.shadow,
            values = values(rows),
            pk = self.pk,
            pk_type = self.pk_type,
            column = self.column,
            range = self.key_range(rows),
        )
    }

    /// The swap, inside the transaction that holds the table's ACCESS EXCLUSIVE lock: drops
    /// the trigger (a trigger's columns cannot change type), then in one `ALTER TABLE` (one
    /// table rewrite, which rebuilds the column's indexes): drops the old check constraint,
    /// gives the column the shadow's values and type, drops the shadow column (the rewrite
    /// leaves its values out), and adds the new check constraint.
    pub fn swap(&self, new_type: &str, drop_check: bool, add_check: Option<&str>) -> String {
        let mut alter = Vec::new();
        if drop_check {
            alter.push(format!("DROP CONSTRAINT IF EXISTS {}", self.constraint));
        }
        alter.push(format!(
            "ALTER COLUMN {} TYPE {new_type} USING {}",
            self.column, self.shadow
        ));
        alter.push(format!("DROP COLUMN {}", self.shadow));
        if let Some(check) = add_check {
            alter.push(format!(
                "ADD CONSTRAINT {} CHECK ({check})",
                self.constraint
            ));
        }
        format!(
            "DROP TRIGGER IF EXISTS {trigger} ON {table}; DROP FUNCTION IF EXISTS {function}(); \
             ALTER TABLE {table} {alter}",
            trigger = self.trigger,
            table = self.table,
            function = self.function,
            alter = alter.join(", "),
        )
    }

    /// Rekey: the next batch of values not sealed with key version `active`.
    pub fn select_stale(
        &self,
        mode: Mode,
        storage: Storage,
        active: u32,
        last: Option<&str>,
        limit: usize,
    ) -> String {
        format!(
            "SELECT t.{pk}::text AS k, t.{column}::text AS v FROM {table} AS t \
             WHERE {after}t.{column} IS NOT NULL AND {stale} ORDER BY t.{pk} LIMIT {limit}",
            pk = self.pk,
            column = self.column,
            table = self.table,
            after = self.after(last),
            stale = self.not_version(mode, storage, active),
        )
    }

    /// Rekey: how many values are not sealed with key version `active`.
    pub fn count_stale(&self, mode: Mode, storage: Storage, active: u32) -> String {
        format!(
            "SELECT count(*) FROM {} WHERE {} IS NOT NULL AND {}",
            self.table,
            self.column,
            self.not_version(mode, storage, active)
        )
    }

    /// Rekey: replaces values in place; `rows` are `(pk, new value literal, original text)`,
    /// in key order. A value changed since it was read is left alone (whoever changed it
    /// sealed it anew).
    pub fn update_in_place(&self, storage: Storage, rows: &[(String, String, String)]) -> String {
        let ty = storage_type(storage);
        format!(
            "UPDATE {table} AS t SET {column} = v.s::{ty} FROM (VALUES {values}) AS v(k, s, o) \
             WHERE t.{pk} = v.k::{pk_type} AND t.{column} = v.o::{ty}{range}",
            table = self.table,
            column = self.column,
            values = values(rows),
            pk = self.pk,
            pk_type = self.pk_type,
            range = self.key_range(rows),
        )
    }

    /// A condition true when the envelope's key version is not `active`. It reads the header
    /// where the envelope format puts it (`warden_crypto::envelope`); the migration still
    /// checks every value it reads with the key itself.
    fn not_version(&self, mode: Mode, storage: Storage, active: u32) -> String {
        let c = &self.column;
        let start = if mode == Mode::OrderPreserving {
            OPE_STORED_LEN - HEADER_LEN + VERSION_OFFSET
        } else {
            VERSION_OFFSET
        };
        let version = format!("{active:08x}");
        match (storage, mode) {
            (Storage::Binary, _) => format!(
                "substring({c} from {} for 4) IS DISTINCT FROM '\\x{version}'::bytea",
                start + 1
            ),
            (Storage::Text, Mode::OrderPreserving) => format!(
                "substring({c} from {} for 8) IS DISTINCT FROM '{version}'",
                2 * start + 1
            ),
            (Storage::Text, _) => format!(
                "substring(decode({c}, 'base64') from {} for 4) IS DISTINCT FROM '\\x{version}'::bytea",
                start + 1
            ),
        }
    }
}

/// The SQL type ciphertext is stored in.
pub fn storage_type(storage: Storage) -> &'static str {
    match storage {
        Storage::Binary => "bytea",
        Storage::Text => "text",
    }
}

/// The check that every value of an encrypted column is an envelope of its mode: it stops a
/// stale proxy or a direct client from writing plaintext into the column, and for text
/// storage it is what marks the column as encrypted in the catalog.
pub fn envelope_check(column: &str, mode: Mode, storage: Storage) -> String {
    let magic = format!("{MAGIC:02x}{FORMAT_VERSION:02x}");
    let condition = match (storage, mode) {
        (Storage::Binary, Mode::OrderPreserving) => format!(
            "length({column}) = {OPE_STORED_LEN} AND substring({column} from {} for 2) = '\\x{magic}'::bytea",
            OPE_STORED_LEN - HEADER_LEN + 1
        ),
        (Storage::Binary, _) => {
            format!("substring({column} from 1 for 2) = '\\x{magic}'::bytea")
        }
        (Storage::Text, Mode::OrderPreserving) => {
            format!("{column} ~ '^[0-9a-f]{{{}}}$'", 2 * OPE_STORED_LEN)
        }
        (Storage::Text, _) => format!("{column} LIKE '{}%'", base64_prefix()),
    };
    format!("{column} IS NULL OR ({condition})")
}

/// The base64 characters every text envelope starts with: the six bits of each of the first
/// three characters come from the magic byte, the format version and the top bits of the
/// algorithm byte (zero for every algorithm number below 64).
pub(super) fn base64_prefix() -> String {
    use base64::Engine as _;
    let text = base64::engine::general_purpose::STANDARD.encode([MAGIC, FORMAT_VERSION, 0]);
    text[..3].to_string()
}

/// `(k, s, o), …` rows of literals.
fn values(rows: &[(String, String, String)]) -> String {
    let mut out = String::with_capacity(rows.len() * 160);
    for (i, (key, new, original)) in rows.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('(');
        out.push_str(&literal(key));
        out.push_str(", ");
        out.push_str(new);
        out.push_str(", ");
        out.push_str(&literal(original));
        out.push(')');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(literal("it's"), "'it''s'");
        assert_eq!(literal("\\x00"), "'\\x00'");
    }

    #[test]
    fn helper_names_fit_identifiers_and_stay_distinct() {
        let n = Names::new("public", "customers", "id_card", "id", "integer");
        assert_eq!(n.table, "\"public\".\"customers\"");
        assert_eq!(n.shadow, "\"id_card__warden\"");
        assert_eq!(n.trigger, "\"warden_mig_id_card\"");
        assert_eq!(n.function, "\"public\".\"warden_mig_customers_id_card\"");
        assert_eq!(n.constraint, "\"warden_enc_id_card\"");
        let long = "x".repeat(63);
        let n = Names::new("public", &long, &long, "id", "integer");
        assert!(n.shadow_name.len() <= MAX_IDENT);
        assert!(n.shadow_name.ends_with("__warden"));
        assert_ne!(n.shadow_name, long);
        let other = Names::new(
            "public",
            &long,
            &format!("{}y", &long[..62]),
            "id",
            "integer",
        );
        assert_ne!(n.shadow_name, other.shadow_name);
        assert_ne!(n.function, other.function);
        let multibyte = "é".repeat(40);
        let n = Names::new("public", "t", &multibyte, "id", "integer");
        assert!(n.shadow_name.len() <= MAX_IDENT);
    }

    #[test]
    fn statements_quote_what_they_splice() {
        let n = Names::new("public", "t", "c", "id", "bigint");
        assert_eq!(
            n.select_missing(Some("4'2"), 10),
            "SELECT t.\"id\"::text AS k, t.\"c\"::text AS v FROM \"public\".\"t\" AS t WHERE t.\"id\" > '4''2'::bigint AND \
             t.\"c\" IS NOT NULL AND t.\"c__warden\" IS NULL ORDER BY t.\"id\" LIMIT 10"
        );
        let rows = vec![(
            "1".to_string(),
            "'\\x57'::bytea".to_string(),
            "a'b".to_string(),
        )];
        assert_eq!(
            n.update_shadow("bytea", &rows),
            "UPDATE \"public\".\"t\" AS t SET \"c__warden\" = v.s::bytea FROM (VALUES ('1', '\\x57'::bytea, 'a''b')) \
             AS v(k, s, o) WHERE t.\"id\" = v.k::bigint AND t.\"c\"::text IS NOT DISTINCT FROM v.o \
             AND t.\"id\" BETWEEN '1'::bigint AND '1'::bigint"
        );
        let swap = n.swap("bytea", false, Some("\"c\" IS NULL"));
        assert!(swap.starts_with("DROP TRIGGER IF EXISTS \"warden_mig_c\" ON \"public\".\"t\"; "));
        assert!(swap.ends_with(
            "ALTER TABLE \"public\".\"t\" ALTER COLUMN \"c\" TYPE bytea USING \"c__warden\", \
             DROP COLUMN \"c__warden\", ADD CONSTRAINT \"warden_enc_c\" CHECK (\"c\" IS NULL)"
        ));
    }

    #[test]
    fn envelope_checks_follow_the_format() {
        assert_eq!(
            envelope_check("\"c\"", Mode::Deterministic, Storage::Binary),
            "\"c\" IS NULL OR (substring(\"c\" from 1 for 2) = '\\x5701'::bytea)"
        );
        assert_eq!(
            envelope_check("\"c\"", Mode::OrderPreserving, Storage::Binary),
            "\"c\" IS NULL OR (length(\"c\") = 28 AND substring(\"c\" from 17 for 2) = '\\x5701'::bytea)"
        );
        assert_eq!(
            envelope_check("\"c\"", Mode::Randomized, Storage::Text),
            "\"c\" IS NULL OR (\"c\" LIKE 'VwE%')"
        );
        assert_eq!(
            envelope_check("\"c\"", Mode::OrderPreserving, Storage::Text),
            "\"c\" IS NULL OR (\"c\" ~ '^[0-9a-f]{56}$')"
        );
    }

    #[test]
    fn stale_filters_read_the_version_where_the_envelope_has_it() {
        let n = Names::new("public", "t", "c", "id", "int");
        let f = |mode, storage| n.count_stale(mode, storage, 2);
        assert!(
            f(Mode::Deterministic, Storage::Binary)
                .contains("substring(\"c\" from 9 for 4) IS DISTINCT FROM '\\x00000002'::bytea")
        );
        assert!(
            f(Mode::OrderPreserving, Storage::Binary)
                .contains("substring(\"c\" from 25 for 4) IS DISTINCT FROM '\\x00000002'::bytea")
        );
        assert!(
            f(Mode::OrderPreserving, Storage::Text)
                .contains("substring(\"c\" from 49 for 8) IS DISTINCT FROM '00000002'")
        );
        assert!(f(Mode::Randomized, Storage::Text).contains(
            "substring(decode(\"c\", 'base64') from 9 for 4) IS DISTINCT FROM '\\x00000002'::bytea"
        ));
    }
}
