//! Typed views of the PostgreSQL messages warden has to understand.
//!
//! The fast path never decodes anything; these are for the slow path (SQL-carrying messages,
//! authentication, session bookkeeping). Decoders borrow from the frame and use a checked
//! [`Reader`], so malformed bodies give a [`MessageError`] instead of a panic. Encoders build the
//! messages warden itself sends (errors, authentication requests, injected statements).

pub mod backend;
pub mod frontend;
pub mod rows;
pub mod startup;

use bytes::{BufMut, BytesMut};

use super::frame::Frame;

/// A message body that does not follow the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {message} message: {problem}")]
pub struct MessageError {
    pub message: &'static str,
    pub problem: &'static str,
}

/// A checked reader over a message body.
pub struct Reader<'a> {
    data: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], message: &'static str) -> Self {
        Self { data, message }
    }

    fn fail<T>(&self, problem: &'static str) -> Result<T, MessageError> {
        Err(MessageError {
            message: self.message,
            problem,
        })
    }

    pub fn remaining(&self) -> usize {
        self.data.len()
    }

    pub fn u8(&mut self) -> Result<u8, MessageError> {
        let Some((&b, rest)) = self.data.split_first() else {
            return self.fail("ends early");
        };
        self.data = rest;
        Ok(b)
    }

    pub fn i16(&mut self) -> Result<i16, MessageError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub fn i32(&mut self) -> Result<i32, MessageError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// A count that must not be negative.
    pub fn count16(&mut self) -> Result<usize, MessageError> {
        let n = self.i16()?;
        if n < 0 {
            return self.fail("has a negative count");
        }
        Ok(n as usize)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], MessageError> {
        if self.data.len() < n {
            return self.fail("ends early");
        }
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        Ok(head)
    }

    /// A NUL-terminated string, as raw bytes without the NUL.
    pub fn cstr_bytes(&mut self) -> Result<&'a [u8], MessageError> {
        let Some(end) = self.data.iter().position(|&b| b == 0) else {
            return self.fail("has an unterminated string");
        };
        let s = &self.data[..end];
        self.data = &self.data[end + 1..];
        Ok(s)
    }

    /// A NUL-terminated string that must be UTF-8 (names, keys, protocol strings).
    pub fn cstr(&mut self) -> Result<&'a str, MessageError> {
        let raw = self.cstr_bytes()?;
        match std::str::from_utf8(raw) {
            Ok(s) => Ok(s),
            Err(_) => self.fail("has a string that is not UTF-8"),
        }
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }

    /// Fails unless the body has been consumed exactly.
    pub fn finish(&self) -> Result<(), MessageError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            self.fail("has trailing bytes")
        }
    }
}

/// Builds a message body; [`MessageBuilder::finish`] frames it.
pub struct MessageBuilder {
    tag: u8,
    body: BytesMut,
}

impl MessageBuilder {
    pub fn new(tag: u8) -> Self {
        Self {
            tag,
            body: BytesMut::with_capacity(64),
        }
    }

    pub fn u8(mut self, v: u8) -> Self {
        self.body.put_u8(v);
        self
    }

    pub fn i16(mut self, v: i16) -> Self {
        self.body.put_i16(v);
        self
    }

    pub fn i32(mut self, v: i32) -> Self {
        self.body.put_i32(v);
        self
    }

    pub fn bytes(mut self, v: &[u8]) -> Self {
        self.body.put_slice(v);
        self
    }

    /// A string with its terminating NUL. Interior NULs are dropped: they cannot be sent.
    pub fn cstr(mut self, v: &str) -> Self {
        self.body.extend(v.bytes().filter(|&b| b != 0));
        self.body.put_u8(0);
        self
    }

    pub fn finish(self) -> Frame {
        Frame::new(self.tag, &self.body)
    }
}
