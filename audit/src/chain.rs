//! The SM3 hash chain and the keyed checkpoints that make the store tamper-evident.
//!
//! Every record is hashed together with the hash of the record before it, so changing,
//! removing, inserting or reordering a record breaks every hash after it. A plain chain can be
//! recomputed by whoever can rewrite the files, so the writer can also close every batch with a
//! checkpoint: HMAC-SM3 under a key the file rewriter does not have. The byte layouts here are
//! the format: changing them invalidates every existing store, so they carry version bytes.

use std::fmt;
use std::path::Path;

use warden_crypto::sm3::{DIGEST_LEN, Sm3Hasher, hmac_sm3, sm3};

use crate::error::AuditError;
use crate::record::AuditRecord;

/// An SM3 chain hash.
pub type ChainHash = [u8; DIGEST_LEN];

/// The "previous hash" of the very first record of a store.
pub const GENESIS_HASH: ChainHash = [0u8; DIGEST_LEN];

/// Version byte of the record encoding.
pub const RECORD_ENCODING_VERSION: u8 = 1;

/// Version byte of the checkpoint MAC input.
pub const CHECKPOINT_VERSION: u8 = 1;

const CHECKPOINT_LABEL: &[u8] = b"WARDEN-AUDIT-CHECKPOINT";
const KEY_ID_LABEL: &[u8] = b"WARDEN-AUDIT-KEY-ID";

/// Appends the canonical encoding of `record` at position `seq` to `out`.
///
/// Fixed field order; integers big-endian; strings as a u32 length and UTF-8 bytes; optional
/// values as a 0/1 presence byte followed by the value; lists as a u32 count followed by the
/// strings. Every field is self-delimiting, so two different records never encode the same.
pub fn encode_record(seq: u64, record: &AuditRecord, out: &mut Vec<u8>) {
    out.push(RECORD_ENCODING_VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&record.time_micros().to_be_bytes());
    put_str(out, record.event.as_str());
    out.extend_from_slice(&record.session_id.to_be_bytes());
    put_str(out, &record.upstream);
    put_str(out, record.protocol.as_str());
    put_str(out, &record.user);
    put_str(out, &record.database);
    put_str(out, &record.client_ip.to_string());
    out.extend_from_slice(&record.client_port.to_be_bytes());
    put_opt_str(out, record.client_mac.map(|m| m.to_string()).as_deref());
    put_opt_str(out, record.program.as_deref());
    put_opt_str(out, record.client_host.as_deref());
    put_opt_str(out, record.os_user.as_deref());
    put_opt_str(out, record.tls_subject.as_deref());
    put_opt_str(out, record.statement_kind.as_deref());
    put_opt_str(out, record.fingerprint.as_deref());
    put_opt_str(out, record.sql.as_deref());
    match record.statement_count {
        None => out.push(0),
        Some(n) => {
            out.push(1);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    put_list(out, &record.tables);
    put_list(out, &record.columns);
    put_list(out, &record.datasets);
    put_opt_u64(out, record.rows);
    put_opt_u64(out, record.result_bytes);
    put_opt_u64(out, record.latency_us);
    put_str(out, record.result.as_str());
    put_opt_str(out, record.error_code.as_deref());
    put_opt_str(out, record.message.as_deref());
    put_opt_str(out, record.decision.as_deref());
    put_opt_str(out, record.rule.as_deref());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Strings longer than 4 GiB cannot reach the store (SQLite's limit is far lower).
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

fn put_opt_u64(out: &mut Vec<u8>, v: Option<u64>) {
    match v {
        None => out.push(0),
        Some(v) => {
            out.push(1);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

fn put_list(out: &mut Vec<u8>, items: &[String]) {
    let n = u32::try_from(items.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_be_bytes());
    for item in items {
        put_str(out, item);
    }
}

/// `SM3(prev || encoding)`: the chain hash of a record whose canonical encoding is `encoding`.
pub fn chain_hash(prev: &ChainHash, encoding: &[u8]) -> ChainHash {
    let mut h = Sm3Hasher::new();
    h.update(prev);
    h.update(encoding);
    h.finalize()
}

/// The chain hash of `record` at position `seq` after `prev`, using `scratch` as buffer.
pub fn hash_record(
    prev: &ChainHash,
    seq: u64,
    record: &AuditRecord,
    scratch: &mut Vec<u8>,
) -> ChainHash {
    scratch.clear();
    encode_record(seq, record, scratch);
    chain_hash(prev, scratch)
}

/// The key that authenticates checkpoints.
#[derive(Clone)]
pub struct CheckpointKey {
    bytes: Vec<u8>,
    id: String,
}

impl CheckpointKey {
    /// Shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;

    /// A key from raw bytes.
    pub fn from_bytes(bytes: Vec<u8>, origin: &str) -> Result<Self, AuditError> {
        if bytes.len() < Self::MIN_LEN {
            return Err(AuditError::Key {
                origin: origin.to_owned(),
                reason: format!(
                    "the key is {} bytes; at least {} are needed (e.g. `openssl rand -hex 32`)",
                    bytes.len(),
                    Self::MIN_LEN
                ),
            });
        }
        let mut input = KEY_ID_LABEL.to_vec();
        input.extend_from_slice(&bytes);
        let id = hex::encode(&sm3(&input)[..8]);
        Ok(CheckpointKey { bytes, id })
    }

    /// A key written as hex text (surrounding whitespace ignored).
    pub fn from_hex(text: &str, origin: &str) -> Result<Self, AuditError> {
        let bytes = hex::decode(text.trim()).map_err(|e| AuditError::Key {
            origin: origin.to_owned(),
            reason: format!("the key must be hex text ({e})"),
        })?;
        Self::from_bytes(bytes, origin)
    }

    /// Reads a hex key from a file.
    pub fn from_file(path: &Path) -> Result<Self, AuditError> {
        let origin = format!("file {}", path.display());
        let text = std::fs::read_to_string(path).map_err(|e| AuditError::Key {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        Self::from_hex(&text, &origin)
    }

    /// Reads a hex key from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, AuditError> {
        let origin = format!("environment variable {var}");
        let text = std::env::var(var).map_err(|e| AuditError::Key {
            origin: origin.clone(),
            reason: e.to_string(),
        })?;
        Self::from_hex(&text, &origin)
    }

    /// The key named by a configuration, if it names one.
    pub fn from_config(config: &crate::AuditConfig) -> Result<Option<Self>, AuditError> {
        match (&config.checkpoint_key_file, &config.checkpoint_key_env) {
            (Some(file), _) => Self::from_file(file).map(Some),
            (None, Some(var)) => Self::from_env(var).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// A public identifier of the key (first 8 bytes of `SM3("WARDEN-AUDIT-KEY-ID" || key)`,
    /// hex), stored with each checkpoint so `verify` can tell "wrong key" from "tampered".
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The checkpoint MAC over `checkpoint`.
    pub fn mac(&self, checkpoint: &Checkpoint) -> ChainHash {
        hmac_sm3(&self.bytes, &checkpoint.mac_input())
    }
}

impl fmt::Debug for CheckpointKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CheckpointKey(id {})", self.id)
    }
}

impl Drop for CheckpointKey {
    fn drop(&mut self) {
        // Best effort: black_box keeps the wipe from being optimised away.
        self.bytes.fill(0);
        std::hint::black_box(&self.bytes);
    }
}

/// What a checkpoint asserts: the chain up to `seq` ends in `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The last record covered.
    pub seq: u64,
    /// That record's chain hash.
    pub hash: ChainHash,
    /// The `seq` of the checkpoint before this one (0 for the first), so removing a
    /// checkpoint from the middle is detectable.
    pub prev_seq: u64,
    /// When the writer made it, microseconds since the Unix epoch.
    pub written_at_us: i64,
}

impl Checkpoint {
    /// The MAC input: `"WARDEN-AUDIT-CHECKPOINT" || version || seq || hash || prev_seq ||
    /// written_at_us`, integers big-endian.
    pub fn mac_input(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(CHECKPOINT_LABEL.len() + 1 + 8 + DIGEST_LEN + 8 + 8);
        out.extend_from_slice(CHECKPOINT_LABEL);
        out.push(CHECKPOINT_VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.hash);
        out.extend_from_slice(&self.prev_seq.to_be_bytes());
        out.extend_from_slice(&self.written_at_us.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AuditEvent, Protocol};
    use time::macros::datetime;

    fn record() -> AuditRecord {
        AuditRecord::new(
            datetime!(2025-03-01 08:00:00.123456 UTC),
            AuditEvent::Statement,
            7,
            "main",
            Protocol::Postgres,
            "alice",
            "hr",
            "10.0.0.5".parse().unwrap(),
            50123,
        )
    }

    #[test]
    fn encoding_layout_is_as_documented() {
        let mut out = Vec::new();
        encode_record(1, &record(), &mut out);
        assert_eq!(out[0], RECORD_ENCODING_VERSION);
        assert_eq!(&out[1..9], &1u64.to_be_bytes());
        assert_eq!(&out[9..17], &1_740_816_000_123_456i64.to_be_bytes());
        assert_eq!(&out[17..21], &9u32.to_be_bytes());
        assert_eq!(&out[21..30], b"statement");
        assert_eq!(&out[30..38], &7u64.to_be_bytes());
    }

    #[test]
    fn moving_text_between_fields_changes_the_encoding() {
        let mut a = record();
        a.tables = vec!["ab".into(), "c".into()];
        let mut b = record();
        b.tables = vec!["a".into(), "bc".into()];
        let mut c = record();
        c.program = Some(String::new());
        let (mut ea, mut eb, mut ec, mut ed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        encode_record(1, &a, &mut ea);
        encode_record(1, &b, &mut eb);
        encode_record(1, &c, &mut ec);
        encode_record(1, &record(), &mut ed);
        assert_ne!(ea, eb);
        assert_ne!(ec, ed, "empty program and no program differ");
    }

    #[test]
    fn checkpoint_key_rules() {
        assert!(CheckpointKey::from_hex("00ff", "test").is_err());
        assert!(CheckpointKey::from_hex("zz", "test").is_err());
        let k = CheckpointKey::from_hex(&"11".repeat(32), "test").unwrap();
        assert_eq!(k.id().len(), 16);
        assert!(!format!("{k:?}").contains("1111"));
        let cp = Checkpoint {
            seq: 5,
            hash: [3; 32],
            prev_seq: 2,
            written_at_us: 9,
        };
        let other = CheckpointKey::from_hex(&"22".repeat(32), "test").unwrap();
        assert_ne!(k.mac(&cp), other.mac(&cp));
        assert_ne!(
            k.mac(&cp),
            k.mac(&Checkpoint {
                seq: 6,
                ..cp.clone()
            })
        );
    }
}
