//! Column encryption on the PostgreSQL wire: what the relay does to parameters, descriptions
//! and rows of statements that touch encrypted columns.
//!
//! - **Parse**: parameters that carry values of encrypted columns get the storage type
//!   (`bytea`, or `text` for text storage), whatever the client declared, so the database
//!   compares ciphertext with ciphertext. The client's declared types are remembered.
//! - **ParameterDescription**: those parameters are described back with the client's declared
//!   type, or the column's logical type, so drivers encode the application's values as usual.
//! - **Bind**: their values (text or binary format) are converted to the column's plaintext,
//!   sealed, and sent as the stored form; every other parameter goes as it came.
//! - **RowDescription**: encrypted result columns are described with their logical type.
//! - **DataRow**: their values are opened and sent in the format the client asked for.
//!
//! A result column is encrypted when its origin (table OID, attribute number) is a protected
//! column stored as ciphertext, or, for results without an origin (aggregates, set
//! operations), when the plan says which protected column it returns.

use std::sync::Arc;

use warden_encryption::catalog::BYTEA_OID;
use warden_encryption::{Catalog, ColumnCrypto, EncryptionError, Plan, Storage};

use crate::pg::frame::Frame;
use crate::pg::messages::frontend::Bind;
use crate::pg::messages::rows::{Field, decode_data_row, encode_data_row};

/// PostgreSQL's `text` type OID.
const TEXT_OID: u32 = 25;
/// `varchar`.
const VARCHAR_OID: u32 = 1043;

/// The type OID of a column's stored form.
fn storage_oid(crypto: &ColumnCrypto) -> u32 {
    match crypto.storage() {
        Storage::Binary => BYTEA_OID,
        Storage::Text => TEXT_OID,
    }
}

/// Whether a result column of type `type_oid` holds the stored form of `crypto`'s column.
fn holds_storage(crypto: &ColumnCrypto, type_oid: u32) -> bool {
    match crypto.storage() {
        Storage::Binary => type_oid == BYTEA_OID,
        Storage::Text => type_oid == TEXT_OID || type_oid == VARCHAR_OID,
    }
}

/// The parameter types to send in a Parse: the client's, with encrypted parameters set to
/// their storage type.
pub fn parse_param_types(client: &[i32], plan: &Plan) -> Vec<i32> {
    let mut types = client.to_vec();
    for (&n, crypto) in &plan.params {
        if n == 0 || n > u16::MAX as usize {
            continue;
        }
        if types.len() < n {
            types.resize(n, 0);
        }
        types[n - 1] = storage_oid(crypto) as i32;
    }
    types
}

/// Rewrites a ParameterDescription's types for the client.
pub fn describe_params(types: &mut [u32], client: &[i32], plan: &Plan) {
    for (&n, crypto) in &plan.params {
        if let Some(t) = n.checked_sub(1).and_then(|i| types.get_mut(i)) {
            let declared = client.get(n - 1).copied().unwrap_or(0);
            *t = if declared != 0 {
                declared as u32
            } else {
                crypto.logical().pg_oid()
            };
        }
    }
}

/// Type OIDs whose binary format is the text itself (`text`, `varchar`, `bpchar`, `name`,
/// `unknown`): a client that declared one of them sends the value's text even in binary.
fn is_text_oid(oid: i32) -> bool {
    matches!(oid, 25 | 1043 | 1042 | 19 | 705)
}

/// A Bind with the values of encrypted parameters sealed. `None` when nothing changes.
/// `client_types` are the parameter types the client declared in its Parse.
pub fn encrypt_bind(
    bind: &Bind<'_>,
    plan: &Plan,
    client_types: &[i32],
) -> Result<Option<Frame>, EncryptionError> {
    if plan.params.is_empty() {
        return Ok(None);
    }
    let format_of = |i: usize| -> i16 {
        match bind.param_formats.len() {
            0 => 0,
            1 => bind.param_formats[0],
            _ => bind.param_formats.get(i).copied().unwrap_or(0),
        }
    };
    let mut formats: Vec<i16> = (0..bind.params.len()).map(format_of).collect();
    let mut sealed: Vec<Option<Vec<u8>>> = vec![None; bind.params.len()];
    for (&n, crypto) in &plan.params {
        let Some(i) = n.checked_sub(1).filter(|&i| i < bind.params.len()) else {
            continue;
        };
        let Some(value) = bind.params[i] else {
            continue;
        };
        let declared_text = client_types.get(i).copied().is_some_and(is_text_oid);
        let stored = if formats[i] == 1 && !declared_text {
            crypto.encrypt_pg_binary(value)?
        } else {
            crypto.encrypt_text(value)?
        };
        let (wire, format) = match crypto.storage() {
            Storage::Binary => (stored, 1),
            Storage::Text => (crypto.stored_to_db_text(&stored).into_bytes(), 0),
        };
        sealed[i] = Some(wire);
        formats[i] = format;
    }
    let params: Vec<Option<&[u8]>> = bind
        .params
        .iter()
        .zip(&sealed)
        .map(|(original, sealed)| match sealed {
            Some(s) => Some(s.as_slice()),
            None => *original,
        })
        .collect();
    Ok(Some(
        Bind {
            portal: bind.portal,
            statement: bind.statement,
            param_formats: formats,
            params,
            result_formats: bind.result_formats.clone(),
        }
        .encode(),
    ))
}

/// How the values of one result set are turned back into the application's.
#[derive(Debug)]
pub struct ResultTransform {
    columns: Vec<OutColumn>,
    catalog: Option<Arc<Catalog>>,
    /// The columns are unknown: every value is probed and rows pass unchanged unless one is
    /// warden ciphertext.
    probe_every_value: bool,
}

/// What happens to one result column.
#[derive(Debug)]
enum OutColumn {
    /// Forwarded as it is.
    Plain,
    /// A `bytea` column warden cannot attribute to a protected column (a function's result,
    /// say): forwarded, unless a value is warden ciphertext, which withholds the result.
    Probe,
    /// A protected column: opened into the client's format.
    Decrypt(Arc<ColumnCrypto>, i16),
    /// A migration's shadow column (`<column>__warden`, warden's own): left out.
    Drop,
}

/// The wire format of result column `i` given a Bind's result format codes.
pub fn result_format(formats: &[i16], i: usize) -> i16 {
    match formats.len() {
        0 => 0,
        1 => formats[0],
        _ => formats.get(i).copied().unwrap_or(0),
    }
}

impl ResultTransform {
    /// The transform of a result with these fields, or `None` when no column needs one.
    /// `outputs` is what the plan knows of the statement's result columns; `formats` the
    /// client's result format codes (the fields' own formats when `None`).
    pub fn build(
        catalog: &Arc<Catalog>,
        fields: &[Field],
        outputs: Option<&[Option<Arc<ColumnCrypto>>]>,
        formats: Option<&[i16]>,
    ) -> Option<ResultTransform> {
        let mut any = false;
        // Text-stored ciphertext can reach a text column (a function's result): probe those
        // too when some protected column is stored as text.
        let probe_text = catalog.has_text_storage();
        let columns = fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                if f.table_oid != 0 && catalog.is_shadow_at(f.table_oid, f.attnum) {
                    any = true;
                    return OutColumn::Drop;
                }
                let by_origin = (f.table_oid != 0)
                    .then(|| catalog.protected_at(f.table_oid, f.attnum))
                    .flatten();
                let crypto = match by_origin {
                    Some(c) => Some(c),
                    None if f.table_oid == 0 => outputs
                        .and_then(|o| o.get(i))
                        .and_then(|c| c.as_ref())
                        .map(Arc::clone),
                    None => None,
                }
                .filter(|c| holds_storage(c, f.type_oid));
                let format = match formats {
                    Some(formats) => result_format(formats, i),
                    None => f.format,
                };
                match crypto {
                    Some(crypto) => {
                        any = true;
                        OutColumn::Decrypt(crypto, format)
                    }
                    None if f.type_oid == BYTEA_OID
                        || (probe_text && matches!(f.type_oid, TEXT_OID | VARCHAR_OID)) =>
                    {
                        any = true;
                        OutColumn::Probe
                    }
                    None => OutColumn::Plain,
                }
            })
            .collect();
        any.then(|| ResultTransform {
            columns,
            catalog: Some(Arc::clone(catalog)),
            probe_every_value: false,
        })
    }

    /// A transform that withholds every row: for results whose columns warden does not know.
    pub fn withhold_all() -> ResultTransform {
        ResultTransform {
            columns: Vec::new(),
            catalog: None,
            probe_every_value: false,
        }
    }

    /// A transform for rows whose description warden never saw (a statement prepared before
    /// any column held ciphertext): rows pass unchanged unless a value is warden ciphertext,
    /// which withholds the result.
    pub fn probe_all(catalog: &Arc<Catalog>) -> ResultTransform {
        ResultTransform {
            columns: Vec::new(),
            catalog: Some(Arc::clone(catalog)),
            probe_every_value: true,
        }
    }

    /// The description the client sees: encrypted columns with their logical types, shadow
    /// columns left out.
    pub fn describe(&self, fields: Vec<Field>) -> Vec<Field> {
        fields
            .into_iter()
            .zip(&self.columns)
            .filter_map(|(mut f, c)| match c {
                OutColumn::Drop => None,
                OutColumn::Decrypt(crypto, _) => {
                    let logical = crypto.logical();
                    f.type_oid = logical.pg_oid();
                    f.typlen = logical.pg_typlen();
                    f.typmod = logical.pg_typmod();
                    Some(f)
                }
                _ => Some(f),
            })
            .collect()
    }

    /// The row with encrypted values opened, in the client's format.
    pub fn row(&self, frame: &Frame) -> Result<Frame, String> {
        let values = decode_data_row(frame).map_err(|e| e.to_string())?;
        if self.probe_every_value {
            for (i, v) in values.iter().enumerate() {
                if let (Some(v), Some(catalog)) = (v, &self.catalog)
                    && looks_encrypted_any_format(catalog, v)
                {
                    return Err(format!(
                        "result column {} holds ciphertext of an encrypted column, and the statement was prepared before the column was encrypted; prepare it again",
                        i + 1
                    ));
                }
            }
            return Ok(frame.clone());
        }
        if values.len() != self.columns.len() {
            return Err(format!(
                "a row has {} values but its description {} columns",
                values.len(),
                self.columns.len()
            ));
        }
        let mut opened: Vec<Option<Vec<u8>>> = Vec::with_capacity(values.len());
        for (i, (value, column)) in values.iter().zip(&self.columns).enumerate() {
            let (Some(v), OutColumn::Decrypt(crypto, format)) = (value, column) else {
                if let (Some(v), OutColumn::Probe) = (value, column)
                    && self
                        .catalog
                        .as_ref()
                        .is_some_and(|c| looks_encrypted_any_format(c, v))
                {
                    return Err(format!(
                        "result column {} holds ciphertext of an encrypted column that warden cannot attribute (a function or expression returned it); select the column itself",
                        i + 1
                    ));
                }
                opened.push(None);
                continue;
            };
            let stored = match (crypto.storage(), *format) {
                (Storage::Binary, 1) => v.to_vec(),
                _ => crypto.stored_from_db_text(v).map_err(|e| e.to_string())?,
            };
            let plain = if *format == 1 {
                crypto.decrypt_to_pg_binary(&stored)
            } else {
                crypto.decrypt_to_text(&stored)
            }
            .map_err(|e| e.to_string())?;
            opened.push(Some(plain));
        }
        let kept: Vec<Option<&[u8]>> = values
            .iter()
            .zip(&opened)
            .zip(&self.columns)
            .filter(|(_, c)| !matches!(c, OutColumn::Drop))
            .map(|((original, opened), _)| match opened {
                Some(o) => Some(o.as_slice()),
                None => *original,
            })
            .collect();
        Ok(encode_data_row(kept.into_iter()))
    }
}

/// Whether a result value is warden ciphertext, in whichever form it travels: raw bytes
/// (binary format), `\x…` hex (bytea text format), or the text storage forms.
fn looks_encrypted_any_format(catalog: &Catalog, value: &[u8]) -> bool {
    match value.strip_prefix(b"\\x") {
        Some(hex) => hex::decode(hex).is_ok_and(|raw| catalog.looks_encrypted(&raw)),
        None => catalog.looks_encrypted(value),
    }
}
