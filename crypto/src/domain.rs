//! The key domain: what a ciphertext is bound to besides its key.
//!
//! Every mode binds its ciphertexts to a key domain: the AEAD modes put it in the associated
//! data, the deterministic mode in the synthetic IV, the order-preserving mode in the PRF that
//! shapes its function, FF1 in the tweak. A value encrypted for `customers.id_card` therefore
//! does not decrypt, and does not compare equal, as a value of `staff.id_card`, even under the
//! same key. Columns that must join or compare on ciphertext (a foreign key and the key it
//! references) are given the same domain by the policy.

use crate::sm3::sm3;

/// Prefix of the domain's encoding, so that no other associated data can collide with it.
const DOMAIN_TAG: &[u8] = b"warden/key-domain/v1\0";

/// A key domain, normally `schema.table.column` or a name shared by joined columns.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyDomain {
    name: String,
    digest: [u8; 16],
}

impl KeyDomain {
    /// A domain with a free-form name.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let mut encoded = Vec::with_capacity(DOMAIN_TAG.len() + name.len());
        encoded.extend_from_slice(DOMAIN_TAG);
        encoded.extend_from_slice(name.as_bytes());
        let full = sm3(&encoded);
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&full[..16]);
        KeyDomain { name, digest }
    }

    /// The domain of one column: `schema.table.column`.
    pub fn column(schema: &str, table: &str, column: &str) -> Self {
        Self::new(format!("{schema}.{table}.{column}"))
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The domain's 128-bit digest, `SM3("warden/key-domain/v1\0" ‖ name)` truncated: what the
    /// modes bind (associated data, FF1 tweak, OPE PRF input). Fixed-length, so a short value
    /// pays the same small hashing cost whatever the domain's name.
    pub fn digest(&self) -> &[u8; 16] {
        &self.digest
    }
}

impl core::fmt::Debug for KeyDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "KeyDomain({:?})", self.name)
    }
}

impl core::fmt::Display for KeyDomain {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_differ_and_column_joins_parts() {
        let a = KeyDomain::column("public", "customers", "id_card");
        assert_eq!(a.name(), "public.customers.id_card");
        let b = KeyDomain::new("public.customers.id_card");
        assert_eq!(a, b);
        assert_ne!(a.digest(), KeyDomain::new("public.staff.id_card").digest());
        let mut expect = DOMAIN_TAG.to_vec();
        expect.extend_from_slice(b"public.customers.id_card");
        assert_eq!(a.digest()[..], crate::sm3::sm3(&expect)[..16]);
    }
}
