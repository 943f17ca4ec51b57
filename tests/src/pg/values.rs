//! Looking at query results the way equivalence tests need to: raw wire bytes, summaries of
//! simple-query results, and SQLSTATEs.

use std::error::Error;

use tokio_postgres::types::{FromSql, Type};
use tokio_postgres::{Row, SimpleQueryMessage};

/// A column value exactly as it came off the wire (binary format for tokio-postgres's extended
/// queries), with its type OID; accepts every type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawValue {
    pub type_oid: u32,
    /// `None` for NULL.
    pub bytes: Option<Vec<u8>>,
}

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawValue {
            type_oid: ty.oid(),
            bytes: Some(raw.to_vec()),
        })
    }

    fn from_sql_null(ty: &Type) -> Result<Self, Box<dyn Error + Sync + Send>> {
        Ok(RawValue {
            type_oid: ty.oid(),
            bytes: None,
        })
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// Every value of every row, raw.
pub fn raw_rows(rows: &[Row]) -> Vec<Vec<RawValue>> {
    rows.iter()
        .map(|row| (0..row.len()).map(|i| row.get::<_, RawValue>(i)).collect())
        .collect()
}

/// The column names and type OIDs of a result.
pub fn columns_of(row: &Row) -> Vec<(String, u32)> {
    row.columns()
        .iter()
        .map(|c| (c.name().to_string(), c.type_().oid()))
        .collect()
}

/// A simple query's messages as lines: `row a|b|NULL` for each row, `complete N` for each
/// CommandComplete (rows affected or returned).
pub fn simple_summary(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(format!(
                "row {}",
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
                    .join("|")
            )),
            SimpleQueryMessage::CommandComplete(n) => Some(format!("complete {n}")),
            _ => None,
        })
        .collect()
}

/// The SQLSTATE of a database error (`None` for errors that did not come from the server).
pub fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}
