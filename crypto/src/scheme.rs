//! The two choices every column key makes: the block cipher ([`Algorithm`]) and the column
//! mode ([`Mode`]), with their names (configuration, keyring, CLI) and their one-byte codes
//! (the ciphertext envelope).

use core::fmt;
use core::str::FromStr;

/// The block cipher of a column key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SM4 (GB/T 32907), 128-bit keys.
    Sm4,
    /// AES with 256-bit keys.
    Aes256,
}

/// How a column's values are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mode {
    /// AEAD with a fresh random nonce (SM4-GCM, AES-256-GCM). Leaks only the length.
    Randomized,
    /// Deterministic AEAD (SIV): equality, joins, GROUP BY, UNIQUE on ciphertext. Leaks
    /// equality and frequency.
    Deterministic,
    /// Order-preserving: ranges and ORDER BY on ciphertext. Leaks order and about half the bits.
    OrderPreserving,
    /// FF1 format-preserving tokens. Leaks equality, length and the separators' positions.
    FormatPreserving,
}

/// A name that is not an algorithm or a mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {found:?}; expected one of: {expected}")]
pub struct UnknownName {
    what: &'static str,
    found: String,
    expected: &'static str,
}

impl Algorithm {
    /// Every algorithm.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sm4, Algorithm::Aes256];

    /// The envelope code.
    pub fn code(self) -> u8 {
        match self {
            Algorithm::Sm4 => 1,
            Algorithm::Aes256 => 2,
        }
    }

    /// The algorithm of an envelope code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == code)
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sm4 => "sm4",
            Algorithm::Aes256 => "aes-256",
        }
    }
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 4] = [
        Mode::Randomized,
        Mode::Deterministic,
        Mode::OrderPreserving,
        Mode::FormatPreserving,
    ];

    /// The envelope code.
    pub fn code(self) -> u8 {
        match self {
            Mode::Randomized => 1,
            Mode::Deterministic => 2,
            Mode::OrderPreserving => 3,
            Mode::FormatPreserving => 4,
        }
    }

    /// The mode of an envelope code.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.code() == code)
    }

    /// The canonical name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Randomized => "randomized",
            Mode::Deterministic => "deterministic",
            Mode::OrderPreserving => "ope",
            Mode::FormatPreserving => "ff1",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sm4" => Ok(Algorithm::Sm4),
            "aes" | "aes-256" | "aes256" => Ok(Algorithm::Aes256),
            _ => Err(UnknownName {
                what: "algorithm",
                found: s.to_owned(),
                expected: "sm4, aes-256 (DES, 3DES and ECB modes are refused as insecure)",
            }),
        }
    }
}

impl FromStr for Mode {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "randomized" | "random" => Ok(Mode::Randomized),
            "deterministic" | "det" => Ok(Mode::Deterministic),
            "ope" | "order-preserving" => Ok(Mode::OrderPreserving),
            "ff1" | "fpe" | "format-preserving" => Ok(Mode::FormatPreserving),
            _ => Err(UnknownName {
                what: "mode",
                found: s.to_owned(),
                expected: "randomized, deterministic, ope, ff1",
            }),
        }
    }
}

impl serde::Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_code(a.code()), Some(a));
            assert_eq!(a.name().parse::<Algorithm>().unwrap(), a);
        }
        for m in Mode::ALL {
            assert_eq!(Mode::from_code(m.code()), Some(m));
            assert_eq!(m.name().parse::<Mode>().unwrap(), m);
        }
        assert_eq!(Algorithm::from_code(0), None);
        assert_eq!(Mode::from_code(9), None);
        let err = "3des".parse::<Algorithm>().unwrap_err().to_string();
        assert!(err.contains("refused as insecure"), "{err}");
    }
}
