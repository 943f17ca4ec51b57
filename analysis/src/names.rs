//! Table and column names as the database resolves them.
//!
//! Policies name objects (`public.citizen.id_card`), statements spell them in many ways
//! (`CITIZEN`, `"citizen"`, `` `Citizen` ``). Every name recorded in the facts goes through
//! [`normalize`], which applies the dialect's folding rules:
//!
//! - PostgreSQL folds unquoted identifiers to lower case (ASCII letters only, as the server does
//!   for UTF-8 databases) and keeps quoted ones exactly;
//! - MySQL compares column names case-insensitively and, depending on `lower_case_table_names`
//!   and the file system, table names too; Warden folds every MySQL identifier to lower case so
//!   that a policy on `citizen` also covers `Citizen` (erring towards covering more).
//!
//! This is also where the cache invariant (see `template.rs`) is enforced for names: sqlparser
//! turns some string literals into identifiers (`SELECT a 'alias'`, `FROM 'x'`, MySQL
//! `SELECT a "alias"`), and such a name is literal content. [`normalize`] returns `None` for it,
//! and callers record an opaque marker instead of its text.

use std::fmt;

use sqlparser::ast::{Ident, ObjectName, ObjectNamePart};

use crate::dialect::Dialect;

/// A schema-qualified table (or view, sequence, …) name, normalised, as written: `citizen`,
/// `public.citizen`, `db.public.citizen`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(into = "String")]
pub struct TableName {
    parts: Vec<String>,
}

impl TableName {
    /// A name from already-normalised parts (outermost qualifier first).
    /// Returns `None` when `parts` is empty.
    pub fn from_parts<I, S>(parts: I) -> Option<TableName>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let parts: Vec<String> = parts.into_iter().map(Into::into).collect();
        (!parts.is_empty()).then_some(TableName { parts })
    }

    /// The unqualified object name (`citizen` for `public.citizen`).
    pub fn name(&self) -> &str {
        self.parts.last().map_or("", String::as_str)
    }

    /// The schema (PostgreSQL) or database (MySQL) qualifier, if written.
    pub fn schema(&self) -> Option<&str> {
        let n = self.parts.len();
        (n >= 2)
            .then(|| self.parts.get(n - 2))
            .flatten()
            .map(String::as_str)
    }

    /// All parts, outermost qualifier first.
    pub fn parts(&self) -> &[String] {
        &self.parts
    }

    /// Whether `other` names this table: equal, or `other` is unqualified and names the same
    /// object (`citizen` matches `public.citizen`).
    pub fn matches_unqualified(&self, other: &TableName) -> bool {
        self == other || (other.parts.len() == 1 && self.name() == other.name())
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, part) in self.parts.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            write_identifier(f, part)?;
        }
        Ok(())
    }
}

impl From<TableName> for String {
    fn from(name: TableName) -> String {
        name.to_string()
    }
}

/// Write an identifier, quoting it (PostgreSQL style) unless it is a plain lower-case name.
pub(crate) fn write_identifier(f: &mut impl fmt::Write, ident: &str) -> fmt::Result {
    let plain = !ident.is_empty()
        && ident
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && ident
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'$');
    if plain {
        f.write_str(ident)
    } else {
        f.write_char('"')?;
        for ch in ident.chars() {
            if ch == '"' {
                f.write_char('"')?;
            }
            f.write_char(ch)?;
        }
        f.write_char('"')
    }
}

/// Whether the parser built this identifier from a string literal token.
pub(crate) fn is_from_literal(ident: &Ident, dialect: Dialect) -> bool {
    match ident.quote_style {
        Some('\'') => true,
        Some('"') => dialect.double_quote_is_string(),
        _ => false,
    }
}

/// The normalised form of one identifier, or `None` if it came from a literal.
pub(crate) fn normalize(ident: &Ident, dialect: Dialect) -> Option<String> {
    if is_from_literal(ident, dialect) {
        return None;
    }
    let fold = ident.quote_style.is_none() || dialect.folds_quoted_identifiers();
    Some(if fold {
        match dialect {
            Dialect::PostgreSql => ident.value.to_ascii_lowercase(),
            Dialect::MySql { .. } => ident.value.to_lowercase(),
        }
    } else {
        ident.value.clone()
    })
}

/// The normalised parts of an object name, or `None` if any part came from a literal or is not a
/// plain identifier (sqlparser's `IDENTIFIER(…)` function parts).
pub(crate) fn normalize_object_name(name: &ObjectName, dialect: Dialect) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| match part {
            ObjectNamePart::Identifier(ident) => normalize(ident, dialect),
            ObjectNamePart::Function(_) => None,
        })
        .collect()
}

/// The normalised table name, or `None` as for [`normalize_object_name`].
pub(crate) fn table_name(name: &ObjectName, dialect: Dialect) -> Option<TableName> {
    normalize_object_name(name, dialect).and_then(TableName::from_parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_folds_unquoted_only() {
        let d = Dialect::PostgreSql;
        assert_eq!(
            normalize(&Ident::new("CitIzen"), d).as_deref(),
            Some("citizen")
        );
        assert_eq!(
            normalize(&Ident::with_quote('"', "CitIzen"), d).as_deref(),
            Some("CitIzen")
        );
        assert_eq!(normalize(&Ident::with_quote('\'', "x"), d), None);
    }

    #[test]
    fn mysql_folds_everything_and_double_quotes_are_literals() {
        let d = Dialect::MYSQL_DEFAULT;
        assert_eq!(
            normalize(&Ident::with_quote('`', "CitIzen"), d).as_deref(),
            Some("citizen")
        );
        assert_eq!(normalize(&Ident::with_quote('"', "x"), d), None);
        let ansi = Dialect::MySql {
            ansi_quotes: true,
            no_backslash_escapes: false,
        };
        assert_eq!(
            normalize(&Ident::with_quote('"', "X"), ansi).as_deref(),
            Some("x")
        );
    }

    #[test]
    fn display_quotes_when_needed() {
        let name = TableName::from_parts(["public", "Citizen Card"]);
        assert_eq!(
            name.map(|n| n.to_string()).as_deref(),
            Some("public.\"Citizen Card\"")
        );
    }
}
