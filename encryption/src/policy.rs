//! The encryption policy: which columns are protected, and how.
//!
//! Read from the `[[encrypt]]` tables of a policy file:
//!
//! ```toml
//! [[encrypt]]
//! column = "public.customers.id_card"   # schema.table.column (schema defaults to public)
//! key = "customer-id"                   # a key in the keyring
//! algorithm = "sm4"                     # sm4 | aes-256 — must be the key's
//! mode = "deterministic"                # randomized | deterministic | ope — must be the key's
//! type = "varchar(18)"                  # what the application reads and writes
//! storage = "bytea"                     # bytea (VARBINARY) | text (base64 / hex)
//! domain = "customer-id"                # optional: columns that join share a domain
//!
//! [[encrypt]]
//! table = "public.payroll"              # every column listed in `columns`, same settings
//! columns = { salary = "numeric(12,2)", bonus = "numeric(12,2)" }
//! key = "payroll"
//! algorithm = "sm4"
//! mode = "ope"
//! ```
//!
//! Every problem is reported with its line, and all of them at once.

use std::collections::BTreeMap;
use std::fmt;

use warden_crypto::{Algorithm, KeyDomain, Mode};

use crate::logical::LogicalType;

/// How ciphertext is stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Storage {
    /// `bytea` (PostgreSQL) / `VARBINARY` / `BLOB` (MySQL): the envelope's bytes.
    Binary,
    /// A text column: base64 of the envelope (lowercase hex for order-preserving values).
    Text,
}

impl Storage {
    /// The name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Storage::Binary => "bytea",
            Storage::Text => "text",
        }
    }
}

/// One protected column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnPolicy {
    pub schema: String,
    pub table: String,
    pub column: String,
    /// The keyring key's name.
    pub key: String,
    pub algorithm: Algorithm,
    pub mode: Mode,
    /// The type the application sees.
    pub logical: LogicalType,
    pub storage: Storage,
    /// What the ciphertexts are bound to (default `schema.table.column`).
    pub domain: KeyDomain,
    /// Line of the declaration in the policy file, for messages.
    pub line: usize,
}

impl ColumnPolicy {
    /// `schema.table.column`.
    pub fn qualified(&self) -> String {
        format!("{}.{}.{}", self.schema, self.table, self.column)
    }

    /// A short name for messages: `table.column`.
    pub fn display_name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }
}

/// Every protected column of one database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncryptionPolicy {
    pub columns: Vec<ColumnPolicy>,
}

/// A problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    /// 1-based line, 0 when unknown.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            f.write_str(&self.message)
        }
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileEntry {
    column: Option<toml::Spanned<String>>,
    table: Option<toml::Spanned<String>>,
    columns: Option<toml::Spanned<BTreeMap<String, String>>>,
    key: toml::Spanned<String>,
    algorithm: toml::Spanned<String>,
    mode: toml::Spanned<String>,
    #[serde(rename = "type")]
    logical: Option<toml::Spanned<String>>,
    storage: Option<toml::Spanned<String>>,
    domain: Option<toml::Spanned<String>>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    encrypt: Vec<toml::Spanned<FileEntry>>,
}

/// Splits `schema.table[.column]` (parts may be double-quoted); the schema defaults to `public`.
fn split_name(name: &str, parts_wanted: usize) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut rest = name.trim();
    while !rest.is_empty() {
        let (part, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| format!("unterminated quote in {name:?}"))?;
            (quoted[..end].to_string(), &quoted[end + 1..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            (rest[..end].trim().to_lowercase(), &rest[end..])
        };
        if part.is_empty() {
            return Err(format!("empty name part in {name:?}"));
        }
        parts.push(part);
        rest = match after.strip_prefix('.') {
            Some(r) if !r.is_empty() => r,
            Some(_) => return Err(format!("{name:?} ends with a dot")),
            None if after.is_empty() => "",
            None => return Err(format!("unexpected text after a quoted name in {name:?}")),
        };
    }
    if parts.len() == parts_wanted - 1 {
        parts.insert(0, "public".to_string());
    }
    if parts.len() != parts_wanted {
        let form = if parts_wanted == 3 {
            "schema.table.column or table.column"
        } else {
            "schema.table or table"
        };
        return Err(format!("{name:?} is not a {form} name"));
    }
    Ok(parts)
}

fn parse_mode(name: &str) -> Result<Mode, String> {
    match name {
        "ope" | "order-preserving" => Ok(Mode::OrderPreserving),
        other => other.parse::<Mode>().map_err(|e| e.to_string()),
    }
}

impl EncryptionPolicy {
    /// Parses a policy file's text. All problems are returned, each with its line.
    pub fn parse(text: &str) -> Result<Self, Vec<PolicyError>> {
        let file: File = toml::from_str(text).map_err(|e| {
            vec![PolicyError {
                line: e.span().map_or(0, |s| line_of(text, s.start)),
                message: e.message().trim_end().to_string(),
            }]
        })?;
        let mut errors = Vec::new();
        let mut columns: Vec<ColumnPolicy> = Vec::new();
        for entry in file.encrypt {
            let entry_line = line_of(text, entry.span().start);
            let entry = entry.into_inner();
            let mut err = |span: std::ops::Range<usize>, message: String| {
                errors.push(PolicyError {
                    line: line_of(text, span.start),
                    message,
                });
            };
            let algorithm = match entry.algorithm.get_ref().parse::<Algorithm>() {
                Ok(a) => Some(a),
                Err(e) => {
                    err(entry.algorithm.span(), e.to_string());
                    None
                }
            };
            let mode = match parse_mode(entry.mode.get_ref()) {
                Ok(Mode::FormatPreserving) => {
                    err(
                        entry.mode.span(),
                        "format-preserving (FF1) tokens are a masking rule, not a column encryption mode; use randomized, deterministic or ope".into(),
                    );
                    None
                }
                Ok(m) => Some(m),
                Err(e) => {
                    err(entry.mode.span(), e);
                    None
                }
            };
            let storage = match entry.storage.as_ref().map(|s| s.get_ref().as_str()) {
                None | Some("bytea") | Some("binary") | Some("varbinary") => Some(Storage::Binary),
                Some("text") => Some(Storage::Text),
                Some(other) => {
                    err(
                        entry.storage.as_ref().expect("some").span(),
                        format!("unknown storage {other:?}; expected bytea or text"),
                    );
                    None
                }
            };
            // (schema, table, column, type text, span of the type)
            let mut targets: Vec<(String, String, String, String, std::ops::Range<usize>)> =
                Vec::new();
            match (&entry.column, &entry.table, &entry.columns) {
                (Some(column), None, None) => match split_name(column.get_ref(), 3) {
                    Ok(p) => match &entry.logical {
                        Some(t) => targets.push((
                            p[0].clone(),
                            p[1].clone(),
                            p[2].clone(),
                            t.get_ref().clone(),
                            t.span(),
                        )),
                        None => err(
                            column.span(),
                            format!(
                                "{:?} needs `type`: the type the application reads and writes (e.g. \"varchar(18)\", \"bigint\", \"numeric(12,2)\", \"date\")",
                                column.get_ref()
                            ),
                        ),
                    },
                    Err(e) => err(column.span(), e),
                },
                (None, Some(table), Some(list)) => {
                    if entry.logical.is_some() {
                        err(
                            table.span(),
                            "a whole-table entry gives each column's type in `columns`, not `type`"
                                .into(),
                        );
                    }
                    match split_name(table.get_ref(), 2) {
                        Ok(p) => {
                            if list.get_ref().is_empty() {
                                err(list.span(), "`columns` is empty".into());
                            }
                            for (c, t) in list.get_ref() {
                                targets.push((
                                    p[0].clone(),
                                    p[1].clone(),
                                    c.to_lowercase(),
                                    t.clone(),
                                    list.span(),
                                ));
                            }
                        }
                        Err(e) => err(table.span(), e),
                    }
                }
                (None, Some(table), None) => err(
                    table.span(),
                    "a whole-table entry needs `columns = { name = \"type\", … }`".into(),
                ),
                _ => errors.push(PolicyError {
                    line: entry_line,
                    message:
                        "an [[encrypt]] entry names either `column`, or `table` with `columns`"
                            .into(),
                }),
            }
            for (schema, table, column, type_text, type_span) in targets {
                let logical = match LogicalType::parse(&type_text) {
                    Ok(t) => t,
                    Err(e) => {
                        errors.push(PolicyError {
                            line: line_of(text, type_span.start),
                            message: format!("{schema}.{table}.{column}: {e}"),
                        });
                        continue;
                    }
                };
                let (Some(algorithm), Some(mode), Some(storage)) = (algorithm, mode, storage)
                else {
                    continue;
                };
                if mode == Mode::OrderPreserving && logical.ordered_kind().is_none() {
                    errors.push(PolicyError {
                        line: line_of(text, entry.mode.span().start),
                        message: format!(
                            "{schema}.{table}.{column}: order-preserving encryption needs an integer, numeric, date or timestamp type, not {}",
                            logical.sql_name()
                        ),
                    });
                    continue;
                }
                let domain = match &entry.domain {
                    Some(d) => KeyDomain::new(d.get_ref().clone()),
                    None => KeyDomain::column(&schema, &table, &column),
                };
                let line = line_of(text, type_span.start);
                if let Some(previous) = columns
                    .iter()
                    .find(|c| c.schema == schema && c.table == table && c.column == column)
                {
                    errors.push(PolicyError {
                        line,
                        message: format!(
                            "{schema}.{table}.{column} is already declared on line {}",
                            previous.line
                        ),
                    });
                    continue;
                }
                columns.push(ColumnPolicy {
                    schema,
                    table,
                    column,
                    key: entry.key.get_ref().clone(),
                    algorithm,
                    mode,
                    logical,
                    storage,
                    domain,
                    line,
                });
            }
        }
        // Columns sharing a domain must agree on everything that makes their ciphertexts
        // comparable.
        for (i, a) in columns.iter().enumerate() {
            for b in &columns[..i] {
                if a.domain == b.domain
                    && (a.key != b.key
                        || a.mode != b.mode
                        || a.algorithm != b.algorithm
                        || a.logical.canonical_class() != b.logical.canonical_class()
                        || a.storage != b.storage)
                {
                    errors.push(PolicyError {
                        line: a.line,
                        message: format!(
                            "{} shares the domain {:?} with {} (line {}) but not the same key, mode, storage and kind of type; values in one domain must compare",
                            a.qualified(),
                            a.domain.name(),
                            b.qualified(),
                            b.line
                        ),
                    });
                }
            }
        }
        if errors.is_empty() {
            Ok(EncryptionPolicy { columns })
        } else {
            Err(errors)
        }
    }

    /// The policy of `schema.table.column`, if protected.
    pub fn column(&self, schema: &str, table: &str, column: &str) -> Option<&ColumnPolicy> {
        self.columns
            .iter()
            .find(|c| c.schema == schema && c.table == table && c.column == column)
    }

    /// Every table with a protected column, as `(schema, table)`, without duplicates.
    pub fn tables(&self) -> Vec<(String, String)> {
        let mut t: Vec<(String, String)> = self
            .columns
            .iter()
            .map(|c| (c.schema.clone(), c.table.clone()))
            .collect();
        t.sort();
        t.dedup();
        t
    }
}
