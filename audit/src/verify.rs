//! Checking that the store is what the writer wrote: the hash chain across every day file,
//! and, with the key, the checkpoints.
//!
//! Verification streams through the files in chain order and recomputes every hash from the
//! stored fields, exactly as `query` shows them. Each problem is pinned to a file, a record and
//! a time, and the check then resynchronises on what is stored, so one changed record is
//! reported once rather than breaking everything after it.

use std::fmt;

use rusqlite::Connection;
use serde::Serialize;
use time::{Date, OffsetDateTime};

use crate::chain::{self, ChainHash, CheckpointKey, GENESIS_HASH};
use crate::error::AuditError;
use crate::store::read::{self, FileMeta};
use crate::store::schema::RECORD_COLUMNS;
use crate::store::{AuditStore, DayFile};
use crate::timefmt;

/// What to verify and how.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The checkpoint key: checkpoints' MACs are checked and every record must be covered.
    pub key: Option<CheckpointKey>,
    /// First day file to check (by the day in its name); earlier ones are taken as given.
    pub from: Option<Date>,
    /// Last day file to check.
    pub to: Option<Date>,
    /// Stop listing problems after this many (0: 100); the rest are only counted.
    pub max_problems: usize,
}

/// Where the checked part of the chain begins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ChainStart {
    /// No day files were checked.
    Empty,
    /// At the first record ever written (record 1, after the genesis hash).
    Genesis,
    /// After the last record of `file`, which was not checked: outside the range asked for,
    /// or no longer in the directory (`present: false`: removed by retention, or deleted).
    After {
        /// The file the first checked file continues.
        file: String,
        /// Whether that file is still in the directory.
        present: bool,
    },
}

/// One thing wrong with the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The day file.
    pub file: String,
    /// The record concerned, when there is one.
    pub seq: Option<u64>,
    /// Its event time, when it could be read.
    #[serde(with = "timefmt::serde_micros_opt")]
    pub time: Option<OffsetDateTime>,
    /// What is wrong.
    pub kind: ProblemKind,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(seq) = self.seq {
            write!(f, ", record {seq}")?;
        }
        if let Some(t) = self.time {
            write!(f, " ({})", timefmt::format_micros(t))?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// The kinds of problem `verify` finds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "problem")]
#[non_exhaustive]
pub enum ProblemKind {
    /// The file cannot be read as a Warden audit file.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// A day file the chain runs through is not in the directory.
    MissingFile {
        /// Its name.
        name: String,
    },
    /// The file names a different predecessor than the file before it in the directory.
    WrongPredecessor {
        /// The file before it in the directory (`None`: it is the first).
        expected: Option<String>,
        /// What its meta table names (`None`: it claims to start the chain).
        found: Option<String>,
    },
    /// The file does not continue the previous file's chain.
    BrokenLink {
        /// How.
        detail: String,
    },
    /// Records are missing from the sequence.
    MissingRecords {
        /// First missing.
        first: u64,
        /// Last missing.
        last: u64,
    },
    /// The record does not match its hash.
    HashMismatch,
    /// A row cannot be read back as a record.
    MalformedRecord {
        /// Why.
        reason: String,
    },
    /// A checkpoint row cannot be read.
    MalformedCheckpoint {
        /// Why.
        reason: String,
    },
    /// A checkpoint names a hash the chain does not have at its record.
    CheckpointMismatch,
    /// A checkpoint refers to a record that is not in the file.
    CheckpointWithoutRecord,
    /// A checkpoint's MAC is wrong under the key given.
    CheckpointBadMac,
    /// A checkpoint was made with another key.
    CheckpointOtherKey {
        /// The id of the key that made it.
        key_id: String,
        /// The id of the key given.
        given: String,
    },
    /// Checkpoints are missing: this one does not link to the one before.
    CheckpointsMissing {
        /// The checkpoint this one should follow.
        expected_prev: u64,
        /// The one it names.
        found_prev: u64,
    },
    /// Records no valid keyed checkpoint covers (appended after the last one, or written
    /// without a key).
    Uncovered {
        /// First uncovered record.
        first: u64,
        /// Last uncovered record.
        last: u64,
    },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::Unreadable { reason } => write!(f, "unreadable: {reason}"),
            ProblemKind::MissingFile { name } => write!(
                f,
                "the day file {name} is missing; this file continues the chain from it"
            ),
            ProblemKind::WrongPredecessor { expected, found } => write!(
                f,
                "this file says it follows {} but the file before it is {}",
                found.as_deref().unwrap_or("nothing (a new chain)"),
                expected.as_deref().unwrap_or("none"),
            ),
            ProblemKind::BrokenLink { detail } => {
                write!(f, "does not continue the previous file's chain: {detail}")
            }
            ProblemKind::MissingRecords { first, last } if first == last => {
                write!(f, "record {first} is missing (deleted)")
            }
            ProblemKind::MissingRecords { first, last } => {
                write!(f, "records {first} to {last} are missing (deleted)")
            }
            ProblemKind::HashMismatch => f.write_str(
                "hash mismatch: this record, or the one before it, was changed, or records \
                 were reordered or inserted",
            ),
            ProblemKind::MalformedRecord { reason } => write!(f, "malformed record: {reason}"),
            ProblemKind::MalformedCheckpoint { reason } => {
                write!(f, "malformed checkpoint: {reason}")
            }
            ProblemKind::CheckpointMismatch => {
                f.write_str("the checkpoint at this record names a different hash than the chain")
            }
            ProblemKind::CheckpointWithoutRecord => {
                f.write_str("a checkpoint refers to this record, which is not in the file")
            }
            ProblemKind::CheckpointBadMac => f.write_str(
                "the checkpoint's HMAC-SM3 is wrong: the checkpoint or the chain before it was \
                 rewritten",
            ),
            ProblemKind::CheckpointOtherKey { key_id, given } => write!(
                f,
                "the checkpoint was made with key {key_id}, not with the key given ({given})"
            ),
            ProblemKind::CheckpointsMissing {
                expected_prev,
                found_prev,
            } => write!(
                f,
                "checkpoints were removed: this one follows checkpoint {found_prev}, the last \
                 one found is {expected_prev}"
            ),
            ProblemKind::Uncovered { first, last } => write!(
                f,
                "records {first} to {last} are not covered by a keyed checkpoint (appended \
                 after the last one, or written without the key)"
            ),
        }
    }
}

/// What was checked in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// File name.
    pub name: String,
    /// Records read.
    pub records: u64,
    /// First record's sequence number.
    pub first_seq: Option<u64>,
    /// Last record's sequence number.
    pub last_seq: Option<u64>,
    /// Checkpoints read.
    pub checkpoints: u64,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Where the checked chain begins.
    pub start: ChainStart,
    /// The files checked, in chain order.
    pub files: Vec<FileSummary>,
    /// Records checked.
    pub records: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Checkpoints whose MAC was verified with the key.
    pub checkpoints_verified: u64,
    /// Whether a key was given.
    pub keyed: bool,
    /// Problems found, in chain order (the first is the first broken record).
    pub problems: Vec<Problem>,
    /// Problems found beyond the listed ones.
    pub more_problems: u64,
}

impl VerifyReport {
    /// `true` when nothing is wrong.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem in chain order.
    pub fn first_problem(&self) -> Option<&Problem> {
        self.problems.first()
    }
}

struct Checkpoint {
    seq: u64,
    hash: Vec<u8>,
    prev_seq: u64,
    written_at_us: i64,
    key_id: String,
    mac: Vec<u8>,
}

/// The previous checked file's end.
struct FileEnd {
    name: String,
    last_seq: u64,
    last_hash: ChainHash,
}

struct Verifier<'a> {
    options: &'a VerifyOptions,
    max_problems: usize,
    report: VerifyReport,
    /// The chain so far: next expected seq and the hash to link from.
    expected_seq: u64,
    prev_hash: ChainHash,
    /// The last checkpoint seen (or announced by a file's meta).
    last_checkpoint: Option<u64>,
    /// The highest record covered by a valid keyed checkpoint.
    covered_through: Option<u64>,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    /// The record just checked followed a gap in the sequence.
    just_gapped: bool,
    scratch: Vec<u8>,
}

/// Verifies `store`.
pub(crate) fn run(store: &AuditStore, options: &VerifyOptions) -> Result<VerifyReport, AuditError> {
    let files: Vec<&DayFile> = store
        .files()
        .iter()
        .filter(|f| options.from.is_none_or(|d| f.day >= d))
        .filter(|f| options.to.is_none_or(|d| f.day <= d))
        .collect();
    let mut v = Verifier {
        options,
        max_problems: if options.max_problems == 0 {
            100
        } else {
            options.max_problems
        },
        report: VerifyReport {
            start: ChainStart::Empty,
            files: Vec::new(),
            records: 0,
            checkpoints: 0,
            checkpoints_verified: 0,
            keyed: options.key.is_some(),
            problems: Vec::new(),
            more_problems: 0,
        },
        expected_seq: 1,
        prev_hash: GENESIS_HASH,
        last_checkpoint: None,
        covered_through: None,
        first_seq: None,
        last_seq: None,
        just_gapped: false,
        scratch: Vec::with_capacity(1024),
    };
    let mut prev: Option<FileEnd> = None;
    for (i, file) in files.iter().enumerate() {
        let name = file.name();
        let opened = read::open_day_file(&file.path).and_then(|(conn, meta)| {
            if meta.day == file.day {
                Ok((conn, meta))
            } else {
                Err(AuditError::NotAuditFile {
                    path: file.path.clone(),
                    reason: format!("its meta table says it holds {}", meta.day),
                })
            }
        });
        let (conn, meta) = match opened {
            Ok(x) => x,
            Err(e) => {
                v.problem(
                    &name,
                    None,
                    None,
                    ProblemKind::Unreadable {
                        reason: e.to_string(),
                    },
                );
                prev = None;
                continue;
            }
        };
        if i == 0 {
            v.start(store, &name, &meta);
        } else {
            v.link(store, &name, &meta, prev.as_ref());
        }
        v.expected_seq = meta.first_seq;
        v.prev_hash = meta.prev_hash;
        if v.last_checkpoint.is_none() || i == 0 {
            v.last_checkpoint = Some(meta.prev_checkpoint_seq);
        }
        let summary = v.file(&name, &conn, &file.path);
        prev = Some(FileEnd {
            name: name.clone(),
            last_seq: v.expected_seq - 1,
            last_hash: v.prev_hash,
        });
        v.report.files.push(summary);
    }
    // Link checks report a file's trailing problems while reading the next file: put every
    // problem back in chain order (file names sort by day).
    v.report.problems.sort_by(|a, b| {
        (a.file.as_str(), a.seq.unwrap_or(0)).cmp(&(b.file.as_str(), b.seq.unwrap_or(0)))
    });
    // Coverage is a conclusion drawn from everything above, so it comes last.
    if v.options.key.is_some()
        && let Some(last) = v.last_seq
    {
        let first_uncovered = match v.covered_through {
            Some(c) => c + 1,
            None => v.first_seq.unwrap_or(1),
        };
        if first_uncovered <= last {
            let name = v
                .report
                .files
                .iter()
                .find(|f| f.last_seq.is_some_and(|l| l >= first_uncovered))
                .map_or_else(String::new, |f| f.name.clone());
            v.problem(
                &name,
                Some(first_uncovered),
                None,
                ProblemKind::Uncovered {
                    first: first_uncovered,
                    last,
                },
            );
        }
    }
    Ok(v.report)
}

impl Verifier<'_> {
    fn problem(
        &mut self,
        file: &str,
        seq: Option<u64>,
        time: Option<OffsetDateTime>,
        kind: ProblemKind,
    ) {
        if self.report.problems.len() < self.max_problems {
            self.report.problems.push(Problem {
                file: file.to_owned(),
                seq,
                time,
                kind,
            });
        } else {
            self.report.more_problems += 1;
        }
    }

    /// The first checked file: does it start the chain, or continue an unchecked file?
    fn start(&mut self, store: &AuditStore, name: &str, meta: &FileMeta) {
        match &meta.prev_file {
            None => {
                self.report.start = ChainStart::Genesis;
                if meta.first_seq != 1 || meta.prev_hash != GENESIS_HASH {
                    self.problem(name, Some(meta.first_seq), None, ProblemKind::BrokenLink {
                        detail: format!(
                            "it claims to start the chain but begins at record {} after hash {}",
                            meta.first_seq,
                            hex::encode(meta.prev_hash)
                        ),
                    });
                }
            }
            Some(prev) => {
                let present = store.files().iter().any(|f| &f.name() == prev);
                self.report.start = ChainStart::After {
                    file: prev.clone(),
                    present,
                };
            }
        }
    }

    /// A file after the first: does it continue the file before it?
    fn link(&mut self, store: &AuditStore, name: &str, meta: &FileMeta, prev: Option<&FileEnd>) {
        let Some(prev) = prev else {
            // The file before could not be read; that is already reported.
            return;
        };
        if meta.prev_file.as_deref() != Some(prev.name.as_str()) {
            let kind = match &meta.prev_file {
                Some(named) if !store.files().iter().any(|f| &f.name() == named) => {
                    ProblemKind::MissingFile {
                        name: named.clone(),
                    }
                }
                found => ProblemKind::WrongPredecessor {
                    expected: Some(prev.name.clone()),
                    found: found.clone(),
                },
            };
            self.problem(name, Some(meta.first_seq), None, kind);
            return;
        }
        if meta.first_seq > prev.last_seq + 1 {
            self.problem(
                &prev.name,
                Some(prev.last_seq + 1),
                None,
                ProblemKind::MissingRecords {
                    first: prev.last_seq + 1,
                    last: meta.first_seq - 1,
                },
            );
        } else if meta.first_seq != prev.last_seq + 1 || meta.prev_hash != prev.last_hash {
            self.problem(name, Some(meta.first_seq), None, ProblemKind::BrokenLink {
                detail: format!(
                    "it begins at record {} after hash {}, but {} ends at record {} with hash {}",
                    meta.first_seq,
                    hex::encode(meta.prev_hash),
                    prev.name,
                    prev.last_seq,
                    hex::encode(prev.last_hash)
                ),
            });
        }
    }

    /// Checks every record and checkpoint of one file.
    fn file(&mut self, name: &str, conn: &Connection, path: &std::path::Path) -> FileSummary {
        let mut summary = FileSummary {
            name: name.to_owned(),
            records: 0,
            first_seq: None,
            last_seq: None,
            checkpoints: 0,
        };
        // One read transaction: records and checkpoints from the same snapshot, even while the
        // writer appends to this file.
        let _ = conn.execute_batch("BEGIN");
        let checked = self.file_rows(name, conn, &mut summary);
        let _ = conn.execute_batch("COMMIT");
        if let Err(reason) = checked {
            self.problem(
                name,
                None,
                None,
                ProblemKind::Unreadable {
                    reason: format!("{}: {reason}", path.display()),
                },
            );
        }
        summary
    }

    fn file_rows(
        &mut self,
        name: &str,
        conn: &Connection,
        summary: &mut FileSummary,
    ) -> Result<(), rusqlite::Error> {
        let mut records = conn.prepare(&format!(
            "SELECT {RECORD_COLUMNS} FROM records ORDER BY seq"
        ))?;
        let mut checkpoints = conn.prepare(
            "SELECT seq, hash, prev_seq, written_at_us, key_id, mac FROM checkpoints ORDER BY seq",
        )?;
        let mut cp_rows = checkpoints.query([])?;
        let mut next_cp = self.next_checkpoint(name, &mut cp_rows)?;
        let mut rows = records.query([])?;
        while let Some(row) = rows.next()? {
            let raw_seq: Option<i64> = row.get(0).ok();
            let raw_hash: Option<Vec<u8>> = row.get(30).ok();
            let (seq, time, stored_hash) = match read::decode_row(row) {
                Ok(stored) => {
                    let seq = stored.seq;
                    let time = stored.record.time;
                    self.check_seq(name, seq, Some(time));
                    let computed =
                        chain::hash_record(&self.prev_hash, seq, &stored.record, &mut self.scratch);
                    let stored_hash = raw_hash.unwrap_or_default();
                    if computed[..] != stored_hash[..] && !self.just_gapped {
                        self.problem(name, Some(seq), Some(time), ProblemKind::HashMismatch);
                    }
                    (seq, Some(time), stored_hash)
                }
                Err(m) => {
                    let seq = m
                        .seq
                        .or(raw_seq.map(|s| s as u64))
                        .unwrap_or(self.expected_seq);
                    self.check_seq(name, seq, None);
                    self.problem(
                        name,
                        Some(seq),
                        None,
                        ProblemKind::MalformedRecord { reason: m.reason },
                    );
                    (seq, None, raw_hash.unwrap_or_default())
                }
            };
            self.just_gapped = false;
            // Resynchronise on what is stored, so each problem is reported once.
            self.prev_hash = stored_hash.as_slice().try_into().unwrap_or(GENESIS_HASH);
            self.expected_seq = seq + 1;
            summary.records += 1;
            summary.first_seq.get_or_insert(seq);
            summary.last_seq = Some(seq);
            self.first_seq.get_or_insert(seq);
            self.last_seq = Some(seq);
            self.report.records += 1;
            // Checkpoints for records that are not there, then the one for this record.
            while let Some(cp) = next_cp.take_if(|cp| cp.seq <= seq) {
                summary.checkpoints += 1;
                if cp.seq < seq {
                    self.problem(
                        name,
                        Some(cp.seq),
                        None,
                        ProblemKind::CheckpointWithoutRecord,
                    );
                    self.note_checkpoint(name, &cp, time, false);
                } else {
                    let matches = cp.hash == stored_hash;
                    if !matches {
                        self.problem(name, Some(seq), time, ProblemKind::CheckpointMismatch);
                    }
                    self.note_checkpoint(name, &cp, time, matches);
                }
                next_cp = self.next_checkpoint(name, &mut cp_rows)?;
            }
        }
        while let Some(cp) = next_cp.take() {
            summary.checkpoints += 1;
            self.problem(
                name,
                Some(cp.seq),
                None,
                ProblemKind::CheckpointWithoutRecord,
            );
            self.note_checkpoint(name, &cp, None, false);
            next_cp = self.next_checkpoint(name, &mut cp_rows)?;
        }
        Ok(())
    }

    /// Reports records missing before `seq`.
    fn check_seq(&mut self, name: &str, seq: u64, time: Option<OffsetDateTime>) {
        if seq != self.expected_seq {
            if seq > self.expected_seq {
                let first = self.expected_seq;
                self.problem(
                    name,
                    Some(first),
                    None,
                    ProblemKind::MissingRecords {
                        first,
                        last: seq - 1,
                    },
                );
            } else {
                let detail = format!(
                    "record {seq} appears where record {} was expected",
                    self.expected_seq
                );
                self.problem(name, Some(seq), time, ProblemKind::BrokenLink { detail });
            }
            // The record after a gap links to a record we do not have: its hash cannot be
            // checked, and a mismatch there would only repeat the gap.
            self.just_gapped = true;
        }
    }

    fn next_checkpoint(
        &mut self,
        name: &str,
        rows: &mut rusqlite::Rows<'_>,
    ) -> Result<Option<Checkpoint>, rusqlite::Error> {
        loop {
            let Some(row) = rows.next()? else {
                return Ok(None);
            };
            let decoded = (|| -> Result<Checkpoint, rusqlite::Error> {
                Ok(Checkpoint {
                    seq: row.get::<_, i64>(0)? as u64,
                    hash: row.get(1)?,
                    prev_seq: row.get::<_, i64>(2)? as u64,
                    written_at_us: row.get(3)?,
                    key_id: row.get(4)?,
                    mac: row.get(5)?,
                })
            })();
            match decoded {
                Ok(cp) => return Ok(Some(cp)),
                Err(e) => {
                    self.report.checkpoints += 1;
                    let seq = row.get::<_, i64>(0).ok().map(|s| s as u64);
                    self.problem(
                        name,
                        seq,
                        None,
                        ProblemKind::MalformedCheckpoint {
                            reason: e.to_string(),
                        },
                    );
                }
            }
        }
    }

    /// Checks a checkpoint's link and (with the key) its MAC; `on_chain` says whether its
    /// hash is the chain's hash at its record.
    fn note_checkpoint(
        &mut self,
        name: &str,
        cp: &Checkpoint,
        time: Option<OffsetDateTime>,
        on_chain: bool,
    ) {
        self.report.checkpoints += 1;
        if let Some(expected) = self.last_checkpoint
            && cp.prev_seq != expected
        {
            self.problem(
                name,
                Some(cp.seq),
                time,
                ProblemKind::CheckpointsMissing {
                    expected_prev: expected,
                    found_prev: cp.prev_seq,
                },
            );
        }
        self.last_checkpoint = Some(cp.seq);
        let Some(key) = &self.options.key else {
            return;
        };
        if cp.key_id != key.id() {
            let kind = ProblemKind::CheckpointOtherKey {
                key_id: cp.key_id.clone(),
                given: key.id().to_owned(),
            };
            self.problem(name, Some(cp.seq), time, kind);
            return;
        }
        let Ok(hash) = <ChainHash>::try_from(cp.hash.as_slice()) else {
            self.problem(
                name,
                Some(cp.seq),
                time,
                ProblemKind::MalformedCheckpoint {
                    reason: format!("its hash is {} bytes, not 32", cp.hash.len()),
                },
            );
            return;
        };
        let expected_mac = key.mac(&chain::Checkpoint {
            seq: cp.seq,
            hash,
            prev_seq: cp.prev_seq,
            written_at_us: cp.written_at_us,
        });
        if expected_mac[..] != cp.mac[..] {
            self.problem(name, Some(cp.seq), time, ProblemKind::CheckpointBadMac);
            return;
        }
        self.report.checkpoints_verified += 1;
        if on_chain {
            self.covered_through = Some(self.covered_through.map_or(cp.seq, |c| c.max(cp.seq)));
        }
    }
}
