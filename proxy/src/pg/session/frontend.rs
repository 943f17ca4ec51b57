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
use super::copy::CopyCodec;
use super::crypt;
use super::state::{
    Conversation, MAX_NAMED, MAX_PENDING, Pending, Portal, Prepared, PreparedEncryption, Start,
};
use crate::encryption::text::{PG_SQLSTATES, TextOutcome, plan_text};
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
    /// The COPY FROM STDIN in progress on encrypted columns, if any.
    pub copy_in: Option<CopyIn>,
}

/// A COPY FROM STDIN whose rows warden encrypts.
pub enum CopyIn {
    Active(CopyCodec),
    /// A row could not be encrypted: the database got CopyFail, the client's remaining
    /// CopyData is dropped.
    Failed,
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
                let target = TargetRef::decode(&frame)?;
                {
                    let mut c = self.lock();
                    let statement = match target.target {
                        Target::Statement => c.statements.get(target.name).cloned(),
                        Target::Portal => {
                            c.portals.get(target.name).and_then(|p| p.statement.clone())
                        }
                    }
                    .filter(|s| s.encryption.is_some());
                    self.push(&mut c, Pending::Describe { statement })?;
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
            b'd' => match &mut self.copy_in {
                None => self.forward(&frame).await,
                Some(CopyIn::Failed) => Ok(()),
                Some(CopyIn::Active(codec)) => match codec.feed(frame.body()) {
                    Ok(rows) if rows.is_empty() => Ok(()),
                    Ok(rows) => self.forward(&copy_data(&rows)).await,
                    Err(e) => {
                        self.copy_in = Some(CopyIn::Failed);
                        self.forward(&copy_fail(&e)).await
                    }
                },
            },
            b'c' | b'f' => {
                {
                    let mut c = self.lock();
                    if c.copy_in {
                        c.copy_in = false;
                    } else {
                        self.push(&mut c, Pending::CopyEnd)?;
                    }
                }
                match self.copy_in.take() {
                    Some(CopyIn::Active(mut codec)) if frame.tag == b'c' => match codec.finish() {
                        Ok(rest) => {
                            if !rest.is_empty() {
                                self.forward(&copy_data(&rest)).await?;
                            }
                            self.forward(&frame).await
                        }
                        Err(e) => self.forward(&copy_fail(&e)).await,
                    },
                    _ => self.forward(&frame).await,
                }
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
        let (mut refusal, rewritten_by, mut out) = match decision {
            Decision::Allow => (None, None, None),
            Decision::Refuse(r) => (Some(r), None, Some(Query::encode(REFUSAL_SQL))),
            Decision::Rewrite(rw) => (None, Some(rw.rule), Some(Query::encode(&rw.sql))),
        };
        let mut plan = None;
        self.copy_in = None;
        if refusal.is_none()
            && let Some(encryption) = &self.ctx.encryption
        {
            let policy_text = match &out {
                Some(f) => Some(Query::decode(f)?.sql.to_vec()),
                None => None,
            };
            let (sql, readable) = sql_text(
                policy_text.as_deref().unwrap_or(query.sql),
                untrusted.is_none(),
            );
            let template = (rewritten_by.is_none() && analysis.is_understood())
                .then_some(analysis.redacted_sql.as_str());
            match plan_text(
                &encryption.planner(),
                &sql,
                template,
                readable,
                PG_SQLSTATES,
            ) {
                TextOutcome::Untouched => {}
                TextOutcome::Planned { plan: p, sql } => {
                    if let Some(sql) = sql {
                        out = Some(Query::encode(&sql));
                    }
                    self.copy_in = copy_codec(&p);
                    plan = Some(p);
                }
                TextOutcome::Refused(r) => {
                    refusal = Some(r);
                    out = Some(Query::encode(REFUSAL_SQL));
                }
            }
        }
        {
            let mut c = self.lock();
            c.generation += 1;
            let generation = c.generation;
            self.push(
                &mut c,
                Pending::Query {
                    analysis,
                    plan,
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
        let (mut refusal, rewritten_by, mut sql) = match decision {
            Decision::Allow => (None, None, None),
            Decision::Refuse(r) => (Some(r), None, None),
            Decision::Rewrite(rw) => (None, Some(rw.rule), Some(rw.sql)),
        };
        let mut encryption = None;
        if refusal.is_none()
            && let Some(enc) = &self.ctx.encryption
        {
            let (text, readable) = match &sql {
                Some(s) => (std::borrow::Cow::Borrowed(s.as_str()), untrusted.is_none()),
                None => sql_text(parse.sql, untrusted.is_none()),
            };
            let template = (rewritten_by.is_none() && analysis.is_understood())
                .then_some(analysis.redacted_sql.as_str());
            match plan_text(&enc.planner(), &text, template, readable, PG_SQLSTATES) {
                TextOutcome::Untouched => {}
                TextOutcome::Planned {
                    plan,
                    sql: rewritten,
                } => {
                    sql = Some(rewritten.unwrap_or_else(|| text.into_owned()));
                    encryption = Some(PreparedEncryption {
                        plan,
                        client_param_types: parse.param_types.clone(),
                        fields: std::sync::Mutex::new(None),
                    });
                }
                TextOutcome::Refused(r) => refusal = Some(r),
            }
        }
        let out = match (&refusal, &sql, &encryption) {
            (Some(_), _, _) => Some(Parse::encode(REFUSAL_NAME, REFUSAL_SQL, &[])),
            // Planned statements always carry their text (rewritten or not).
            (None, None, _) => None,
            (None, Some(sql), encryption) => {
                let types = match encryption {
                    Some(e) => crypt::parse_param_types(&parse.param_types, &e.plan),
                    None => parse.param_types.clone(),
                };
                Some(Parse::encode(parse.name, sql, &types))
            }
        };
        let describe = encryption.is_some();
        let prepared = Arc::new(Prepared {
            analysis,
            refusal,
            rewritten_by,
            encryption,
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
                prepared: prepared.clone(),
                start,
            };
            self.push(&mut c, entry)?;
            if describe {
                self.push(
                    &mut c,
                    Pending::InternalDescribe {
                        statement: prepared,
                    },
                )?;
            }
        }
        self.forward(out.as_ref().unwrap_or(&frame)).await?;
        if describe {
            // Warden's own Describe: the statement's result columns, so rows of its portals can
            // be decrypted even when the client never describes them.
            self.forward(&describe_statement(parse.name)).await?;
        }
        Ok(())
    }

    async fn bind(&mut self, frame: Frame) -> Result<(), FrontendEnd> {
        let start = Start::now();
        let bind = Bind::decode(&frame)?;
        let mut refusal = self.ctx.shared.audit_refusal();
        let statement = self.lock().statements.get(bind.statement).cloned();
        let mut out = None;
        if refusal.is_none()
            && let Some(e) = statement.as_ref().and_then(|s| s.encryption.as_ref())
        {
            match crypt::encrypt_bind(&bind, &e.plan, &e.client_param_types) {
                Ok(frame) => out = frame,
                Err(err) => refusal = Some(PG_SQLSTATES.value_refusal(&err)),
            }
        }
        {
            let mut c = self.lock();
            if c.portals.len() >= MAX_NAMED && !c.portals.contains_key(bind.portal) {
                return Err(FrontendEnd::TooMuch("portals"));
            }
            let portal = Portal {
                statement: statement.clone(),
                generation: c.generation + 1,
                result_formats: bind.result_formats.clone().into(),
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
            None => self.forward(out.as_ref().unwrap_or(&frame)).await,
            Some(_) => self.forward(&refused_bind()).await,
        }
    }

    async fn execute(&mut self, frame: Frame) -> Result<(), FrontendEnd> {
        let start = Start::now();
        let execute = Execute::decode(&frame)?;
        let refusal = self.ctx.shared.audit_refusal();
        let copy_in = {
            let mut c = self.lock();
            let (statement, result_formats) = match c.portals.get(execute.portal) {
                Some(p) => (p.statement.clone(), p.result_formats.clone()),
                None => (None, Arc::from(Vec::new())),
            };
            let copy_in = statement
                .as_ref()
                .and_then(|s| s.encryption.as_ref())
                .and_then(|e| copy_codec(&e.plan));
            let entry = Pending::Execute {
                portal: execute.portal.to_string(),
                statement,
                result_formats,
                start,
                refusal: refusal.clone(),
            };
            self.push(&mut c, entry)?;
            copy_in
        };
        self.copy_in = copy_in;
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

/// A statement's text for the encryption planner, borrowed when it is UTF-8; `readable` is
/// false when it is not (or the session's lexing is not the planner's): the planner then only
/// checks which tables it names.
fn sql_text(bytes: &[u8], readable: bool) -> (std::borrow::Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (std::borrow::Cow::Borrowed(s), readable),
        Err(_) => (String::from_utf8_lossy(bytes), false),
    }
}

/// The codec of a plan's COPY FROM STDIN, if it has one.
fn copy_codec(plan: &Arc<warden_encryption::Plan>) -> Option<CopyIn> {
    plan.copy
        .as_ref()
        .filter(|c| c.into_database)
        .map(|c| CopyIn::Active(CopyCodec::new(c.clone())))
}

/// `d`: COPY data.
pub fn copy_data(data: &[u8]) -> Frame {
    crate::pg::messages::MessageBuilder::new(b'd')
        .bytes(data)
        .finish()
}

/// `f`: CopyFail with a message (the database ends the COPY with an error naming it).
fn copy_fail(message: &str) -> Frame {
    crate::pg::messages::MessageBuilder::new(b'f')
        .cstr(message)
        .finish()
}

/// `D` for a prepared statement.
fn describe_statement(name: &str) -> Frame {
    crate::pg::messages::MessageBuilder::new(b'D')
        .u8(b'S')
        .cstr(name)
        .finish()
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
