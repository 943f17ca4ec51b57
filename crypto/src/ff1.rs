//! Format-preserving encryption: FF1 (NIST SP 800-38G) over AES-256 or SM4, on strings.
//!
//! Why: reversible tokens that keep a value's shape (a phone number stays 11 digits, an ID
//! stays 18 characters), for masking that must be undoable and for columns whose type cannot
//! change. FF1 itself is the `fpe` crate's; this module maps strings to numeral strings through
//! an [`Alphabet`], keeps separators in place, and passes the key domain as the tweak.
//!
//! FF1 over SM4 is the same construction with SM4 as the block cipher. NIST approves FF1 with
//! AES only and publishes vectors for AES only; the SM4 variant is checked by round trips and
//! distribution tests here (no official vectors exist).
//!
//! What it leaks: FF1 is deterministic, so equal values (in one key domain) give equal tokens,
//! and the length and the positions of separators show. The domain must be large: the `fpe`
//! crate enforces radix^length ≥ 1,000,000 (SP 800-38G Rev. 1), so at least 6 digits or 4
//! alphanumerics. Tokens carry no key version; the column's policy names it.

use fpe::ff1::{FF1, FlexibleNumeralString, NumeralStringError};

use crate::sm4::Sm4;

/// The characters a format-preserving column encrypts, in numeral order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alphabet {
    name: String,
    chars: Vec<char>,
}

/// Why a value could not be tokenised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ff1Error {
    /// A letter or digit outside the column's alphabet (separators are kept, letters are not).
    #[error("character {0:?} is not in the format-preserving alphabet {1}")]
    NotInAlphabet(char, String),
    /// Too few encryptable characters for FF1's minimum domain of 1,000,000.
    #[error(
        "the value has {found} encryptable characters; alphabet {alphabet} needs at least {min} for a domain of a million"
    )]
    TooShort {
        /// Characters found.
        found: usize,
        /// Characters needed.
        min: usize,
        /// The alphabet's name.
        alphabet: String,
    },
    /// A custom alphabet that is empty, too large or repeats a character.
    #[error("invalid alphabet: {0}")]
    InvalidAlphabet(String),
}

impl Alphabet {
    /// `0-9` (radix 10): phone numbers, bank cards, account numbers.
    pub fn digits() -> Self {
        Self::named("digits", "0123456789")
    }

    /// `0-9A-Z` (radix 36), upper case: codes that are case-insensitive and printed upper case.
    pub fn alphanumeric_upper() -> Self {
        Self::named("alnum-upper", "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    }

    /// `0-9a-z` (radix 36), lower case (the NIST SP 800-38G radix-36 samples use this one).
    pub fn alphanumeric_lower() -> Self {
        Self::named("alnum-lower", "0123456789abcdefghijklmnopqrstuvwxyz")
    }

    /// `0-9A-Za-z` (radix 62): identifiers whose case must be preserved.
    pub fn alphanumeric() -> Self {
        Self::named(
            "alnum",
            "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        )
    }

    /// `0-9X` (radix 11): 18-character resident ID numbers (GB 11643), whose check character
    /// may be `X`.
    pub fn id_card() -> Self {
        Self::named("id-card", "0123456789X")
    }

    /// Any set of 2 to 65,536 distinct characters, in numeral order.
    pub fn custom(chars: &str) -> Result<Self, Ff1Error> {
        let list: Vec<char> = chars.chars().collect();
        let mut sorted = list.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != list.len() || list.len() < 2 || list.len() > 1 << 16 {
            return Err(Ff1Error::InvalidAlphabet(format!(
                "{} characters, {} distinct; need 2 to 65536 distinct",
                list.len(),
                sorted.len()
            )));
        }
        Ok(Alphabet {
            name: format!("chars:{chars}"),
            chars: list,
        })
    }

    /// Parses the name used in the keyring and configuration: `digits`, `alnum-upper`,
    /// `alnum-lower`, `alnum`, `id-card`, or `chars:<characters>`.
    pub fn from_name(name: &str) -> Result<Self, Ff1Error> {
        match name {
            "digits" => Ok(Self::digits()),
            "alnum-upper" => Ok(Self::alphanumeric_upper()),
            "alnum-lower" => Ok(Self::alphanumeric_lower()),
            "alnum" => Ok(Self::alphanumeric()),
            "id-card" => Ok(Self::id_card()),
            other => match other.strip_prefix("chars:") {
                Some(chars) => Self::custom(chars),
                None => Err(Ff1Error::InvalidAlphabet(format!(
                    "unknown alphabet {other:?}; use digits, alnum-upper, alnum-lower, alnum, id-card or chars:<characters>"
                ))),
            },
        }
    }

    fn named(name: &str, chars: &str) -> Self {
        Alphabet {
            name: name.to_owned(),
            chars: chars.chars().collect(),
        }
    }

    /// The name, as [`Alphabet::from_name`] reads it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The radix.
    pub fn radix(&self) -> u32 {
        self.chars.len() as u32
    }

    fn index(&self, c: char) -> Option<u16> {
        // Alphabets are short; a linear scan keeps this simple and allocation-free.
        self.chars.iter().position(|&a| a == c).map(|i| i as u16)
    }

    /// Fewest characters FF1 accepts: radix^n ≥ 1,000,000.
    pub fn min_len(&self) -> usize {
        let radix = u64::from(self.radix());
        let mut n = 1;
        let mut domain = radix;
        while domain < 1_000_000 {
            domain *= radix;
            n += 1;
        }
        n.max(2)
    }
}

enum Engine {
    Sm4(Box<FF1<Sm4>>),
    Aes(Box<FF1<aes::Aes256>>),
}

/// An FF1 key bound to an alphabet.
pub struct Ff1Cipher {
    engine: Engine,
    alphabet: Alphabet,
}

impl Ff1Cipher {
    /// FF1 over SM4 with a 16-byte key.
    pub fn sm4(key: &[u8; 16], alphabet: Alphabet) -> Self {
        let ff1 =
            FF1::<Sm4>::new(key, alphabet.radix()).expect("alphabets have a radix in 2..=65536");
        Ff1Cipher {
            engine: Engine::Sm4(Box::new(ff1)),
            alphabet,
        }
    }

    /// FF1 over AES-256 with a 32-byte key.
    pub fn aes256(key: &[u8; 32], alphabet: Alphabet) -> Self {
        let ff1 = FF1::<aes::Aes256>::new(key, alphabet.radix())
            .expect("alphabets have a radix in 2..=65536");
        Ff1Cipher {
            engine: Engine::Aes(Box::new(ff1)),
            alphabet,
        }
    }

    /// The alphabet.
    pub fn alphabet(&self) -> &Alphabet {
        &self.alphabet
    }

    /// Tokenises `text`: the alphabet's characters are encrypted as one numeral string,
    /// separators (spaces, punctuation) stay where they are.
    pub fn encrypt_str(&self, tweak: &[u8], text: &str) -> Result<String, Ff1Error> {
        self.transform(tweak, text, true)
    }

    /// Inverse of [`Ff1Cipher::encrypt_str`].
    pub fn decrypt_str(&self, tweak: &[u8], text: &str) -> Result<String, Ff1Error> {
        self.transform(tweak, text, false)
    }

    /// FF1 on raw numerals (each below the radix).
    pub fn encrypt_numerals(&self, tweak: &[u8], numerals: Vec<u16>) -> Result<Vec<u16>, Ff1Error> {
        self.numerals(tweak, numerals, true)
    }

    fn numerals(
        &self,
        tweak: &[u8],
        numerals: Vec<u16>,
        encrypt: bool,
    ) -> Result<Vec<u16>, Ff1Error> {
        let found = numerals.len();
        let ns = FlexibleNumeralString::from(numerals);
        let out = match (&self.engine, encrypt) {
            (Engine::Sm4(f), true) => f.encrypt(tweak, &ns),
            (Engine::Sm4(f), false) => f.decrypt(tweak, &ns),
            (Engine::Aes(f), true) => f.encrypt(tweak, &ns),
            (Engine::Aes(f), false) => f.decrypt(tweak, &ns),
        };
        out.map(Vec::from).map_err(|e| match e {
            NumeralStringError::TooShort { min_len, .. } => Ff1Error::TooShort {
                found,
                min: min_len,
                alphabet: self.alphabet.name.clone(),
            },
            // Numerals come from the alphabet, and values are far shorter than 2^32.
            other => Ff1Error::InvalidAlphabet(other.to_string()),
        })
    }

    fn transform(&self, tweak: &[u8], text: &str, encrypt: bool) -> Result<String, Ff1Error> {
        let mut numerals = Vec::with_capacity(text.len());
        for c in text.chars() {
            match self.alphabet.index(c) {
                Some(i) => numerals.push(i),
                None if c.is_alphanumeric() => {
                    return Err(Ff1Error::NotInAlphabet(c, self.alphabet.name.clone()));
                }
                None => {}
            }
        }
        let mut out_numerals = self.numerals(tweak, numerals, encrypt)?.into_iter();
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if self.alphabet.index(c).is_some() {
                let n = out_numerals.next().expect("same count in and out");
                out.push(self.alphabet.chars[usize::from(n)]);
            } else {
                out.push(c);
            }
        }
        Ok(out)
    }
}

impl core::fmt::Debug for Ff1Cipher {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Ff1Cipher")
            .field("alphabet", &self.alphabet.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipher::KeyInit;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    const KEY128: &str = "2B7E151628AED2A6ABF7158809CF4F3C";
    const KEY192: &str = "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F";
    const KEY256: &str = "2B7E151628AED2A6ABF7158809CF4F3CEF4359D8D580AA4F7F036D6F04FC6A94";
    const TWEAK_10: &str = "39383736353433323130";
    const TWEAK_36: &str = "3737373770717273373737";

    /// Runs one NIST sample through `fpe` with the AES variant of the key's length and our
    /// alphabet mapping.
    fn nist_sample<C>(key: &str, alphabet: Alphabet, tweak: &str, pt: &str, ct: &str)
    where
        C: cipher::BlockCipherEncrypt + KeyInit + Clone,
    {
        let ff1 = FF1::<C>::new(&unhex(key), alphabet.radix()).unwrap();
        let to_numerals =
            |s: &str| -> Vec<u16> { s.chars().map(|c| alphabet.index(c).unwrap()).collect() };
        let out: Vec<u16> = ff1
            .encrypt(&unhex(tweak), &FlexibleNumeralString::from(to_numerals(pt)))
            .unwrap()
            .into();
        let got: String = out.iter().map(|&n| alphabet.chars[n as usize]).collect();
        assert_eq!(got, ct);
    }

    /// NIST SP 800-38G, FF1 samples 1–9 (AES-128, AES-192, AES-256; radix 10 and 36).
    #[test]
    fn nist_sp800_38g_ff1_samples() {
        let d = Alphabet::digits;
        let a = Alphabet::alphanumeric_lower;
        nist_sample::<aes::Aes128>(KEY128, d(), "", "0123456789", "2433477484");
        nist_sample::<aes::Aes128>(KEY128, d(), TWEAK_10, "0123456789", "6124200773");
        nist_sample::<aes::Aes128>(
            KEY128,
            a(),
            TWEAK_36,
            "0123456789abcdefghi",
            "a9tv40mll9kdu509eum",
        );
        nist_sample::<aes::Aes192>(KEY192, d(), "", "0123456789", "2830668132");
        nist_sample::<aes::Aes192>(KEY192, d(), TWEAK_10, "0123456789", "2496655549");
        nist_sample::<aes::Aes192>(
            KEY192,
            a(),
            TWEAK_36,
            "0123456789abcdefghi",
            "xbj3kv35jrawxv32ysr",
        );
        nist_sample::<aes::Aes256>(KEY256, d(), "", "0123456789", "6657667009");
        nist_sample::<aes::Aes256>(KEY256, d(), TWEAK_10, "0123456789", "1001623463");
        nist_sample::<aes::Aes256>(
            KEY256,
            a(),
            TWEAK_36,
            "0123456789abcdefghi",
            "xs8a0azh2avyalyzuwd",
        );
    }

    /// The same samples through [`Ff1Cipher`] (AES-256 ones, since the column mode uses AES-256).
    #[test]
    fn nist_samples_through_the_string_api() {
        let key: [u8; 32] = unhex(KEY256).try_into().unwrap();
        let d = Ff1Cipher::aes256(&key, Alphabet::digits());
        assert_eq!(d.encrypt_str(&[], "0123456789").unwrap(), "6657667009");
        assert_eq!(
            d.encrypt_str(&unhex(TWEAK_10), "0123456789").unwrap(),
            "1001623463"
        );
        assert_eq!(
            d.decrypt_str(&unhex(TWEAK_10), "1001623463").unwrap(),
            "0123456789"
        );
        let a = Ff1Cipher::aes256(&key, Alphabet::alphanumeric_lower());
        assert_eq!(
            a.encrypt_str(&unhex(TWEAK_36), "0123456789abcdefghi")
                .unwrap(),
            "xs8a0azh2avyalyzuwd"
        );
    }

    #[test]
    fn sm4_round_trips_and_keeps_the_format() {
        let ff1 = Ff1Cipher::sm4(&[7u8; 16], Alphabet::digits());
        for v in [
            "13800138000",
            "6222 0212 3456 7890 123",
            "010-8888-6666",
            "123456",
        ] {
            let t = ff1.encrypt_str(b"customers.phone", v).unwrap();
            assert_eq!(t.len(), v.len());
            for (a, b) in v.chars().zip(t.chars()) {
                assert_eq!(a.is_ascii_digit(), b.is_ascii_digit(), "{v} -> {t}");
            }
            assert_ne!(t, v);
            assert_eq!(ff1.decrypt_str(b"customers.phone", &t).unwrap(), v);
            assert_ne!(
                ff1.encrypt_str(b"staff.phone", v).unwrap(),
                t,
                "tweak separates domains"
            );
        }
        let id = Ff1Cipher::sm4(&[7u8; 16], Alphabet::id_card());
        let t = id.encrypt_str(b"d", "11010119900307457X").unwrap();
        assert_eq!(id.decrypt_str(b"d", &t).unwrap(), "11010119900307457X");
        let case = Ff1Cipher::sm4(&[7u8; 16], Alphabet::alphanumeric());
        let t = case.encrypt_str(b"d", "AbCdEf12").unwrap();
        assert_eq!(case.decrypt_str(b"d", &t).unwrap(), "AbCdEf12");
    }

    #[test]
    fn rejects_short_values_and_foreign_letters() {
        let ff1 = Ff1Cipher::sm4(&[7u8; 16], Alphabet::digits());
        assert!(matches!(
            ff1.encrypt_str(b"", "12345"),
            Err(Ff1Error::TooShort {
                found: 5,
                min: 6,
                ..
            })
        ));
        assert_eq!(
            ff1.encrypt_str(b"", "1234567a"),
            Err(Ff1Error::NotInAlphabet('a', "digits".into()))
        );
        assert_eq!(Alphabet::digits().min_len(), 6);
        assert_eq!(Alphabet::alphanumeric().min_len(), 4);
        assert!(Alphabet::custom("aa").is_err());
        assert!(Alphabet::from_name("emoji").is_err());
        assert_eq!(Alphabet::from_name("chars:01").unwrap().radix(), 2);
    }

    /// Each output digit position is close to uniform over many encryptions of distinct inputs
    /// (chi-square, 9 degrees of freedom, bound at p ≈ 0.0001 → 33.7).
    #[test]
    fn sm4_output_digits_are_uniform() {
        let ff1 = Ff1Cipher::sm4(&[0x5a; 16], Alphabet::digits());
        let n = 4000u32;
        let len = 8;
        let mut counts = vec![[0u32; 10]; len];
        for i in 0..n {
            let t = ff1
                .encrypt_str(b"dist", &format!("{:08}", i * 7919))
                .unwrap();
            for (pos, c) in t.chars().enumerate() {
                counts[pos][c.to_digit(10).unwrap() as usize] += 1;
            }
        }
        let expect = f64::from(n) / 10.0;
        for (pos, row) in counts.iter().enumerate() {
            let chi2: f64 = row
                .iter()
                .map(|&c| (f64::from(c) - expect).powi(2) / expect)
                .sum();
            assert!(
                chi2 < 33.7,
                "position {pos}: chi-square {chi2:.1}, counts {row:?}"
            );
        }
    }

    /// FF1 is a permutation: on a small domain every output is distinct.
    #[test]
    fn sm4_is_a_permutation_of_six_digit_strings() {
        let ff1 = Ff1Cipher::sm4(&[1u8; 16], Alphabet::digits());
        let mut seen = std::collections::HashSet::new();
        for i in 0..20_000u32 {
            assert!(seen.insert(ff1.encrypt_str(b"p", &format!("{i:06}")).unwrap()));
        }
    }
}
