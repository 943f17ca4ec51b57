//! Reading and writing the MySQL protocol's basic types inside a payload: fixed-width
//! little-endian integers, length-encoded integers and strings, NUL-terminated strings.
//!
//! [`Reader`] is a checked cursor: every read that would run past the payload returns a
//! [`DecodeError`] naming what was being read, so decoders never panic on peer input.

/// A payload that does not hold what its kind requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed packet: {0}")]
pub struct DecodeError(pub String);

pub fn malformed(what: impl Into<String>) -> DecodeError {
    DecodeError(what.into())
}

/// A checked cursor over a payload.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(malformed(format!("{what} runs past the end of the packet")));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn rest(&mut self) -> &'a [u8] {
        let out = &self.buf[self.pos..];
        self.pos = self.buf.len();
        out
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A length-encoded integer; `None` for the NULL marker 0xFB.
    pub fn lenenc_or_null(&mut self, what: &str) -> Result<Option<u64>, DecodeError> {
        let first = self.u8(what)?;
        let width = match first {
            0..=0xfa => return Ok(Some(u64::from(first))),
            0xfb => return Ok(None),
            0xfc => 2,
            0xfd => 3,
            0xfe => 8,
            0xff => return Err(malformed(format!("{what}: 0xFF is not a length"))),
        };
        let b = self.take(width, what)?;
        let mut v = [0u8; 8];
        v[..width].copy_from_slice(b);
        Ok(Some(u64::from_le_bytes(v)))
    }

    pub fn lenenc(&mut self, what: &str) -> Result<u64, DecodeError> {
        self.lenenc_or_null(what)?
            .ok_or_else(|| malformed(format!("{what} is NULL")))
    }

    pub fn lenenc_bytes(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let n = self.lenenc(what)?;
        let n = usize::try_from(n).map_err(|_| malformed(format!("{what} is too long")))?;
        self.take(n, what)
    }

    /// Bytes up to a NUL, which is consumed. Without a NUL, the rest of the packet.
    pub fn nul_bytes(&mut self) -> &'a [u8] {
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == 0) {
            Some(i) => {
                self.pos += i + 1;
                &rest[..i]
            }
            None => self.rest(),
        }
    }

    /// Bytes up to a NUL, which must be there.
    pub fn nul_terminated(&mut self, what: &str) -> Result<&'a [u8], DecodeError> {
        let rest = &self.buf[self.pos..];
        let i = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| malformed(format!("{what} is not NUL-terminated")))?;
        self.pos += i + 1;
        Ok(&rest[..i])
    }
}

/// Builds a payload.
#[derive(Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Writer {
        Writer::default()
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }

    pub fn nul_str(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self.buf.push(0);
        self
    }

    pub fn lenenc(&mut self, v: u64) -> &mut Self {
        match v {
            0..=0xfa => self.buf.push(v as u8),
            0xfb..=0xffff => {
                self.buf.push(0xfc);
                self.buf.extend_from_slice(&(v as u16).to_le_bytes());
            }
            0x1_0000..=0xff_ffff => {
                self.buf.push(0xfd);
                self.buf.extend_from_slice(&(v as u32).to_le_bytes()[..3]);
            }
            _ => {
                self.buf.push(0xfe);
                self.buf.extend_from_slice(&v.to_le_bytes());
            }
        }
        self
    }

    pub fn lenenc_bytes(&mut self, v: &[u8]) -> &mut Self {
        self.lenenc(v.len() as u64);
        self.bytes(v)
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn length_encoded_integers_round_trip() {
        for v in [
            0u64,
            250,
            251,
            0xffff,
            0x1_0000,
            0xff_ffff,
            0x100_0000,
            u64::MAX,
        ] {
            let bytes = Writer::new().lenenc(v).finish();
            let mut r = Reader::new(&bytes);
            assert_eq!(r.lenenc("v").unwrap(), v);
            assert!(r.is_empty());
        }
        assert_eq!(Reader::new(&[0xfb]).lenenc_or_null("v").unwrap(), None);
        assert!(Reader::new(&[0xff]).lenenc("v").is_err());
        assert!(Reader::new(&[0xfc, 1]).lenenc("v").is_err());
    }

    proptest! {
        #[test]
        fn reads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut r = Reader::new(&bytes);
            let _ = r.lenenc_bytes("a");
            let _ = r.nul_terminated("b");
            let _ = r.u32("c");
            let _ = r.nul_bytes();
        }
    }
}
