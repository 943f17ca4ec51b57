//! What one session remembers between the two directions of the relay.
//!
//! The client-to-server pump pushes one [`Pending`] entry for every message that will get a
//! reply, before it forwards the message; the server-to-client pump pops them as replies
//! arrive. Because an entry is queued before its message leaves, a reply always finds its
//! entry, however deep the client pipelines. The queue is what lets warden know which
//! statement a CommandComplete or an ErrorResponse belongs to, how many rows it returned and
//! how long it took.
//!
//! The client's prepared statements and portals are tracked by name, optimistically: a Parse
//! takes effect when it is sent, and if the database rejects it (or skips it after an earlier
//! error in the pipeline) the previous entry is put back, newest first.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use time::OffsetDateTime;
use warden_analysis::Analysis;
use warden_encryption::Plan;
use warden_policy::Refusal;

use crate::pg::messages::rows::Field;

/// A statement the client prepared (Parse), as warden understood it.
#[derive(Debug)]
pub struct Prepared {
    pub analysis: Arc<Analysis>,
    /// Set when the policy refused the Parse: the statement does not exist on the database.
    pub refusal: Option<Refusal>,
    /// Set when a rule rewrote the statement.
    pub rewritten_by: Option<String>,
    /// Set when the statement touches encrypted columns.
    pub encryption: Option<PreparedEncryption>,
}

/// What a prepared statement needs for column encryption.
#[derive(Debug)]
pub struct PreparedEncryption {
    pub plan: Arc<Plan>,
    /// The parameter types the client declared in its Parse.
    pub client_param_types: Vec<i32>,
    /// The statement's result columns, from the Describe warden sends after the Parse
    /// (`None` until its reply arrives; empty when the statement returns no rows).
    pub fields: Mutex<Option<Arc<Vec<Field>>>>,
}

/// A portal the client bound.
#[derive(Debug, Clone)]
pub struct Portal {
    /// The statement it runs; `None` when the Bind named a statement warden does not know
    /// (the database will reject the Bind).
    pub statement: Option<Arc<Prepared>>,
    /// The Sync generation the portal was bound in: portals die when their transaction ends.
    pub generation: u64,
    /// The result format codes of the Bind.
    pub result_formats: Arc<[i16]>,
}

/// When and how a statement execution began.
#[derive(Debug, Clone)]
pub struct Start {
    /// Wall-clock receipt time, for the audit record.
    pub time: OffsetDateTime,
    /// Monotonic receipt time, for latency.
    pub at: Instant,
}

impl Start {
    pub fn now() -> Start {
        Start {
            time: OffsetDateTime::now_utc(),
            at: Instant::now(),
        }
    }
}

/// A reply the session is waiting for, in order.
#[derive(Debug)]
pub enum Pending {
    /// A simple Query: replies until ReadyForQuery, one completion per statement.
    Query {
        analysis: Arc<Analysis>,
        /// The encryption plan, when the text touches encrypted columns.
        plan: Option<Arc<Plan>>,
        start: Start,
        refusal: Option<Refusal>,
        rewritten_by: Option<String>,
        generation: u64,
    },
    /// A fast-path FunctionCall: FunctionCallResponse, then ReadyForQuery.
    FunctionCall {
        start: Start,
        generation: u64,
        refusal: Option<Refusal>,
    },
    Parse {
        name: String,
        previous: Option<Arc<Prepared>>,
        prepared: Arc<Prepared>,
        start: Start,
    },
    Bind {
        portal: String,
        previous: Option<Portal>,
        statement: Option<Arc<Prepared>>,
        start: Start,
        refusal: Option<Refusal>,
    },
    Describe {
        /// The statement described (directly, or through its portal), when it touches
        /// encrypted columns: its descriptions are rewritten.
        statement: Option<Arc<Prepared>>,
    },
    /// A Describe of a prepared statement that warden sent itself (after a Parse touching
    /// encrypted columns): its replies are consumed, not forwarded.
    InternalDescribe {
        statement: Arc<Prepared>,
    },
    Execute {
        portal: String,
        statement: Option<Arc<Prepared>>,
        /// The portal's result format codes.
        result_formats: Arc<[i16]>,
        start: Start,
        refusal: Option<Refusal>,
    },
    CloseStatement {
        name: String,
        previous: Option<Arc<Prepared>>,
    },
    ClosePortal {
        name: String,
        previous: Option<Portal>,
    },
    Sync {
        generation: u64,
    },
    /// Not a reply: the client ended a COPY IN (CopyDone or CopyFail) before the server's
    /// CopyInResponse was seen. Marks where the Syncs the server ignores during COPY IN stop.
    CopyEnd,
}

/// The state both pumps share (behind a mutex held only briefly, never across an await).
#[derive(Default)]
pub struct Conversation {
    pub pending: VecDeque<Pending>,
    pub statements: HashMap<String, Arc<Prepared>>,
    pub portals: HashMap<String, Portal>,
    /// Incremented for every Sync and simple Query sent: the unit in which PostgreSQL ends
    /// implicit transactions.
    pub generation: u64,
    /// The transaction status of the last ReadyForQuery (`I`, `T` or `E`).
    pub status: u8,
    /// The server is in COPY IN and the client has not ended it yet: the server ignores Sync
    /// (and Flush) until CopyDone or CopyFail, so no reply is expected for them.
    pub copy_in: bool,
    /// Why the session's SQL cannot be lexed the way the analyser lexes it, if it cannot.
    pub untrusted_lexing: Option<&'static str>,
    standard_strings: bool,
    utf8: bool,
}

/// Bounds on what a client can make warden remember.
pub const MAX_PENDING: usize = 1 << 20;
pub const MAX_NAMED: usize = 100_000;

impl Conversation {
    pub fn new() -> Conversation {
        Conversation {
            status: b'I',
            standard_strings: true,
            utf8: true,
            ..Conversation::default()
        }
    }

    /// Follows the run-time parameters that change how the server lexes SQL text: with
    /// `standard_conforming_strings` off a backslash escapes a quote, and a client encoding other
    /// than UTF-8 can hide quote and backslash bytes inside multi-byte characters. Either way
    /// warden's analysis could read the text differently from the server, so it is treated as
    /// opaque (see `Shared::analyze`).
    pub fn parameter(&mut self, name: &str, value: &str) {
        match name {
            "standard_conforming_strings" => self.standard_strings = value == "on",
            "client_encoding" => {
                let v = value.to_ascii_uppercase().replace(['-', '_'], "");
                self.utf8 = v == "UTF8" || v == "UNICODE";
            }
            _ => return,
        }
        self.untrusted_lexing = if !self.standard_strings {
            Some("standard_conforming_strings is off: warden does not analyse this session's SQL")
        } else if !self.utf8 {
            Some("the client encoding is not UTF-8: warden does not analyse this session's SQL")
        } else {
            None
        };
    }

    /// Whether the session is between transactions with nothing in flight.
    pub fn idle(&self) -> bool {
        self.pending.iter().all(|p| matches!(p, Pending::CopyEnd)) && self.status == b'I'
    }

    /// The server started a COPY IN for the entry at the front: the Syncs the client sent
    /// since, up to its CopyDone/CopyFail, get no reply. If the client has not ended the copy
    /// yet, later Syncs are not queued either (see `copy_in`).
    pub fn copy_in_started(&mut self) {
        let mut i = 1;
        while i < self.pending.len() {
            match self.pending[i] {
                Pending::Sync { .. } => {
                    self.pending.remove(i);
                }
                Pending::CopyEnd => {
                    self.pending.remove(i);
                    return;
                }
                _ => i += 1,
            }
        }
        self.copy_in = true;
    }

    /// Drops COPY markers at the front, which stand for no reply.
    pub fn skip_markers(&mut self) {
        while matches!(self.pending.front(), Some(Pending::CopyEnd)) {
            self.pending.pop_front();
        }
    }

    /// Undoes the name-table effect of an entry the database rejected or skipped.
    pub fn undo(&mut self, entry: &Pending) {
        match entry {
            Pending::Parse { name, previous, .. } | Pending::CloseStatement { name, previous } => {
                match previous {
                    Some(p) => {
                        self.statements.insert(name.clone(), p.clone());
                    }
                    None => {
                        self.statements.remove(name);
                    }
                }
            }
            Pending::Bind {
                portal: name,
                previous,
                ..
            }
            | Pending::ClosePortal { name, previous } => match previous {
                Some(p) => {
                    self.portals.insert(name.clone(), p.clone());
                }
                None => {
                    self.portals.remove(name);
                }
            },
            _ => {}
        }
    }

    /// A transaction ended at the Sync or Query of `generation`: its portals are gone.
    pub fn end_transaction(&mut self, generation: u64) {
        self.portals.retain(|_, p| p.generation > generation);
    }
}
