//! The ciphertext envelope: a small versioned header, then the mode's body.
//!
//! Why a header: a reader must know, before decrypting, which key and which version of it
//! sealed a value, so that a column can hold values of several key versions during a rotation
//! and a value copied into the wrong column is refused with a clear error. The header is part
//! of the associated data, so none of it can be changed without the value failing to open.
//!
//! Binary form (stored as `bytea` / `VARBINARY`):
//!
//! ```text
//! offset size  field
//!      0    1  magic 0x57 ('W')
//!      1    1  envelope format version: 1
//!      2    1  algorithm: 1 = SM4, 2 = AES-256
//!      3    1  mode: 1 = randomized, 2 = deterministic (3 = order-preserving, trailer only)
//!      4    4  key id, big-endian (the keyring's number for the named column key)
//!      8    4  key version, big-endian
//!     12       body
//!              randomized:    nonce (12) ‖ ciphertext (n) ‖ GCM tag (16)
//!              deterministic: synthetic IV (16) ‖ ciphertext (n)
//! ```
//!
//! Associated data = the 12 header bytes ‖ the key domain's 16-byte digest
//! ([`crate::KeyDomain::digest`]). Overhead: 40 bytes (randomized), 28 bytes (deterministic).
//!
//! The order-preserving mode cannot start with a header: values of different key versions
//! would then sort by version first. Its stored form is the 16-byte ciphertext followed by the
//! same 12-byte header as a trailer ([`OPE_STORED_LEN`] = 28 bytes): `memcmp` order is decided
//! by the fixed-width ciphertext, and the trailer still names the key and version. FF1 tokens
//! have no envelope at all (they must keep the plaintext's format).
//!
//! Text form, for columns that must stay text: standard base64 (with padding) of the binary
//! form, so `decode(col, 'base64')` in PostgreSQL gives the binary form back; for the
//! order-preserving mode, lowercase hex, which sorts like the bytes under the `C` collation.
//!
//! Every decoder here returns a typed [`EnvelopeError`] for any input and never panics
//! (a property test feeds random and mutated bytes).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::scheme::{Algorithm, Mode};

/// First byte of every envelope.
pub const MAGIC: u8 = 0x57;
/// The envelope format this code writes.
pub const FORMAT_VERSION: u8 = 1;
/// Header length.
pub const HEADER_LEN: usize = 12;
/// Nonce length of the randomized mode.
pub const NONCE_LEN: usize = 12;
/// Tag length of the randomized mode.
pub const TAG_LEN: usize = 16;
/// Synthetic IV length of the deterministic mode.
pub const SIV_LEN: usize = 16;
/// Length of an order-preserving stored value: ciphertext ‖ header trailer.
pub const OPE_STORED_LEN: usize = crate::ope::CIPHERTEXT_LEN + HEADER_LEN;

/// Why bytes are not a well-formed envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than the smallest envelope of its kind.
    #[error(
        "{len} bytes is too short for a Warden ciphertext (at least {min}); the column may hold plaintext or truncated data"
    )]
    TooShort {
        /// Bytes given.
        len: usize,
        /// Bytes needed.
        min: usize,
    },
    /// Does not start (or, for OPE, end) with the envelope magic byte.
    #[error(
        "not a Warden ciphertext (magic byte {found:#04x}, expected 0x57); the column may hold plaintext"
    )]
    BadMagic {
        /// The byte found.
        found: u8,
    },
    /// Written by a newer Warden.
    #[error(
        "envelope format version {0} is not supported by this Warden (it reads version 1); upgrade Warden"
    )]
    UnsupportedVersion(u8),
    /// An algorithm code this Warden does not know.
    #[error("unknown algorithm code {0} in the envelope")]
    UnknownAlgorithm(u8),
    /// A mode code this Warden does not know, or one that cannot appear there.
    #[error("mode code {0} cannot appear in this envelope")]
    UnexpectedMode(u8),
    /// An order-preserving stored value of the wrong length.
    #[error("an order-preserving value is exactly {expected} bytes, found {len}")]
    WrongLength {
        /// Bytes given.
        len: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// The text form is not valid base64 or hex.
    #[error("the text form is not valid {encoding}")]
    BadText {
        /// `base64` or `hex`.
        encoding: &'static str,
    },
}

/// The header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The block cipher.
    pub algorithm: Algorithm,
    /// The mode.
    pub mode: Mode,
    /// The keyring's id of the column key.
    pub key_id: u32,
    /// The key version.
    pub key_version: u32,
}

impl Header {
    /// The 12 header bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = MAGIC;
        b[1] = FORMAT_VERSION;
        b[2] = self.algorithm.code();
        b[3] = self.mode.code();
        b[4..8].copy_from_slice(&self.key_id.to_be_bytes());
        b[8..12].copy_from_slice(&self.key_version.to_be_bytes());
        b
    }

    /// Parses 12 header bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(EnvelopeError::TooShort {
                len: bytes.len(),
                min: HEADER_LEN,
            })?;
        if b[0] != MAGIC {
            return Err(EnvelopeError::BadMagic { found: b[0] });
        }
        if b[1] != FORMAT_VERSION {
            return Err(EnvelopeError::UnsupportedVersion(b[1]));
        }
        let algorithm = Algorithm::from_code(b[2]).ok_or(EnvelopeError::UnknownAlgorithm(b[2]))?;
        let mode = Mode::from_code(b[3]).ok_or(EnvelopeError::UnexpectedMode(b[3]))?;
        Ok(Header {
            algorithm,
            mode,
            key_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            key_version: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        })
    }
}

/// A parsed envelope of the randomized or deterministic mode, borrowing its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The header.
    pub header: Header,
    /// The raw header bytes (the start of the associated data).
    pub header_bytes: &'a [u8; HEADER_LEN],
    /// Everything after the header.
    pub body: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// Parses and checks the header and the body's minimum length for its mode.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, EnvelopeError> {
        let header = Header::parse(bytes)?;
        let min_body = match header.mode {
            Mode::Randomized => NONCE_LEN + TAG_LEN,
            Mode::Deterministic => SIV_LEN,
            other => return Err(EnvelopeError::UnexpectedMode(other.code())),
        };
        if bytes.len() < HEADER_LEN + min_body {
            return Err(EnvelopeError::TooShort {
                len: bytes.len(),
                min: HEADER_LEN + min_body,
            });
        }
        let (head, body) = bytes.split_at(HEADER_LEN);
        Ok(Envelope {
            header,
            header_bytes: head.try_into().expect("12 bytes"),
            body,
        })
    }

    /// Whether `bytes` starts like an envelope this Warden writes (a cheap test for columns
    /// that hold both plaintext and ciphertext during an online encryption job).
    pub fn looks_like(bytes: &[u8]) -> bool {
        bytes.len() >= HEADER_LEN + SIV_LEN && bytes[0] == MAGIC && bytes[1] == FORMAT_VERSION
    }
}

/// Splits an order-preserving stored value into ciphertext and header.
pub fn parse_ope(
    bytes: &[u8],
) -> Result<([u8; crate::ope::CIPHERTEXT_LEN], Header), EnvelopeError> {
    if bytes.len() != OPE_STORED_LEN {
        return Err(EnvelopeError::WrongLength {
            len: bytes.len(),
            expected: OPE_STORED_LEN,
        });
    }
    let (ct, trailer) = bytes.split_at(crate::ope::CIPHERTEXT_LEN);
    let header = Header::parse(trailer)?;
    if header.mode != Mode::OrderPreserving {
        return Err(EnvelopeError::UnexpectedMode(header.mode.code()));
    }
    Ok((ct.try_into().expect("16 bytes"), header))
}

/// The text form of a stored value of `mode`.
pub fn to_text(mode: Mode, stored: &[u8]) -> String {
    match mode {
        Mode::OrderPreserving => hex::encode(stored),
        Mode::FormatPreserving => String::from_utf8_lossy(stored).into_owned(),
        Mode::Randomized | Mode::Deterministic => BASE64.encode(stored),
    }
}

/// The stored bytes of a text form of `mode`.
pub fn from_text(mode: Mode, text: &str) -> Result<Vec<u8>, EnvelopeError> {
    match mode {
        Mode::OrderPreserving => {
            hex::decode(text.trim()).map_err(|_| EnvelopeError::BadText { encoding: "hex" })
        }
        Mode::FormatPreserving => Ok(text.as_bytes().to_vec()),
        Mode::Randomized | Mode::Deterministic => BASE64
            .decode(text.trim())
            .map_err(|_| EnvelopeError::BadText { encoding: "base64" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        Header {
            algorithm: Algorithm::Sm4,
            mode: Mode::Randomized,
            key_id: 7,
            key_version: 3,
        }
    }

    #[test]
    fn header_layout_is_as_documented() {
        let b = header().to_bytes();
        assert_eq!(hex::encode(b), "570101010000000700000003");
        assert_eq!(Header::parse(&b).unwrap(), header());
    }

    #[test]
    fn typed_errors() {
        let mut b = header().to_bytes().to_vec();
        b.extend_from_slice(&[0u8; 28]);
        assert!(Envelope::parse(&b).is_ok());
        assert_eq!(
            Envelope::parse(&b[..39]),
            Err(EnvelopeError::TooShort { len: 39, min: 40 })
        );
        let mut bad = b.clone();
        bad[0] = b'h';
        assert_eq!(
            Envelope::parse(&bad),
            Err(EnvelopeError::BadMagic { found: b'h' })
        );
        bad[0] = MAGIC;
        bad[1] = 2;
        assert_eq!(
            Envelope::parse(&bad),
            Err(EnvelopeError::UnsupportedVersion(2))
        );
        bad[1] = 1;
        bad[2] = 9;
        assert_eq!(
            Envelope::parse(&bad),
            Err(EnvelopeError::UnknownAlgorithm(9))
        );
        bad[2] = 1;
        bad[3] = 3;
        assert_eq!(Envelope::parse(&bad), Err(EnvelopeError::UnexpectedMode(3)));
        assert!(from_text(Mode::Randomized, "not base64!").is_err());
        assert!(from_text(Mode::OrderPreserving, "zz").is_err());
        assert!(parse_ope(&[0u8; 27]).is_err());
    }

    #[test]
    fn text_forms_round_trip() {
        let bytes = [0x57u8, 1, 2, 3, 255, 0];
        for mode in [Mode::Randomized, Mode::Deterministic, Mode::OrderPreserving] {
            assert_eq!(from_text(mode, &to_text(mode, &bytes)).unwrap(), bytes);
        }
        assert_eq!(to_text(Mode::OrderPreserving, &[0x0a, 0xff]), "0aff");
    }

    proptest! {
        /// No input makes a decoder panic.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Header::parse(&bytes);
            let _ = Envelope::parse(&bytes);
            let _ = parse_ope(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            for mode in Mode::ALL {
                let _ = from_text(mode, &text);
            }
        }

        /// Mutations of a valid envelope parse or fail with a typed error.
        #[test]
        fn mutated_envelopes_never_panic(pos in 0usize..40, byte: u8, cut in 0usize..41) {
            let mut b = header().to_bytes().to_vec();
            b.extend_from_slice(&[0xAA; 28]);
            b[pos] = byte;
            b.truncate(cut);
            let _ = Envelope::parse(&b);
            let _ = parse_ope(&b);
        }
    }
}
