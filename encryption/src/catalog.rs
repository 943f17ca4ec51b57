//! The live catalog: the tables that hold protected columns, as the database has them now.
//!
//! Loaded by the proxy at startup, on reload and on a timer, through its service login (the
//! queries are [`Catalog::pg_columns_sql`] and [`Catalog::pg_constraints_sql`]). It validates the
//! policy against the schema (a missing column or a wrong type is an error naming the column)
//! and records, per protected column, whether it holds ciphertext yet:
//!
//! - `bytea` storage: the column's type is `bytea` → encrypted; the logical type → plaintext,
//!   waiting for `warden encrypt`;
//! - `text` storage: the type is text either way; the column is encrypted once it carries the
//!   check constraint `warden_enc_<column>` that `warden encrypt` adds (it also stops a stale
//!   proxy, or a direct client, from writing plaintext into the column).
//!
//! It also gives the planner each table's column order (for `INSERT` without a column list and
//! `SELECT *`) and maps a result column's origin (table OID, attribute number) to its policy.

mod mysql;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use warden_crypto::ColumnKey;

use crate::cipher::ColumnCrypto;
use crate::logical::LogicalType;
use crate::policy::{ColumnPolicy, EncryptionPolicy, Storage};

/// PostgreSQL's `bytea` type OID.
pub const BYTEA_OID: u32 = 17;

/// Whether a protected column holds ciphertext yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnState {
    /// Still the plaintext type: statements pass untouched until `warden encrypt` runs.
    Plaintext,
    /// Holds ciphertext: values are encrypted on the way in and decrypted on the way out.
    Encrypted,
}

/// One column of a catalog table.
#[derive(Debug, Clone)]
pub struct CatalogColumn {
    pub name: String,
    pub attnum: i16,
    pub type_oid: u32,
    /// The type as `format_type` prints it.
    pub type_name: String,
    /// Set for protected columns.
    pub protection: Option<Protection>,
}

/// A protected column's policy, keys and state.
#[derive(Debug, Clone)]
pub struct Protection {
    pub crypto: Arc<ColumnCrypto>,
    pub state: ColumnState,
}

impl Protection {
    /// The protection of `declared` in `state`, with its key from the keyring; the error
    /// names the column and what is wrong.
    pub(crate) fn new(
        declared: &ColumnPolicy,
        state: ColumnState,
        keys: &BTreeMap<String, Arc<ColumnKey>>,
    ) -> Result<Protection, String> {
        let key = keys.get(&declared.key).ok_or_else(|| {
            format!(
                "{}: key {:?} is not in the keyring",
                declared.qualified(),
                declared.key
            )
        })?;
        let crypto = ColumnCrypto::new(Arc::new(declared.clone()), Arc::clone(key))
            .map_err(|e| e.to_string())?;
        Ok(Protection {
            crypto: Arc::new(crypto),
            state,
        })
    }
}

impl CatalogColumn {
    /// The column's crypto when it holds ciphertext.
    pub fn encrypted(&self) -> Option<&Arc<ColumnCrypto>> {
        self.protection
            .as_ref()
            .filter(|p| p.state == ColumnState::Encrypted)
            .map(|p| &p.crypto)
    }
}

/// A table with at least one protected column, or a view that returns one (a view's protected
/// columns are those whose definition returns a protected column as stored).
#[derive(Debug, Clone)]
pub struct CatalogTable {
    pub oid: u32,
    pub schema: String,
    pub name: String,
    /// In attribute order, dropped columns left out.
    pub columns: Vec<CatalogColumn>,
}

/// The suffix of the shadow column `warden encrypt` / `decrypt` fill before the swap.
pub const SHADOW_SUFFIX: &str = "__warden";

impl CatalogTable {
    /// Whether a column is the shadow of a protected column during a migration: warden's
    /// own, hidden from the application (left out of `*`, of results and of INSERT targets).
    pub fn is_shadow(&self, column: &CatalogColumn) -> bool {
        column.name.strip_suffix(SHADOW_SUFFIX).is_some_and(|base| {
            self.columns
                .iter()
                .any(|c| c.name == base && c.protection.is_some())
        })
    }

    /// The columns the application sees: all but migration shadows.
    pub fn visible_columns(&self) -> impl Iterator<Item = &CatalogColumn> {
        self.columns.iter().filter(|c| !self.is_shadow(c))
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&CatalogColumn> {
        self.columns.iter().find(|c| c.name == name).or_else(|| {
            self.columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
        })
    }

    /// Whether any column holds ciphertext.
    pub fn has_encrypted(&self) -> bool {
        self.columns.iter().any(|c| c.encrypted().is_some())
    }
}

/// The catalog of one database.
#[derive(Debug, Default, Clone)]
pub struct Catalog {
    tables: Vec<CatalogTable>,
    by_oid: HashMap<u32, usize>,
    /// Schemas searched for unqualified table names, in order.
    search_path: Vec<String>,
    /// Changes whenever the catalog is rebuilt with a different content; part of plan keys.
    pub generation: u64,
    /// The keyring ids of the protected columns' keys (what `looks_encrypted` matches).
    key_ids: Vec<u32>,
    /// Some protected column is stored as text.
    text_storage: bool,
}

/// A validation problem: the policy does not fit the live schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogProblem {
    /// The policy file line of the column concerned.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CatalogProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "policy line {}: {}", self.line, self.message)
    }
}

fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Whether a live type can hold `logical`'s plaintext (the column before `warden encrypt`).
fn holds_plaintext_of(type_name: &str, logical: &LogicalType) -> bool {
    match LogicalType::parse(type_name) {
        Ok(live) => live.canonical_class() == logical.canonical_class(),
        Err(_) => false,
    }
}

fn is_text_type(type_name: &str) -> bool {
    type_name == "text" || type_name.starts_with("character varying")
}

impl Catalog {
    /// The query listing every column of the policy's tables: `oid, schema, table, attnum,
    /// name, type oid, type name`, one row each, in attribute order.
    pub fn pg_columns_sql(policy: &EncryptionPolicy) -> String {
        let tables: Vec<String> = policy
            .tables()
            .iter()
            .map(|(s, t)| format!("({}, {})", sql_string(s), sql_string(t)))
            .collect();
        format!(
            "SELECT c.oid, n.nspname, c.relname, a.attnum, a.attname, a.atttypid, \
             pg_catalog.format_type(a.atttypid, a.atttypmod) \
             FROM pg_catalog.pg_attribute a \
             JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p') \
             AND (n.nspname, c.relname) IN ({}) ORDER BY c.oid, a.attnum",
            if tables.is_empty() {
                "(NULL, NULL)".to_string()
            } else {
                tables.join(", ")
            }
        )
    }

    /// The query listing warden's check constraints: `schema, table, constraint name`.
    pub fn pg_constraints_sql() -> &'static str {
        "SELECT n.nspname, c.relname, con.conname FROM pg_catalog.pg_constraint con \
         JOIN pg_catalog.pg_class c ON c.oid = con.conrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE con.contype = 'c' AND con.conname LIKE 'warden\\_enc\\_%'"
    }

    /// The name of the constraint `warden encrypt` puts on an encrypted column.
    pub fn constraint_name(column: &str) -> String {
        let mut name = format!("warden_enc_{column}");
        // PostgreSQL truncates identifiers to 63 bytes.
        while name.len() > 63 {
            name.pop();
        }
        name
    }

    /// Builds the catalog from the rows of the two queries (text values), checking the policy
    /// against it. `keys` are the keyring's column keys by name.
    pub fn from_pg_rows(
        policy: &EncryptionPolicy,
        keys: &BTreeMap<String, Arc<ColumnKey>>,
        column_rows: &[Vec<Option<String>>],
        constraint_rows: &[Vec<Option<String>>],
        search_path: Vec<String>,
    ) -> Result<Catalog, Vec<CatalogProblem>> {
        let mut tables: Vec<CatalogTable> = Vec::new();
        for row in column_rows {
            let field = |i: usize| row.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let oid: u32 = field(0).parse().unwrap_or(0);
            if tables.last().is_none_or(|t| t.oid != oid) {
                tables.push(CatalogTable {
                    oid,
                    schema: field(1).to_string(),
                    name: field(2).to_string(),
                    columns: Vec::new(),
                });
            }
            let table = tables.last_mut().expect("pushed above");
            table.columns.push(CatalogColumn {
                attnum: field(3).parse().unwrap_or(0),
                name: field(4).to_string(),
                type_oid: field(5).parse().unwrap_or(0),
                type_name: field(6).to_string(),
                protection: None,
            });
        }
        let constraints: Vec<(String, String, String)> = constraint_rows
            .iter()
            .map(|r| {
                let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                (f(0), f(1), f(2))
            })
            .collect();
        let mut problems = Vec::new();
        for declared in &policy.columns {
            let problem = |message: String| CatalogProblem {
                line: declared.line,
                message,
            };
            let Some(table) = tables
                .iter_mut()
                .find(|t| t.schema == declared.schema && t.name == declared.table)
            else {
                problems.push(problem(format!(
                    "table {}.{} (of encrypted column {}) does not exist",
                    declared.schema,
                    declared.table,
                    declared.qualified()
                )));
                continue;
            };
            let Some(column) = table.columns.iter_mut().find(|c| c.name == declared.column) else {
                problems.push(problem(format!(
                    "column {} does not exist",
                    declared.qualified()
                )));
                continue;
            };
            let has_constraint = constraints.iter().any(|(s, t, c)| {
                *s == declared.schema
                    && *t == declared.table
                    && *c == Catalog::constraint_name(&declared.column)
            });
            let state = match declared.storage {
                Storage::Binary if column.type_oid == BYTEA_OID => ColumnState::Encrypted,
                Storage::Binary if holds_plaintext_of(&column.type_name, &declared.logical) => {
                    ColumnState::Plaintext
                }
                Storage::Text if is_text_type(&column.type_name) && has_constraint => {
                    ColumnState::Encrypted
                }
                Storage::Text if holds_plaintext_of(&column.type_name, &declared.logical) => {
                    ColumnState::Plaintext
                }
                _ => {
                    problems.push(problem(format!(
                        "column {} is {}: it must be {} (encrypted) or hold {} plaintext (before `warden encrypt`)",
                        declared.qualified(),
                        column.type_name,
                        match declared.storage {
                            Storage::Binary => "bytea",
                            Storage::Text => "text with warden's check constraint",
                        },
                        declared.logical.sql_name()
                    )));
                    continue;
                }
            };
            match Protection::new(declared, state, keys) {
                Ok(p) => column.protection = Some(p),
                Err(message) => problems.push(problem(message)),
            }
        }
        Catalog::checked(tables, search_path, problems)
    }

    /// The catalog of checked `tables`, or every problem found while checking them.
    pub(crate) fn checked(
        tables: Vec<CatalogTable>,
        search_path: Vec<String>,
        problems: Vec<CatalogProblem>,
    ) -> Result<Catalog, Vec<CatalogProblem>> {
        if !problems.is_empty() {
            return Err(problems);
        }
        let by_oid = tables.iter().enumerate().map(|(i, t)| (t.oid, i)).collect();
        let mut catalog = Catalog {
            tables,
            by_oid,
            search_path,
            ..Catalog::default()
        };
        catalog.index();
        Ok(catalog)
    }

    /// The query listing the views that read a table with protected columns: `oid, schema,
    /// name, definition, column names` (separated by U+001F). `None` when no table is known.
    pub fn pg_views_sql(&self) -> Option<String> {
        if self.tables.is_empty() {
            return None;
        }
        let oids: Vec<String> = self.tables.iter().map(|t| t.oid.to_string()).collect();
        Some(format!(
            "SELECT DISTINCT v.oid, n.nspname, v.relname, pg_catalog.pg_get_viewdef(v.oid), \
             (SELECT pg_catalog.string_agg(a.attname, chr(31) ORDER BY a.attnum) \
              FROM pg_catalog.pg_attribute a WHERE a.attrelid = v.oid AND a.attnum > 0 \
              AND NOT a.attisdropped) \
             FROM pg_catalog.pg_depend d \
             JOIN pg_catalog.pg_rewrite r ON r.oid = d.objid \
             JOIN pg_catalog.pg_class v ON v.oid = r.ev_class \
             JOIN pg_catalog.pg_namespace n ON n.oid = v.relnamespace \
             WHERE d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass \
             AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass \
             AND v.relkind IN ('v', 'm') AND d.refobjid IN ({})",
            oids.join(", ")
        ))
    }

    /// Adds the views of [`Catalog::pg_views_sql`]'s rows: each definition is planned like a
    /// query, and the view columns that return a protected column as stored are recorded, so
    /// rows read through the view are decrypted like rows read from the table.
    pub fn with_views(self, rows: &[Vec<Option<String>>]) -> Catalog {
        self.with_views_in(rows, warden_analysis::Dialect::PostgreSql)
    }

    /// [`Catalog::with_views`] for view definitions written in `dialect` (MySQL's
    /// `information_schema.VIEWS`, with synthetic OIDs in the first field).
    pub fn with_views_in(
        mut self,
        rows: &[Vec<Option<String>>],
        dialect: warden_analysis::Dialect,
    ) -> Catalog {
        let planner = crate::planner::Planner::with_dialect(Arc::new(self.clone()), dialect);
        for row in rows {
            let field = |i: usize| row.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            let Ok(oid) = field(0).parse::<u32>() else {
                continue;
            };
            let plan = planner.plan(field(3), None);
            let outputs = plan.outputs.first().cloned().unwrap_or_default();
            let columns: Vec<CatalogColumn> = field(4)
                .split('\u{1f}')
                .enumerate()
                .map(|(i, name)| {
                    let crypto = outputs.get(i).cloned().flatten();
                    CatalogColumn {
                        name: name.to_string(),
                        attnum: i as i16 + 1,
                        type_oid: if crypto.is_some() { BYTEA_OID } else { 0 },
                        type_name: String::new(),
                        protection: crypto.map(|crypto| Protection {
                            crypto,
                            state: ColumnState::Encrypted,
                        }),
                    }
                })
                .collect();
            if columns.iter().any(|c| c.protection.is_some()) {
                self.by_oid.insert(oid, self.tables.len());
                self.tables.push(CatalogTable {
                    oid,
                    schema: field(1).to_string(),
                    name: field(2).to_string(),
                    columns,
                });
            }
        }
        self.index();
        self
    }

    /// Recomputes what is derived from the tables: the generation, the key ids and whether
    /// some column is stored as text (read per result value, so not walked each time).
    fn index(&mut self) {
        self.generation = fingerprint(&self.tables);
        let protections = || {
            self.tables
                .iter()
                .flat_map(|t| &t.columns)
                .filter_map(|c| c.protection.as_ref())
        };
        let mut ids: Vec<u32> = protections().map(|p| p.crypto.key_id()).collect();
        ids.sort_unstable();
        ids.dedup();
        self.text_storage = protections().any(|p| p.crypto.storage() == Storage::Text);
        self.key_ids = ids;
    }

    /// Every table.
    pub fn tables(&self) -> &[CatalogTable] {
        &self.tables
    }

    /// The table with this OID.
    pub fn by_oid(&self, oid: u32) -> Option<&CatalogTable> {
        self.by_oid.get(&oid).map(|&i| &self.tables[i])
    }

    /// The protected column at a result column's origin. A `bytea`-stored column is returned
    /// whatever its recorded state, so one that became ciphertext since the catalog was read
    /// is still recognised (by its `bytea` type in the result); a text-stored one only once
    /// it is recorded as encrypted.
    pub fn protected_at(&self, table_oid: u32, attnum: i16) -> Option<Arc<ColumnCrypto>> {
        self.by_oid(table_oid)?
            .columns
            .iter()
            .find(|c| c.attnum == attnum)?
            .protection
            .as_ref()
            .filter(|p| p.state == ColumnState::Encrypted || p.crypto.storage() == Storage::Binary)
            .map(|p| Arc::clone(&p.crypto))
    }

    /// Whether a result column's origin is a migration shadow column (hidden from clients).
    pub fn is_shadow_at(&self, table_oid: u32, attnum: i16) -> bool {
        self.by_oid(table_oid).is_some_and(|t| {
            t.columns
                .iter()
                .find(|c| c.attnum == attnum)
                .is_some_and(|c| t.is_shadow(c))
        })
    }

    /// Resolves a table name as written (`[schema.]table`, already case-folded): a qualified
    /// name exactly, an unqualified one through the search path.
    pub fn resolve(&self, schema: Option<&str>, table: &str) -> Option<&CatalogTable> {
        match schema {
            Some(s) => self
                .tables
                .iter()
                .find(|t| t.schema == s && t.name == table),
            None => self.search_path.iter().find_map(|s| {
                self.tables
                    .iter()
                    .find(|t| t.schema == *s && t.name == table)
            }),
        }
    }

    /// Whether any column holds ciphertext.
    pub fn has_encrypted(&self) -> bool {
        self.tables.iter().any(CatalogTable::has_encrypted)
    }

    /// Whether `value` looks like a stored value of one of this catalog's keys: an envelope
    /// header (or, for order-preserving values, trailer) naming a known key, as bytes or in
    /// the text storage form (base64, or hex for order-preserving values). Used to withhold
    /// ciphertext that reaches a result where warden cannot tell which column it came from.
    pub fn looks_encrypted(&self, value: &[u8]) -> bool {
        let header = |h: &[u8]| -> bool {
            h.len() >= 8
                && h[0] == 0x57
                && h[1] == 0x01
                && matches!(h[2], 1 | 2)
                && matches!(h[3], 1..=3)
                && self
                    .key_ids
                    .binary_search(&u32::from_be_bytes([h[4], h[5], h[6], h[7]]))
                    .is_ok()
        };
        if header(value) || (value.len() == 28 && header(&value[16..])) {
            return true;
        }
        // Text storage: base64 of an envelope starts with "VwE"; an order-preserving value is
        // 56 lowercase hex digits.
        use base64::Engine as _;
        if value.len() >= 16 && value.starts_with(b"VwE") {
            let prefix = base64::engine::general_purpose::STANDARD.decode(&value[..16]);
            return prefix.is_ok_and(|p| header(&p));
        }
        if value.len() == 56 && value.iter().all(|b| b.is_ascii_hexdigit()) {
            return hex::decode(value).is_ok_and(|raw| header(&raw[16..]));
        }
        false
    }

    /// Whether some protected column is stored as text (so text results may need probing).
    pub fn has_text_storage(&self) -> bool {
        self.text_storage
    }
}

/// A hash of what the planner depends on: tables, columns, types and states.
fn fingerprint(tables: &[CatalogTable]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in tables {
        (t.oid, &t.schema, &t.name).hash(&mut h);
        for c in &t.columns {
            (&c.name, c.attnum, c.type_oid).hash(&mut h);
            if let Some(p) = &c.protection {
                (p.state == ColumnState::Encrypted, p.crypto.column.line).hash(&mut h);
            }
        }
    }
    h.finish()
}
