//! Column encryption on the MySQL wire: what the relay does to the SQL, the bound parameters,
//! the column definitions and the rows of commands that touch encrypted columns.
//!
//! - **COM_QUERY / COM_STMT_PREPARE**: the text is planned in the session's dialect and
//!   current database ([`plan_text`]); literals written into or compared with encrypted
//!   columns are replaced by their ciphertext (`X'…'`), a statement that cannot run on
//!   ciphertext is refused with an ERR naming the column and the reason.
//! - **COM_STMT_EXECUTE**: parameters the plan ties to encrypted columns are read in the type
//!   the client bound, converted to the column's logical text, sealed, and sent as
//!   `MYSQL_TYPE_BLOB` (binary storage) or `VAR_STRING` (text storage) ([`encrypt_execute`]).
//! - **Column definitions** (result sets and COM_STMT_PREPARE_OK): a column whose origin
//!   (`schema`, `org_table`, `org_name`) is a protected column and whose type holds its stored
//!   form — or, for results without an origin (`min`/`max`, `UNION`), the column the plan says
//!   it returns — is described with the logical type ([`ResultCrypt`]).
//! - **Rows**: its values are opened into MariaDB's text form (text protocol) or the logical
//!   type's binary protocol form (prepared statements). A value that does not open withholds
//!   the rest of the answer, which ends with an ERR: ciphertext never reaches the client.

use std::sync::Arc;

use warden_analysis::Dialect;
use warden_encryption::mysql::{self as wire, BINARY_CHARSET, flags};
use warden_encryption::{Catalog, ColumnCrypto, Plan, Storage};
use warden_policy::Refusal;

use crate::encryption::Encryption;
pub use crate::encryption::text::TextOutcome;
use crate::encryption::text::{MYSQL_SQLSTATES, plan_text as plan_text_with};
use crate::mysql::codec::{DecodeError, Reader, Writer};
use crate::mysql::statements::{Execute, Param, binary_value};

/// What column encryption knows about the command being answered.
#[derive(Debug, Default)]
pub struct Turn {
    /// The plan of the command's SQL, when it touches encrypted columns.
    pub plan: Option<Arc<Plan>>,
    /// Rows come in the binary protocol (COM_STMT_EXECUTE).
    pub binary: bool,
    /// The statement of the text whose result is being relayed.
    pub statement: usize,
    /// The transform of a result whose rows come later with COM_STMT_FETCH (a cursor).
    pub cursor: Option<Arc<ResultCrypt>>,
}

/// Plans `sql` for a session lexing in `dialect` (`Err`: the lexing is unknown or risky, so
/// the text is opaque) whose current database is `database`. `template` is the analysis'
/// literal-free text when the analysis is of exactly this text and understood.
pub fn plan_text(
    encryption: &Encryption,
    sql: &[u8],
    dialect: Result<Dialect, &str>,
    database: &str,
    template: Option<&str>,
) -> TextOutcome {
    let (sql, readable) = match std::str::from_utf8(sql) {
        Ok(s) => (s.to_string(), dialect.is_ok()),
        Err(_) => (String::from_utf8_lossy(sql).into_owned(), false),
    };
    let planner = encryption.mysql_planner(dialect.unwrap_or(Dialect::MYSQL_DEFAULT), database);
    let (plan, mut out) = match plan_text_with(&planner, &sql, template, readable, MYSQL_SQLSTATES)
    {
        TextOutcome::Planned { plan, sql } => (plan, sql),
        other => return other,
    };
    if let Some(load) = &plan.load_data
        && load.charset_after.is_some()
    {
        let base = out.as_deref().unwrap_or(&sql);
        match warden_encryption::load_data::rewrite(base, load, planner.dialect()) {
            Ok(s) => out = Some(s),
            Err(e) => return TextOutcome::Refused(MYSQL_SQLSTATES.rewrite_refusal(&e)),
        }
    }
    TextOutcome::Planned { plan, sql: out }
}

/// One column definition (Protocol::ColumnDefinition41).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    pub catalog: Vec<u8>,
    pub schema: Vec<u8>,
    pub table: Vec<u8>,
    pub org_table: Vec<u8>,
    pub name: Vec<u8>,
    pub org_name: Vec<u8>,
    pub charset: u16,
    pub length: u32,
    pub type_code: u8,
    pub flags: u16,
    pub decimals: u8,
    /// What follows the fixed fields (COM_FIELD_LIST's default values).
    pub rest: Vec<u8>,
}

impl ColumnDef {
    pub fn decode(payload: &[u8]) -> Result<ColumnDef, DecodeError> {
        let mut r = Reader::new(payload);
        let mut s = |what: &str| r.lenenc_bytes(what).map(<[u8]>::to_vec);
        let catalog = s("catalog")?;
        let schema = s("schema")?;
        let table = s("table")?;
        let org_table = s("org_table")?;
        let name = s("name")?;
        let org_name = s("org_name")?;
        r.lenenc("fixed fields length")?;
        let charset = r.u16("character set")?;
        let length = r.u32("column length")?;
        let type_code = r.u8("column type")?;
        let flags = r.u16("flags")?;
        let decimals = r.u8("decimals")?;
        r.take(2, "filler")?;
        Ok(ColumnDef {
            catalog,
            schema,
            table,
            org_table,
            name,
            org_name,
            charset,
            length,
            type_code,
            flags,
            decimals,
            rest: r.rest().to_vec(),
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.lenenc_bytes(&self.catalog)
            .lenenc_bytes(&self.schema)
            .lenenc_bytes(&self.table)
            .lenenc_bytes(&self.org_table)
            .lenenc_bytes(&self.name)
            .lenenc_bytes(&self.org_name)
            .lenenc(0x0c)
            .u16(self.charset)
            .u32(self.length)
            .u8(self.type_code)
            .u16(self.flags)
            .u8(self.decimals)
            .u16(0)
            .bytes(&self.rest);
        w.finish()
    }
}

/// What happens to one result column.
#[derive(Debug, Clone)]
enum OutColumn {
    /// Forwarded as it is.
    Plain,
    /// Bytes warden cannot attribute to a protected column (a function's result, say):
    /// forwarded, unless a value is warden ciphertext, which withholds the result.
    Probe,
    /// A protected column: opened into the application's value.
    Decrypt(Arc<ColumnCrypto>),
}

/// How the values of one result set are turned back into the application's.
#[derive(Debug, Clone)]
pub struct ResultCrypt {
    columns: Vec<OutColumn>,
    /// The column types as the database described them (binary rows are read with them).
    types: Vec<u8>,
    catalog: Arc<Catalog>,
}

impl ResultCrypt {
    /// The transform of a result with these definitions, or `None` when no column needs one.
    /// `outputs` is what the plan knows of the statement's result columns.
    pub fn build(
        catalog: &Arc<Catalog>,
        defs: &[ColumnDef],
        outputs: Option<&[Option<Arc<ColumnCrypto>>]>,
    ) -> Option<ResultCrypt> {
        let mut any = false;
        // Text-stored ciphertext can reach a text column (a view, a function): probe those
        // too when some protected column is stored as text.
        let probe_text = catalog.has_text_storage();
        let columns = defs
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                // An origin in a table warden knows decides; results without one, or from a
                // derived table or view (MariaDB names those as the origin), take the plan's.
                let (schema, table) = (text(&d.schema), text(&d.org_table));
                let known = !table.is_empty() && catalog.resolve(Some(&schema), &table).is_some();
                let crypto = if known {
                    catalog.mysql_origin(&schema, &table, &text(&d.org_name))
                } else {
                    outputs
                        .and_then(|o| o.get(i))
                        .and_then(|c| c.as_ref())
                        .map(Arc::clone)
                }
                .filter(|c| {
                    wire::holds_storage(c.storage() == Storage::Binary, d.type_code, d.charset)
                });
                match crypto {
                    Some(c) => {
                        any = true;
                        OutColumn::Decrypt(c)
                    }
                    None if wire::holds_storage(true, d.type_code, d.charset)
                        || (probe_text && wire::holds_storage(false, d.type_code, d.charset)) =>
                    {
                        any = true;
                        OutColumn::Probe
                    }
                    None => OutColumn::Plain,
                }
            })
            .collect();
        any.then(|| ResultCrypt {
            columns,
            types: defs.iter().map(|d| d.type_code).collect(),
            catalog: Arc::clone(catalog),
        })
    }

    /// Whether a column is decrypted (not only probed).
    pub fn decrypts(&self) -> bool {
        self.columns
            .iter()
            .any(|c| matches!(c, OutColumn::Decrypt(_)))
    }

    /// Describes the encrypted columns with their logical types; `charset` is the session's
    /// character set (collation id) for string columns.
    pub fn describe(&self, defs: &mut [ColumnDef], charset: u16) {
        for (d, c) in defs.iter_mut().zip(&self.columns) {
            if let OutColumn::Decrypt(crypto) = c {
                let t = wire::column_type(crypto.logical(), 4);
                d.type_code = t.type_code;
                d.length = t.length;
                d.decimals = t.decimals;
                d.charset = if t.binary_charset {
                    BINARY_CHARSET
                } else {
                    charset
                };
                d.flags = (d.flags & !(flags::BINARY | flags::BLOB | flags::UNSIGNED | flags::NUM))
                    | t.flags;
            }
        }
    }

    fn probe(&self, i: usize, value: &[u8]) -> Result<(), String> {
        if self.catalog.looks_encrypted(value) {
            return Err(format!(
                "result column {} holds ciphertext of an encrypted column that warden cannot attribute (a function or expression returned it); select the column itself",
                i + 1
            ));
        }
        Ok(())
    }

    /// The application's text of a stored value.
    fn open_text(crypto: &ColumnCrypto, value: &[u8]) -> Result<Vec<u8>, String> {
        let stored = match crypto.storage() {
            Storage::Binary => value.to_vec(),
            Storage::Text => crypto
                .stored_from_db_text(value)
                .map_err(|e| e.to_string())?,
        };
        let text = crypto.decrypt_to_text(&stored).map_err(|e| e.to_string())?;
        Ok(wire::text_from_logical(crypto.logical(), text))
    }

    /// A text protocol row with encrypted values opened.
    pub fn text_row(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let mut r = Reader::new(payload);
        let mut out = Vec::with_capacity(payload.len());
        for (i, column) in self.columns.iter().enumerate() {
            let value = match r.lenenc_or_null("value").map_err(|e| e.to_string())? {
                None => {
                    out.push(0xfb);
                    continue;
                }
                Some(n) => r
                    .take(usize::try_from(n).map_err(|_| "a value too long")?, "value")
                    .map_err(|e| e.to_string())?,
            };
            match column {
                OutColumn::Plain => out.extend_from_slice(&wire::lenenc_bytes(value)),
                OutColumn::Probe => {
                    self.probe(i, value)?;
                    out.extend_from_slice(&wire::lenenc_bytes(value));
                }
                OutColumn::Decrypt(crypto) => {
                    out.extend_from_slice(&wire::lenenc_bytes(&Self::open_text(crypto, value)?));
                }
            }
        }
        if !r.is_empty() {
            return Err("a row has more values than its result has columns".into());
        }
        Ok(out)
    }

    /// A binary protocol row with encrypted values opened into their logical type's form.
    pub fn binary_row(&self, payload: &[u8]) -> Result<Vec<u8>, String> {
        let n = self.columns.len();
        let mut r = Reader::new(payload);
        let e = |e: DecodeError| e.to_string();
        let header = r.u8("row header").map_err(e)?;
        let bitmap = r.take((n + 9) / 8, "NULL bitmap").map_err(e)?;
        let mut out = Vec::with_capacity(payload.len());
        out.push(header);
        out.extend_from_slice(bitmap);
        for (i, column) in self.columns.iter().enumerate() {
            let bit = i + 2;
            if bitmap[bit / 8] & (1 << (bit % 8)) != 0 {
                continue;
            }
            let start = payload.len() - r.remaining();
            let value = binary_value(&mut r, self.types[i]).map_err(e)?;
            let end = payload.len() - r.remaining();
            match column {
                OutColumn::Plain => out.extend_from_slice(&payload[start..end]),
                OutColumn::Probe => {
                    self.probe(i, value)?;
                    out.extend_from_slice(&payload[start..end]);
                }
                OutColumn::Decrypt(crypto) => {
                    let text = Self::open_text(crypto, value)?;
                    out.extend_from_slice(&wire::binary_from_text(crypto.logical(), &text)?);
                }
            }
        }
        if !r.is_empty() {
            return Err("a binary row has more values than its result has columns".into());
        }
        Ok(out)
    }
}

/// Type codes sent for sealed parameters.
const BLOB: u8 = 252;
const VAR_STRING: u8 = 253;

/// A COM_STMT_EXECUTE with the values of encrypted parameters sealed: `None` when nothing
/// changes. `params` is the statement's parameter count and `types` the `(type, flags)` the
/// client bound (current after decoding `execute`).
pub fn encrypt_execute(
    payload: &[u8],
    execute: &Execute<'_>,
    types: &[(u8, u8)],
    plan: &Plan,
) -> Result<Option<Vec<u8>>, Refusal> {
    if plan.params.is_empty() || execute.params.is_empty() {
        return Ok(None);
    }
    let n = execute.params.len();
    let mut sealed: Vec<Option<(u8, Vec<u8>)>> = vec![None; n];
    for (&ordinal, crypto) in &plan.params {
        let Some(i) = ordinal.checked_sub(1).filter(|&i| i < n) else {
            continue;
        };
        match &execute.params[i] {
            Param::Null => {}
            Param::LongData => {
                return Err(MYSQL_SQLSTATES.plan_refusal(format!(
                    "encrypted column {}: a value sent as long data (COM_STMT_SEND_LONG_DATA) cannot be encrypted by warden; bind it in the execute",
                    crypto.column.display_name()
                )));
            }
            Param::Value {
                kind,
                unsigned,
                bytes,
            } => {
                let text =
                    wire::param_text(crypto.logical(), *kind, *unsigned, bytes).map_err(|m| {
                        MYSQL_SQLSTATES
                            .invalid_value(format!("{}: {m}", crypto.column.display_name()))
                    })?;
                let stored = crypto
                    .encrypt_text(&text)
                    .map_err(|e| MYSQL_SQLSTATES.value_refusal(&e))?;
                sealed[i] = Some(match crypto.storage() {
                    Storage::Binary => (BLOB, stored),
                    Storage::Text => (VAR_STRING, crypto.stored_to_db_text(&stored).into_bytes()),
                });
            }
        }
    }
    if sealed.iter().all(Option::is_none) {
        return Ok(None);
    }
    // Re-encode: header, NULL bitmap, types (always sent), values.
    let bad = |e: DecodeError| MYSQL_SQLSTATES.internal(e.to_string());
    let mut r = Reader::new(payload);
    let head = r.take(10, "execute header").map_err(bad)?;
    let bitmap = r.take(n.div_ceil(8), "NULL bitmap").map_err(bad)?;
    let bound = r.u8("new-params-bound flag").map_err(bad)?;
    if bound == 1 {
        r.take(2 * n, "parameter types").map_err(bad)?;
    }
    let mut w = Writer::new();
    w.bytes(head).bytes(bitmap).u8(1);
    for (i, (kind, flag)) in types.iter().enumerate().take(n) {
        match &sealed[i] {
            Some((t, _)) => w.u8(*t).u8(0),
            None => w.u8(*kind).u8(*flag),
        };
    }
    for (i, param) in execute.params.iter().enumerate() {
        let Param::Value { kind, .. } = param else {
            continue;
        };
        let before = payload.len() - r.remaining();
        binary_value(&mut r, *kind).map_err(bad)?;
        let after = payload.len() - r.remaining();
        match &sealed[i] {
            Some((_, bytes)) => w.lenenc_bytes(bytes),
            // The value with its length prefix, as the client sent it.
            None => w.bytes(&payload[before..after]),
        };
    }
    w.bytes(r.rest());
    Ok(Some(w.finish()))
}
