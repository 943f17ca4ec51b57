//! The result-shape messages warden rewrites for encrypted columns: RowDescription (`T`),
//! ParameterDescription (`t`) and DataRow (`D`).
//!
//! Encrypted columns are `bytea` (or text) in the database but their logical type for the
//! application, so their descriptions are rewritten and their values decrypted. Only results
//! that hold an encrypted column are decoded; everything else stays on the fast path.

use super::{MessageBuilder, MessageError, Reader};
use crate::pg::frame::Frame;

/// One field of a RowDescription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    /// The table the column comes from (0 when it is not a plain column reference).
    pub table_oid: u32,
    /// The column's attribute number in that table (0 when not a plain column reference).
    pub attnum: i16,
    pub type_oid: u32,
    pub typlen: i16,
    pub typmod: i32,
    /// 0 text, 1 binary (always 0 in a statement Describe).
    pub format: i16,
}

/// Decodes a RowDescription.
pub fn decode_row_description(frame: &Frame) -> Result<Vec<Field>, MessageError> {
    let mut r = Reader::new(frame.body(), "RowDescription");
    let n = r.count16()?;
    let mut fields = Vec::with_capacity(n.min(r.remaining() / 19));
    for _ in 0..n {
        fields.push(Field {
            name: String::from_utf8_lossy(r.cstr_bytes()?).into_owned(),
            table_oid: r.i32()? as u32,
            attnum: r.i16()?,
            type_oid: r.i32()? as u32,
            typlen: r.i16()?,
            typmod: r.i32()?,
            format: r.i16()?,
        });
    }
    r.finish()?;
    Ok(fields)
}

/// Encodes a RowDescription.
pub fn encode_row_description(fields: &[Field]) -> Frame {
    let mut b = MessageBuilder::new(b'T').i16(fields.len() as i16);
    for f in fields {
        b = b
            .cstr(&f.name)
            .i32(f.table_oid as i32)
            .i16(f.attnum)
            .i32(f.type_oid as i32)
            .i16(f.typlen)
            .i32(f.typmod)
            .i16(f.format);
    }
    b.finish()
}

/// Decodes a ParameterDescription: the parameters' type OIDs.
pub fn decode_parameter_description(frame: &Frame) -> Result<Vec<u32>, MessageError> {
    let mut r = Reader::new(frame.body(), "ParameterDescription");
    let n = r.count16()?;
    let mut types = Vec::with_capacity(n.min(r.remaining() / 4));
    for _ in 0..n {
        types.push(r.i32()? as u32);
    }
    r.finish()?;
    Ok(types)
}

/// Encodes a ParameterDescription.
pub fn encode_parameter_description(types: &[u32]) -> Frame {
    let mut b = MessageBuilder::new(b't').i16(types.len() as i16);
    for t in types {
        b = b.i32(*t as i32);
    }
    b.finish()
}

/// Decodes a DataRow into its values (`None` is NULL).
pub fn decode_data_row(frame: &Frame) -> Result<Vec<Option<&[u8]>>, MessageError> {
    let mut r = Reader::new(frame.body(), "DataRow");
    let n = r.count16()?;
    let mut values = Vec::with_capacity(n.min(r.remaining() / 4));
    for _ in 0..n {
        let len = r.i32()?;
        if len == -1 {
            values.push(None);
        } else if len < 0 {
            return Err(MessageError {
                message: "DataRow",
                problem: "has a negative value length",
            });
        } else {
            values.push(Some(r.bytes(len as usize)?));
        }
    }
    r.finish()?;
    Ok(values)
}

/// Encodes a DataRow.
pub fn encode_data_row<'a>(values: impl ExactSizeIterator<Item = Option<&'a [u8]>>) -> Frame {
    let mut b = MessageBuilder::new(b'D').i16(values.len() as i16);
    for v in values {
        b = match v {
            None => b.i32(-1),
            Some(v) => b.i32(v.len() as i32).bytes(v),
        };
    }
    b.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_description_round_trips() {
        let fields = vec![Field {
            name: "id_card".into(),
            table_oid: 16384,
            attnum: 2,
            type_oid: 17,
            typlen: -1,
            typmod: -1,
            format: 1,
        }];
        let frame = encode_row_description(&fields);
        assert_eq!(decode_row_description(&frame).unwrap(), fields);
    }

    #[test]
    fn data_row_round_trips_with_nulls_and_empty_values() {
        let values: Vec<Option<&[u8]>> = vec![Some(b"abc"), None, Some(b"")];
        let frame = encode_data_row(values.clone().into_iter());
        assert_eq!(decode_data_row(&frame).unwrap(), values);
    }

    #[test]
    fn truncated_messages_are_errors() {
        let frame = encode_data_row([Some(&b"abcdef"[..])].into_iter());
        let cut = Frame::new(b'D', &frame.body()[..6]);
        assert!(decode_data_row(&cut).is_err());
    }
}
