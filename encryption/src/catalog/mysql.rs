//! The catalog of a MySQL / MariaDB server, from `information_schema`.
//!
//! MySQL has no OIDs: tables are known by `(schema, table)` names (a schema is a database) and
//! columns by name (case-insensitive, stored lowercased here), and a result column's origin is
//! the `(schema, org_table, org_name)` of its column definition ([`Catalog::mysql_origin`]).
//! A protected column holds ciphertext when:
//!
//! - binary storage: its `DATA_TYPE` is `varbinary`, `binary` or a `blob`;
//! - text storage: it is a character column carrying the check constraint
//!   `warden_enc_<column>` (in `information_schema.CHECK_CONSTRAINTS`).
//!
//! Unqualified table names resolve in the session's current database: the proxy gives each
//! database its own planner over [`Catalog::with_search_path`]`(vec![database])`.

use std::collections::BTreeMap;
use std::sync::Arc;

use warden_crypto::ColumnKey;

use super::{
    BYTEA_OID, Catalog, CatalogColumn, CatalogProblem, CatalogTable, ColumnState, Protection,
    holds_plaintext_of,
};
use crate::cipher::ColumnCrypto;
use crate::policy::{EncryptionPolicy, Storage};

/// A MySQL string literal (backslash escapes on, as in the service login's default mode).
fn mysql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

fn is_binary_type(data_type: &str) -> bool {
    matches!(
        data_type,
        "varbinary" | "binary" | "tinyblob" | "blob" | "mediumblob" | "longblob"
    )
}

fn is_character_type(data_type: &str) -> bool {
    matches!(
        data_type,
        "varchar" | "char" | "tinytext" | "text" | "mediumtext" | "longtext"
    )
}

impl Catalog {
    /// The query listing every column of the policy's tables: `schema, table, position, name,
    /// DATA_TYPE, COLUMN_TYPE`, in column order.
    pub fn mysql_columns_sql(policy: &EncryptionPolicy) -> String {
        let tables: Vec<String> = policy
            .tables()
            .iter()
            .map(|(s, t)| format!("({}, {})", mysql_string(s), mysql_string(t)))
            .collect();
        format!(
            "SELECT TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE \
             FROM information_schema.COLUMNS WHERE (TABLE_SCHEMA, TABLE_NAME) IN ({}) \
             ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
            if tables.is_empty() {
                "(NULL, NULL)".to_string()
            } else {
                tables.join(", ")
            }
        )
    }

    /// The query listing warden's check constraints: `schema, table, constraint name`.
    pub fn mysql_constraints_sql() -> &'static str {
        "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CONSTRAINT_NAME \
         FROM information_schema.CHECK_CONSTRAINTS \
         WHERE CONSTRAINT_NAME LIKE 'warden\\_enc\\_%'"
    }

    /// Builds the catalog from the rows of the two MySQL queries, checking the policy against
    /// it. Table OIDs are synthetic (1, 2, … in query order): only names identify MySQL tables.
    pub fn from_mysql_rows(
        policy: &EncryptionPolicy,
        keys: &BTreeMap<String, Arc<ColumnKey>>,
        column_rows: &[Vec<Option<String>>],
        constraint_rows: &[Vec<Option<String>>],
        search_path: Vec<String>,
    ) -> Result<Catalog, Vec<CatalogProblem>> {
        let mut tables: Vec<CatalogTable> = Vec::new();
        // The data type of each column, by table index and column index.
        let mut data_types: Vec<Vec<String>> = Vec::new();
        for row in column_rows {
            let field = |i: usize| row.get(i).and_then(|v| v.as_deref()).unwrap_or("");
            if tables
                .last()
                .is_none_or(|t| t.schema != field(0) || t.name != field(1))
            {
                tables.push(CatalogTable {
                    oid: tables.len() as u32 + 1,
                    schema: field(0).to_string(),
                    name: field(1).to_string(),
                    columns: Vec::new(),
                });
                data_types.push(Vec::new());
            }
            let data_type = field(4).to_lowercase();
            let table = tables.last_mut().expect("pushed above");
            table.columns.push(CatalogColumn {
                attnum: field(2).parse().unwrap_or(0),
                name: field(3).to_lowercase(),
                type_oid: if is_binary_type(&data_type) {
                    BYTEA_OID
                } else {
                    0
                },
                type_name: field(5).to_lowercase(),
                protection: None,
            });
            data_types.last_mut().expect("pushed above").push(data_type);
        }
        let constraints: Vec<(String, String, String)> = constraint_rows
            .iter()
            .map(|r| {
                let f = |i: usize| r.get(i).cloned().flatten().unwrap_or_default();
                (f(0), f(1), f(2).to_lowercase())
            })
            .collect();
        let mut problems = Vec::new();
        for declared in &policy.columns {
            let problem = |message: String| CatalogProblem {
                line: declared.line,
                message,
            };
            let Some(ti) = tables
                .iter()
                .position(|t| t.schema == declared.schema && t.name == declared.table)
            else {
                problems.push(problem(format!(
                    "table {}.{} (of encrypted column {}) does not exist (MySQL policies name database.table.column)",
                    declared.schema,
                    declared.table,
                    declared.qualified()
                )));
                continue;
            };
            let Some(ci) = tables[ti]
                .columns
                .iter()
                .position(|c| c.name == declared.column.to_lowercase())
            else {
                problems.push(problem(format!(
                    "column {} does not exist",
                    declared.qualified()
                )));
                continue;
            };
            let data_type = data_types[ti][ci].as_str();
            let column = &mut tables[ti].columns[ci];
            let has_constraint = constraints.iter().any(|(s, t, c)| {
                *s == declared.schema
                    && *t == declared.table
                    && *c == Catalog::constraint_name(&declared.column.to_lowercase())
            });
            let plaintext = holds_plaintext_of(&column.type_name, &declared.logical)
                || holds_plaintext_of(data_type, &declared.logical);
            let state = match declared.storage {
                Storage::Binary if is_binary_type(data_type) => ColumnState::Encrypted,
                Storage::Text if is_character_type(data_type) && has_constraint => {
                    ColumnState::Encrypted
                }
                _ if plaintext => ColumnState::Plaintext,
                _ => {
                    problems.push(problem(format!(
                        "column {} is {}: it must be {} (encrypted) or hold {} plaintext (before `warden encrypt`)",
                        declared.qualified(),
                        column.type_name,
                        match declared.storage {
                            Storage::Binary => "VARBINARY or BLOB",
                            Storage::Text => "a character type with warden's check constraint",
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

    /// The query listing the views of the schemas holding protected tables: `schema, name,
    /// definition, column names` (separated by U+001F). `None` when no table is known.
    pub fn mysql_views_sql(&self) -> Option<String> {
        let mut schemas: Vec<String> = self
            .tables
            .iter()
            .map(|t| mysql_string(&t.schema))
            .collect();
        schemas.sort();
        schemas.dedup();
        if schemas.is_empty() {
            return None;
        }
        Some(format!(
            "SELECT v.TABLE_SCHEMA, v.TABLE_NAME, v.VIEW_DEFINITION, \
             (SELECT GROUP_CONCAT(c.COLUMN_NAME ORDER BY c.ORDINAL_POSITION SEPARATOR 0x1f) \
              FROM information_schema.COLUMNS c \
              WHERE c.TABLE_SCHEMA = v.TABLE_SCHEMA AND c.TABLE_NAME = v.TABLE_NAME) \
             FROM information_schema.VIEWS v WHERE v.TABLE_SCHEMA IN ({})",
            schemas.join(", ")
        ))
    }

    /// Adds the views of [`Catalog::mysql_views_sql`]'s rows (see [`Catalog::with_views`]);
    /// MariaDB names a view as the origin of its columns, so they are found by name.
    pub fn with_mysql_views(self, rows: &[Vec<Option<String>>]) -> Catalog {
        let first = self.tables.len() as u32 + 1_000_000;
        let rows: Vec<Vec<Option<String>>> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut row = vec![Some((first + i as u32).to_string())];
                row.extend(r.iter().cloned());
                row
            })
            .collect();
        self.with_views_in(&rows, warden_analysis::Dialect::MYSQL_DEFAULT)
    }

    /// The same catalog resolving unqualified table names through `search_path` (for MySQL,
    /// the session's current database).
    pub fn with_search_path(&self, search_path: Vec<String>) -> Catalog {
        Catalog {
            search_path,
            ..self.clone()
        }
    }

    /// The protected column at a MySQL result column's origin (`schema`, `org_table`,
    /// `org_name`). Like [`Catalog::protected_at`], a binary-stored column is returned whatever
    /// its recorded state (the caller checks the result column holds bytes); a text-stored one
    /// only once it is recorded as encrypted.
    pub fn mysql_origin(
        &self,
        schema: &str,
        table: &str,
        column: &str,
    ) -> Option<Arc<ColumnCrypto>> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == table)?
            .columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(column))?
            .protection
            .as_ref()
            .filter(|p| p.state == ColumnState::Encrypted || p.crypto.storage() == Storage::Binary)
            .map(|p| Arc::clone(&p.crypto))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden_crypto::{Algorithm, DataKey, KeyParams, Mode};

    fn keys() -> BTreeMap<String, Arc<ColumnKey>> {
        let data_key = DataKey::from_bytes([7; 32]);
        let mut keys = BTreeMap::new();
        for (name, mode) in [("id", Mode::Deterministic), ("pay", Mode::OrderPreserving)] {
            keys.insert(
                name.to_string(),
                Arc::new(
                    ColumnKey::new(
                        name,
                        1,
                        Algorithm::Sm4,
                        mode,
                        &KeyParams::default(),
                        [(1, &data_key)],
                        1,
                    )
                    .unwrap(),
                ),
            );
        }
        keys
    }

    const POLICY: &str = r#"
[[encrypt]]
column = "shop.people.id_card"
key = "id"
algorithm = "sm4"
mode = "deterministic"
type = "varchar(18)"

[[encrypt]]
column = "shop.people.pay"
key = "pay"
algorithm = "sm4"
mode = "ope"
type = "decimal(12,2)"
storage = "text"
"#;

    fn row(v: &[&str]) -> Vec<Option<String>> {
        v.iter().map(|s| Some(s.to_string())).collect()
    }

    #[test]
    fn states_come_from_types_and_constraints() {
        let policy = EncryptionPolicy::parse(POLICY).unwrap();
        let columns = vec![
            row(&["shop", "people", "1", "id", "bigint", "bigint(20)"]),
            row(&[
                "shop",
                "people",
                "2",
                "ID_CARD",
                "varbinary",
                "varbinary(255)",
            ]),
            row(&["shop", "people", "3", "pay", "text", "text"]),
        ];
        let constraints = vec![row(&["shop", "people", "warden_enc_pay"])];
        let c = Catalog::from_mysql_rows(
            &policy,
            &keys(),
            &columns,
            &constraints,
            vec!["shop".into()],
        )
        .unwrap();
        assert!(c.mysql_origin("shop", "people", "id_card").is_some());
        assert!(c.mysql_origin("shop", "people", "PAY").is_some());
        assert!(c.mysql_origin("shop", "people", "id").is_none());
        assert!(c.resolve(None, "people").unwrap().has_encrypted());
        let other = c.with_search_path(vec!["other".into()]);
        assert!(other.resolve(None, "people").is_none());
        // Without the constraint a TEXT column cannot be the decimal's plaintext either.
        let e = Catalog::from_mysql_rows(&policy, &keys(), &columns, &[], vec![]).unwrap_err();
        assert!(e[0].message.contains("check constraint"), "{e:?}");
        // A DECIMAL column is the plaintext before `warden encrypt`: not encrypted yet.
        let mut before = columns.clone();
        before[2] = row(&["shop", "people", "3", "pay", "decimal", "decimal(12,2)"]);
        let plain = Catalog::from_mysql_rows(&policy, &keys(), &before, &[], vec![]).unwrap();
        assert!(plain.mysql_origin("shop", "people", "pay").is_none());
        // A wrong type names the column and the policy line.
        let wrong = vec![
            row(&["shop", "people", "2", "id_card", "int", "int(11)"]),
            row(&["shop", "people", "3", "pay", "text", "text"]),
        ];
        let e =
            Catalog::from_mysql_rows(&policy, &keys(), &wrong, &constraints, vec![]).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].to_string()
                .starts_with("policy line 7: column shop.people.id_card is int(11)"),
            "{}",
            e[0]
        );
        let e = Catalog::from_mysql_rows(&policy, &keys(), &[], &[], vec![]).unwrap_err();
        assert_eq!(e.len(), 2);
        assert!(e[0].message.contains("does not exist"), "{e:?}");
    }

    #[test]
    fn queries_quote_names() {
        let policy = EncryptionPolicy::parse(POLICY).unwrap();
        let sql = Catalog::mysql_columns_sql(&policy);
        assert!(sql.contains("IN (('shop', 'people'))"), "{sql}");
        assert_eq!(mysql_string("a'b\\"), "'a''b\\\\'");
    }
}
