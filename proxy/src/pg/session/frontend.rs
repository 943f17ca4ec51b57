//! Client to server: every message the client sends, on its way to the database.
//!
//! Messages that carry no SQL (Describe, Sync, Flush, COPY data...) are forwarded as the bytes
//! that arrived. A Query or Parse is analysed and put to the policy first, and is forwarded,
//! refused or rewritten as it decides. Every message that will get a reply is queued in the
//! [`Conversation`] before it leaves, so the other direction can match the replies.
//!
//! A refusal never reaches the database as the client's SQL. Warden sends in its place a
//! statement that is certain to fail at the database (so the database's transaction state and
//! the order of replies stay exactly as if the client's statement had failed there), and the
//! server-to-client direction replaces the resulting error with the refusal's own.

use std::sync::{Arc, Mutex};

use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::watch;
use warden_policy::{Decision, Refusal};

use super::SessionContext;
use super::state::{Conversation, MAX_NAMED, MAX_PENDING, Pending, Portal, Prepared, Start};
use crate::net::Stream;
use crate::pg::frame::{Frame, FrameError, FrameReader, FrameWriter};
use crate::pg::messages::MessageError;
use crate::pg::messages::frontend::{Bind, Execute, Parse, Query, Target, TargetRef};

/// SQL that fails at the database in parse analysis, on every PostgreSQL-family server, without
/// side effects. It stands in for a refused statement; the error it causes is replaced.
pub const REFUSAL_SQL: &str = "/* refused by warden */ WARDEN REFUSED";
/// A statement and portal name no client uses, for refused Parse and Execute messages.
pub const REFUSAL_NAME: &str = "__warden_refused__";

/// Why the client-to-server direction stopped.
#[derive(Debug)]
pub enum FrontendEnd {
    /// The client sent Terminate.
    Terminated,
    /// The client closed the connection without Terminate.
    Disconnected,
    /// The client broke the protocol.
    Protocol(String),
    /// The client sent more than warden will track.
    TooMuch(&'static str),
    /// Reading from the client or writing to the database failed.
    Io(std::io::Error),
    /// Warden is draining and the session was idle.
    Drained,
}

impl From<MessageError> for FrontendEnd {
    fn from(e: MessageError) -> Self {
        FrontendEnd::Protocol(e.to_string())
    }
}

pub struct Frontend<'a> {
    pub reader: FrameReader<ReadHalf<Stream>>,
    pub writer: FrameWriter<WriteHalf<Stream>>,
    pub state: &'a Mutex<Conversation>,
    pub ctx: &'a SessionContext,
    pub drain: watch::Receiver<bool>,
}

impl Frontend<'_> {
    pub async fn run(&mut self) -> FrontendEnd {
        let mut draining = *self.drain.borrow();
        loop {
            if draining && self.lock().idle() {
                return FrontendEnd::Drained;
            }
            let next = tokio::select! {
                biased;
                changed = self.drain.changed(), if !draining => {
                    draining = changed.is_err() || *self.drain.borrow();
                    continue;
                }
                next = self.reader.next() => next,
            };
            let frame = match next {
                Ok(Some(frame)) => frame,
                Ok(None) => return FrontendEnd::Disconnected,
                Err(FrameError::Io(e)) => return FrontendEnd::Io(e),
                Err(e) => return FrontendEnd::Protocol(e.to_string()),
            };
            self.ctx.metrics.bytes_in.inc_by(frame.bytes.len() as u64);
            let terminate = frame.tag == b'X';
            if let Err(end) = self.handle(frame).await {
                return end;
            }
            if terminate {
                let _ = self.writer.flush().await;
                return FrontendEnd::Terminated;
            }
            if !self.reader.has_buffered_frame()
                && let Err(e) = self.writer.flush().await
            {
                return FrontendEnd::Io(e);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conversation> {
        // A poisoned lock means a pump panicked; the session is ending anyway.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn forward(&mut self, frame: &Frame) -> Result<(), FrontendEnd> {
        self.writer.push_frame(frame).await.map_err(FrontendEnd::Io)
    }

    fn push(&self, conversation: &mut Conversation, entry: Pending) -> Result<(), FrontendEnd> {
        if conversation.pending.len() >= MAX_PENDING {
            return Err(FrontendEnd::TooMuch("requests in flight"));
        }
        conversation.pending.push_back(entry);
        Ok(())
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), FrontendEnd> {
        match frame.tag {
            b'Q' => self.query(frame).await,
            b'P' => self.parse(frame).await,
            b'B' => self.bind(frame).await,
            b'E' => self.execute(frame).await,
            b'D' => {
                TargetRef::decode(&frame)?;
                {
                    let mut c = self.lock();
                    self.push(&mut c, Pending::Describe)?;
                }
                self.forward(&frame).await
            }
            b'C' => self.close(frame).await,
            b'S' => {
                {
                    let mut c = self.lock();
                    // During COPY IN the server ignores Sync: it gets no reply.
                    if !c.copy_in {
                        c.generation += 1;
                        let generation = c.generation;
                        self.push(&mut c, Pending::Sync { generation })?;
                    }
                }
                self.forward(&frame).await
            }
            b'c' | b'f' => {
                {
                    let mut c = self.lock();
                    if c.copy_in {
                        c.copy_in = false;
                    } else {
                        self.push(&mut c, Pending::CopyEnd)?;
                    }
                }
                self.forward(&frame).await
            }
            b'F' => {
                let refusal = self.ctx.shared.audit_refusal();
                {
                    let mut c = self.lock();
                    c.generation += 1;
                    let generation = c.generation;
                    self.push(
                        &mut c,
                        Pending::FunctionCall {
                            start: Start::now(),
                            generation,
                            refusal: refusal.clone(),
                        },
                    )?;
                }
                match refusal {
                    None => self.forward(&frame).await,
                    Some(_) => self.forward(&refused_function_call()).await,
                }
            }
            // COPY data, Flush, Terminate, and password messages (which the database rejects
            // after startup) pass untouched.
            _ => self.forward(&frame).await,
        }
    }

    async fn query(&mut self, frame: Frame) -> Result<(), FrontendEnd> {
        let start = Start::now();
        let query = Query::decode(&frame)?;
        let untrusted = self.lock().untrusted_lexing;
        let analysis = self.ctx.shared.analyze(query.sql, untrusted);
        let decision = self
            .ctx
            .shared
            .decide(&self.ctx.identity, query.sql, &analysis);
        let (refusal, rewritten_by, out) = match decision {
            Decision::Allow => (None, None, None),
            Decision::Refuse(r) => (Some(r), None, Some(Query::encode(REFUSAL_SQL))),
            Decision::Rewrite(rw) => (None, Some(rw.rule), Some(Query::encode(&rw.sql))),
        };
        {
            let mut c = self.lock();
            c.generation += 1;
            let generation = c.generation;
            self.push(
                &mut c,
                Pending::Query {
                    analysis,
                    start,
                    refusal,
                    rewritten_by,
                    generation,
                },
            )?;
        }
        self.forward(out.as_ref().unwrap_or(&frame)).await
    }

    async fn parse(&mut self, frame: Frame) -> Result<(), FrontendEnd> {
        let start = Start::now();
        let parse = Parse::decode(&frame)?;
        let untrusted = self.lock().untrusted_lexing;
        let analysis = self.ctx.shared.analyze(parse.sql, untrusted);
        let decision = self
            .ctx
            .shared
            .decide(&self.ctx.identity, parse.sql, &analysis);
        let (refusal, rewritten_by, out) = match decision {
            Decision::Allow => (None, None, None),
            Decision::Refuse(r) => (
                Some(r),
                None,
                Some(Parse::encode(REFUSAL_NAME, REFUSAL_SQL, &[])),
            ),
            Decision::Rewrite(rw) => (
                None,
                Some(rw.rule),
                Some(Parse::encode(parse.name, &rw.sql, &parse.param_types)),
            ),
        };
        let prepared = Arc::new(Prepared {
            analysis,
            refusal,
            rewritten_by,
        });
        {
            let mut c = self.lock();
            if c.statements.len() >= MAX_NAMED && !c.statements.contains_key(parse.name) {
                return Err(FrontendEnd::TooMuch("prepared statements"));
            }
            let previous = c
                .statements
                .insert(parse.name.to_string(), prepared.clone());
            let entry = Pending::Parse {
                name: parse.name.to_string(),
                previous,
                prepared,
                start,
            };
            self.push(&mut c, entry)?;
        }
        self.forward(out.as_ref().unwrap_or(&frame)).await
    }

    async fn bind(&mut self, frame: Frame) -> Result<(), FrontendEnd> {
        let start = Start::now();
        let bind = Bind::decode(&frame)?;
        let refusal = self.ctx.shared.audit_refusal();
        {
            let mut c = self.lock();
            if c.portals.len() >= MAX_NAMED && !c.portals.contains_key(bind.portal) {
                return Err(FrontendEnd::TooMuch("portals"));
            }
            let statement = c.statements.get(bind.statement).cloned();
            let portal = Portal {
                statement: statement.clone(),
                generation: c.generation + 1,
            };
            let previous = c.portals.insert(bind.portal.to_string(), portal);
            let entry = Pending::Bind {
                portal: bind.portal.to_string(),
                previous,
                statement,
                start,
                refusal: refusal.clone(),
            };
            self.push(&mut c, entry)?;
        }
        match refusal {
            None => self.forward(&frame).await,
            Some(_) => self.forward(&refused_bind()).await,
        }
    }

    async fn execute(&mut self, frame: Frame) -> Result<(), FrontendEnd> {
        let start = Start::now();
        let execute = Execute::decode(&frame)?;
        let refusal = self.ctx.shared.audit_refusal();
        {
            let mut c = self.lock();
            let statement = c
                .portals
                .get(execute.portal)
                .and_then(|p| p.statement.clone());
            let entry = Pending::Execute {
                portal: execute.portal.to_string(),
                statement,
                start,
                refusal: refusal.clone(),
            };
            self.push(&mut c, entry)?;
        }
        match refusal {
            None => self.forward(&frame).await,
            Some(_) => self.forward(&Execute::encode(REFUSAL_NAME, 0)).await,
        }
    }

    async fn close(&mut self, frame: Frame) -> Result<(), FrontendEnd> {
        let close = TargetRef::decode(&frame)?;
        {
            let mut c = self.lock();
            let entry = match close.target {
                Target::Statement => Pending::CloseStatement {
                    name: close.name.to_string(),
                    previous: c.statements.remove(close.name),
                },
                Target::Portal => Pending::ClosePortal {
                    name: close.name.to_string(),
                    previous: c.portals.remove(close.name),
                },
            };
            self.push(&mut c, entry)?;
        }
        self.forward(&frame).await
    }
}

/// A Bind that the database rejects because its statement does not exist.
fn refused_bind() -> Frame {
    Bind {
        portal: REFUSAL_NAME,
        statement: REFUSAL_NAME,
        param_formats: vec![],
        params: vec![],
        result_formats: vec![],
    }
    .encode()
}

/// A FunctionCall the database rejects: no function has OID 0.
fn refused_function_call() -> Frame {
    crate::pg::messages::MessageBuilder::new(b'F')
        .i32(0)
        .i16(0)
        .i16(0)
        .i16(0)
        .finish()
}

/// The error a client sees for a refusal.
pub fn refusal_error(refusal: &Refusal) -> Frame {
    crate::pg::messages::backend::ErrorFields::error(&refusal.sqlstate, &refusal.message)
        .with_detail(format!("Refused by warden rule \"{}\".", refusal.rule))
        .encode()
}
