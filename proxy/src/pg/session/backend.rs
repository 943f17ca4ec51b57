//! Server to client: every message the database sends, on its way back to the client.
//!
//! Rows and most replies are forwarded as the bytes that arrived; warden only counts them.
//! Completion messages (CommandComplete, EmptyQueryResponse, PortalSuspended, ErrorResponse,
//! ReadyForQuery) are matched against the [`Conversation`]'s queue to finish the audit record of
//! the statement they belong to. An error caused by a refusal is replaced by the refusal's own
//! error. A reply that matches nothing warden sent means the two sides no longer agree on the
//! state of the session; warden then ends the session rather than guess (fail closed).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::watch;
use warden_audit::{AuditEvent, AuditRecord};
use warden_policy::Refusal;

use super::SessionContext;
use super::copy::CopyCodec;
use super::crypt::{ResultTransform, describe_params};
use super::frontend::{copy_data, refusal_error};
use super::state::{Conversation, Pending, Prepared, Start};
use crate::net::Stream;
use crate::pg::frame::{Frame, FrameError, FrameReader, FrameWriter};
use crate::pg::messages::backend::{
    ErrorFields, ParameterStatus, command_tag, ready_for_query_status, rows_in_tag,
};
use crate::pg::messages::rows::{
    decode_parameter_description, decode_row_description, encode_parameter_description,
    encode_row_description,
};
use crate::pipeline::records::{Completion, SessionRecords};

/// Why the server-to-client direction stopped.
#[derive(Debug)]
pub enum BackendEnd {
    /// The database closed the connection.
    ServerClosed,
    /// The database broke the protocol.
    Protocol(String),
    /// A reply matched nothing warden sent.
    Desync(String),
    /// Reading from the database or writing to the client failed.
    Io(std::io::Error),
    /// Warden is draining and the session became idle.
    Drained,
}

/// A portal that returned some rows and was suspended (Execute with a row limit).
struct Suspended {
    statement: Option<Arc<Prepared>>,
    start: Start,
    rows: u64,
    bytes: u64,
}

pub struct Backend<'a> {
    pub reader: FrameReader<ReadHalf<Stream>>,
    pub writer: FrameWriter<WriteHalf<Stream>>,
    pub state: &'a Mutex<Conversation>,
    pub ctx: &'a SessionContext,
    pub records: SessionRecords,
    pub drain: watch::Receiver<bool>,
    rows: u64,
    bytes: u64,
    /// Which statement of the current simple Query the next completion belongs to.
    statement_index: usize,
    /// When the last reply completed: the next statement in a pipeline starts no earlier.
    last_done: Instant,
    /// An extended-protocol message failed; the database skips everything until Sync.
    failing: bool,
    /// Name-table effects to undo, oldest first, when the failed segment ends.
    undo: Vec<Pending>,
    suspended: HashMap<String, Suspended>,
    outbox: Vec<AuditRecord>,
    /// How the rows of the current result set are decrypted (`None`: forwarded as they are).
    transform: Option<Arc<ResultTransform>>,
    /// `transform` is set for the current result set.
    transform_ready: bool,
    /// A row of the current result set could not be decrypted: the rest is withheld.
    row_error: Option<String>,
    /// The COPY TO STDOUT in progress on encrypted columns, if any.
    copy_out: Option<CopyCodec>,
}

impl<'a> Backend<'a> {
    pub fn new(
        reader: FrameReader<ReadHalf<Stream>>,
        writer: FrameWriter<WriteHalf<Stream>>,
        state: &'a Mutex<Conversation>,
        ctx: &'a SessionContext,
        records: SessionRecords,
        drain: watch::Receiver<bool>,
    ) -> Self {
        Backend {
            reader,
            writer,
            state,
            ctx,
            records,
            drain,
            rows: 0,
            bytes: 0,
            statement_index: 0,
            last_done: Instant::now(),
            failing: false,
            undo: Vec::new(),
            suspended: HashMap::new(),
            outbox: Vec::new(),
            transform: None,
            transform_ready: false,
            row_error: None,
            copy_out: None,
        }
    }

    pub async fn run(&mut self) -> BackendEnd {
        loop {
            let frame = match self.reader.next().await {
                Ok(Some(frame)) => frame,
                Ok(None) => {
                    let _ = self.writer.flush().await;
                    return BackendEnd::ServerClosed;
                }
                Err(FrameError::Io(e)) => return BackendEnd::Io(e),
                Err(e) => return BackendEnd::Protocol(e.to_string()),
            };
            self.ctx.metrics.bytes_out.inc_by(frame.bytes.len() as u64);
            let result = self.handle(frame).await;
            self.submit_records().await;
            match result {
                Ok(false) => {}
                Ok(true) => {
                    let _ = self.writer.flush().await;
                    return BackendEnd::Drained;
                }
                Err(end) => {
                    let _ = self.writer.flush().await;
                    return end;
                }
            }
            if !self.reader.has_buffered_frame()
                && let Err(e) = self.writer.flush().await
            {
                return BackendEnd::Io(e);
            }
        }
    }

    /// The conversation, with COPY markers at the front (which stand for no reply) dropped.
    fn lock(&self) -> std::sync::MutexGuard<'a, Conversation> {
        let mut c = self.state.lock().unwrap_or_else(|p| p.into_inner());
        c.skip_markers();
        c
    }

    async fn forward(&mut self, frame: &Frame) -> Result<(), BackendEnd> {
        self.writer.push_frame(frame).await.map_err(BackendEnd::Io)
    }

    /// Handles one message; `Ok(true)` when the session should end because warden drains.
    async fn handle(&mut self, frame: Frame) -> Result<bool, BackendEnd> {
        match frame.tag {
            b'D' => {
                self.rows += 1;
                self.bytes += frame.bytes.len() as u64;
                if self.ctx.encryption.is_some() {
                    if let Some(row) = self.decrypt_row(&frame) {
                        self.forward(&row).await?;
                    }
                } else {
                    self.forward(&frame).await?;
                }
            }
            b'd' => {
                self.bytes += frame.bytes.len() as u64;
                match self.copy_out.as_mut() {
                    None => self.forward(&frame).await?,
                    Some(_) if self.row_error.is_some() => {}
                    Some(codec) => match codec.feed(frame.body()) {
                        Ok(rows) if rows.is_empty() => {}
                        Ok(rows) => self.forward(&copy_data(&rows)).await?,
                        Err(e) => self.row_error = Some(e),
                    },
                }
            }
            b'H' => {
                self.copy_out = self.copy_out_codec();
                self.forward(&frame).await?;
            }
            b'c' if self.copy_out.is_some() => {
                if let Some(mut codec) = self.copy_out.take()
                    && self.row_error.is_none()
                {
                    match codec.finish() {
                        Ok(rest) if !rest.is_empty() => self.forward(&copy_data(&rest)).await?,
                        Ok(_) => {}
                        Err(e) => self.row_error = Some(e),
                    }
                }
                self.forward(&frame).await?;
            }
            b'C' => {
                self.command_complete(&frame)?;
                let withheld = self.end_result();
                self.forward(withheld.as_ref().unwrap_or(&frame)).await?;
            }
            b'I' => {
                self.empty_query()?;
                self.end_result();
                self.forward(&frame).await?;
            }
            b's' => {
                self.portal_suspended()?;
                let withheld = self.end_result();
                self.forward(withheld.as_ref().unwrap_or(&frame)).await?;
            }
            b'E' => {
                let replacement = self.error(&frame)?;
                self.end_result();
                self.forward(replacement.as_ref().unwrap_or(&frame)).await?;
            }
            b'Z' => {
                let drained = self.ready(&frame)?;
                self.end_result();
                self.forward(&frame).await?;
                return Ok(drained);
            }
            b'n' if self.internal_describe_front() => {
                let mut c = self.lock();
                if let Some(Pending::InternalDescribe { statement }) = c.pending.pop_front()
                    && let Some(e) = &statement.encryption
                {
                    *e.fields.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(Arc::new(Vec::new()));
                }
            }
            b't' if self.internal_describe_front() => {}
            b't' => {
                let rewritten = self.describe_params(&frame)?;
                self.forward(rewritten.as_ref().unwrap_or(&frame)).await?;
            }
            b'1' | b'2' | b'3' | b'n' => {
                self.reply(frame.tag)?;
                self.forward(&frame).await?;
            }
            b'T' => {
                if let Some(rewritten) = self.row_description(&frame)? {
                    self.forward(&rewritten).await?;
                }
            }
            b'S' => {
                if let Ok(status) = ParameterStatus::decode(&frame) {
                    if status.name == "application_name" {
                        self.records.set_program(status.value);
                    }
                    self.lock().parameter(status.name, status.value);
                }
                self.forward(&frame).await?;
            }
            b'G' => {
                self.lock().copy_in_started();
                self.forward(&frame).await?;
            }
            b'K' | b'R' => {
                return Err(BackendEnd::Protocol(format!(
                    "the database sent message type {:?} after startup",
                    frame.tag as char
                )));
            }
            // Notices, notifications, COPY control, function results, protocol negotiation.
            _ => self.forward(&frame).await?,
        }
        Ok(false)
    }

    /// Whether the reply at the front answers warden's own Describe.
    fn internal_describe_front(&self) -> bool {
        matches!(
            self.lock().pending.front(),
            Some(Pending::InternalDescribe { .. })
        )
    }

    /// A RowDescription: consumed when it answers warden's own Describe, rewritten for
    /// encrypted columns otherwise. Returns what to forward (`None`: nothing).
    fn row_description(&mut self, frame: &Frame) -> Result<Option<Frame>, BackendEnd> {
        let mut c = self.lock();
        let (statement, query_plan, is_query) = match c.pending.front() {
            Some(Pending::InternalDescribe { .. }) => {
                let Some(Pending::InternalDescribe { statement }) = c.pending.pop_front() else {
                    unreachable!("front was an internal describe")
                };
                drop(c);
                self.last_done = Instant::now();
                let fields = decode_row_description(frame)
                    .map_err(|e| BackendEnd::Protocol(e.to_string()))?;
                if let Some(e) = &statement.encryption {
                    *e.fields.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(fields));
                }
                return Ok(None);
            }
            Some(Pending::Describe { statement }) => {
                let statement = statement.clone();
                c.pending.pop_front();
                drop(c);
                self.last_done = Instant::now();
                (statement, None, false)
            }
            Some(Pending::Query { plan, .. }) => {
                let plan = plan.clone();
                drop(c);
                (None, plan, true)
            }
            _ => (None, None, false),
        };
        let Some(encryption) = &self.ctx.encryption else {
            return Ok(Some(frame.clone()));
        };
        let plan = query_plan.or_else(|| {
            statement
                .as_ref()
                .and_then(|s| s.encryption.as_ref())
                .map(|e| e.plan.clone())
        });
        let fields =
            decode_row_description(frame).map_err(|e| BackendEnd::Protocol(e.to_string()))?;
        let planner = encryption.planner();
        let outputs = plan
            .as_ref()
            .and_then(|p| p.outputs.get(self.statement_index))
            .map(Vec::as_slice);
        let transform =
            ResultTransform::build(planner.catalog(), &fields, outputs, None).map(Arc::new);
        let rewritten = transform
            .as_ref()
            .map(|t| encode_row_description(&t.describe(fields)));
        // The rows of a simple query follow its description; those of an Execute are
        // transformed with the portal's result formats when they arrive.
        if is_query {
            self.transform = transform;
            self.transform_ready = true;
        }
        Ok(Some(rewritten.unwrap_or_else(|| frame.clone())))
    }

    /// A ParameterDescription for the client: encrypted parameters get the type the
    /// application uses.
    fn describe_params(&mut self, frame: &Frame) -> Result<Option<Frame>, BackendEnd> {
        let c = self.lock();
        let Some(Pending::Describe {
            statement: Some(statement),
        }) = c.pending.front()
        else {
            return Ok(None);
        };
        let Some(e) = &statement.encryption else {
            return Ok(None);
        };
        let mut types =
            decode_parameter_description(frame).map_err(|e| BackendEnd::Protocol(e.to_string()))?;
        describe_params(&mut types, &e.client_param_types, &e.plan);
        Ok(Some(encode_parameter_description(&types)))
    }

    /// A DataRow with its encrypted values opened; `None` when it must be withheld (a value
    /// could not be decrypted: the result ends with an error instead of ciphertext).
    fn decrypt_row(&mut self, frame: &Frame) -> Option<Frame> {
        if self.row_error.is_some() {
            return None;
        }
        if !self.transform_ready {
            self.transform_ready = true;
            self.transform = self.execute_transform();
        }
        let Some(t) = &self.transform else {
            return Some(frame.clone());
        };
        match t.row(frame) {
            Ok(row) => Some(row),
            Err(e) => {
                tracing::error!(session = self.ctx.identity.session_id, error = %e, "could not decrypt a result row; the result is withheld");
                self.row_error = Some(e);
                None
            }
        }
    }

    /// The transform of the rows of the Execute at the front of the queue.
    fn execute_transform(&self) -> Option<Arc<ResultTransform>> {
        let encryption = self.ctx.encryption.as_ref()?;
        let c = self.lock();
        let Some(Pending::Execute {
            statement: Some(statement),
            result_formats,
            ..
        }) = c.pending.front()
        else {
            return None;
        };
        let planner = encryption.planner();
        let Some(e) = statement.encryption.as_ref() else {
            // Prepared before any column held ciphertext: warden knows nothing of its result.
            return planner
                .catalog()
                .has_encrypted()
                .then(|| Arc::new(ResultTransform::probe_all(planner.catalog())));
        };
        let fields = e.fields.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match fields {
            Some(fields) => ResultTransform::build(
                planner.catalog(),
                &fields,
                e.plan.outputs.first().map(Vec::as_slice),
                Some(result_formats),
            )
            .map(Arc::new),
            // Cannot happen (warden's Describe is answered before any Execute of the
            // statement); if it did, withholding is safer than guessing.
            None => Some(Arc::new(ResultTransform::withhold_all())),
        }
    }

    /// The codec of a COPY TO STDOUT on encrypted columns, for the statement at the front.
    fn copy_out_codec(&self) -> Option<CopyCodec> {
        let c = self.lock();
        let plan = match c.pending.front() {
            Some(Pending::Query { plan, .. }) => plan.clone(),
            Some(Pending::Execute {
                statement: Some(s), ..
            }) => s.encryption.as_ref().map(|e| e.plan.clone()),
            _ => None,
        }?;
        let copy = plan.copy.as_ref().filter(|c| !c.into_database)?;
        Some(CopyCodec::new(copy.clone()))
    }

    /// A result set ended: forget its transform. Returns the error to send instead of the
    /// completion when rows were withheld.
    fn end_result(&mut self) -> Option<Frame> {
        self.transform = None;
        self.transform_ready = false;
        self.copy_out = None;
        let error = self.row_error.take()?;
        Some(
            ErrorFields::error(
                "XX001",
                format!("warden could not decrypt the result ({error}); no rows were returned past this point"),
            )
            .encode(),
        )
    }

    /// Records of the statements completed by the last message go out after it is forwarded.
    async fn submit_records(&mut self) {
        for record in self.outbox.drain(..) {
            if let Err(rejected) = self.ctx.shared.audit.submit(record).await {
                // The trail stopped taking records after this statement was let through.
                // Never lose it silently: it goes to the log in full, and the trail's health
                // makes every further statement be refused.
                tracing::error!(
                    reason = %rejected,
                    record = ?rejected.record,
                    "audit trail rejected a record; warden refuses statements until it recovers"
                );
            }
        }
    }

    fn take_progress(&mut self) -> (u64, u64, Instant) {
        let progress = (self.rows, self.bytes, self.last_done);
        self.rows = 0;
        self.bytes = 0;
        self.last_done = Instant::now();
        progress
    }

    fn record(
        &mut self,
        start: &Start,
        began: Instant,
        analysis: &warden_analysis::Analysis,
        index: usize,
        completion: Completion,
    ) {
        let facts = analysis.statements.get(index);
        let record = self
            .records
            .statement(start.time, analysis, facts, &completion);
        let kind = if completion.refused.is_some() {
            "refused"
        } else {
            record.statement_kind.as_deref().unwrap_or("unparsed")
        };
        self.ctx.metrics.statement(kind);
        self.ctx
            .metrics
            .duration
            .observe(Instant::now().duration_since(began).as_secs_f64());
        self.outbox.push(record);
    }

    fn function_call_record(&mut self, start: &Start, completion: Completion) {
        let mut record = self.records.event(AuditEvent::Statement, start.time);
        record.statement_kind = Some("function_call".into());
        record.sql = Some("<fast-path function call>".into());
        record.latency_us = Some(completion.latency.as_micros() as u64);
        if let Some(r) = completion.refused {
            record.result = warden_audit::AuditResult::Refused;
            record.decision = Some("refuse".into());
            record.rule = Some(r.rule);
            record.error_code = Some(r.sqlstate);
            record.message = Some(r.message);
        } else if let Some((code, message)) = completion.error {
            record.result = warden_audit::AuditResult::Error;
            record.error_code = Some(code);
            record.message = Some(message);
        }
        self.ctx.metrics.statement("call");
        self.outbox.push(record);
    }

    fn command_complete(&mut self, frame: &Frame) -> Result<(), BackendEnd> {
        let tag = command_tag(frame).map_err(|e| BackendEnd::Protocol(e.to_string()))?;
        let tag_rows = rows_in_tag(tag);
        let (counted, bytes, last_done) = self.take_progress();
        let mut c = self.lock();
        match c.pending.front() {
            Some(Pending::Query {
                analysis,
                start,
                refusal,
                rewritten_by,
                ..
            }) => {
                if refusal.is_some() {
                    return Err(desync("a refused query completed"));
                }
                let (analysis, start, rewritten_by) =
                    (analysis.clone(), start.clone(), rewritten_by.clone());
                drop(c);
                let began = start.at.max(last_done);
                let index = self.statement_index;
                self.statement_index += 1;
                self.record(
                    &start,
                    began,
                    &analysis,
                    index,
                    Completion {
                        rows: tag_rows.or(Some(counted)),
                        result_bytes: Some(bytes),
                        latency: began.elapsed(),
                        rewritten_by,
                        ..Completion::default()
                    },
                );
                Ok(())
            }
            Some(Pending::Execute { .. }) => {
                let Some(Pending::Execute {
                    portal,
                    statement,
                    start,
                    refusal,
                    ..
                }) = c.pending.pop_front()
                else {
                    unreachable!("front was an Execute")
                };
                drop(c);
                if refusal.is_some() {
                    return Err(desync("a refused execution completed"));
                }
                let (statement, start, earlier_rows, earlier_bytes) =
                    match self.suspended.remove(&portal) {
                        Some(s) => (s.statement, s.start, s.rows, s.bytes),
                        None => (statement, start, 0, 0),
                    };
                self.execution_record(
                    statement.as_deref(),
                    &start,
                    start.at.max(last_done),
                    Completion {
                        rows: tag_rows.or(Some(earlier_rows + counted)),
                        result_bytes: Some(earlier_bytes + bytes),
                        ..Completion::default()
                    },
                );
                Ok(())
            }
            other => Err(desync(&format!(
                "CommandComplete while waiting for {}",
                describe(other)
            ))),
        }
    }

    fn execution_record(
        &mut self,
        statement: Option<&Prepared>,
        start: &Start,
        began: Instant,
        mut completion: Completion,
    ) {
        completion.latency = began.elapsed();
        match statement {
            Some(p) => {
                if completion.rewritten_by.is_none() {
                    completion.rewritten_by = p.rewritten_by.clone();
                }
                let analysis = p.analysis.clone();
                self.record(start, began, &analysis, 0, completion);
            }
            None => {
                let analysis = self.ctx.shared.analyze(b"", None);
                let mut record = self
                    .records
                    .statement(start.time, &analysis, None, &completion);
                record.statement_kind = Some("unknown".into());
                record.sql = Some("<statement unknown to warden>".into());
                self.ctx.metrics.statement("other");
                self.outbox.push(record);
            }
        }
    }

    fn empty_query(&mut self) -> Result<(), BackendEnd> {
        self.take_progress();
        let mut c = self.lock();
        match c.pending.front() {
            Some(Pending::Query { .. }) => {
                drop(c);
                self.statement_index += 1;
                Ok(())
            }
            Some(Pending::Execute { .. }) => {
                c.pending.pop_front();
                Ok(())
            }
            other => Err(desync(&format!(
                "EmptyQueryResponse while waiting for {}",
                describe(other)
            ))),
        }
    }

    fn portal_suspended(&mut self) -> Result<(), BackendEnd> {
        let (rows, bytes, _) = self.take_progress();
        let mut c = self.lock();
        let Some(Pending::Execute {
            portal,
            statement,
            start,
            refusal,
            ..
        }) = c.pending.pop_front()
        else {
            return Err(desync("PortalSuspended without an Execute"));
        };
        drop(c);
        if refusal.is_some() {
            return Err(desync("a refused execution returned rows"));
        }
        let entry = self.suspended.entry(portal).or_insert(Suspended {
            statement,
            start,
            rows: 0,
            bytes: 0,
        });
        entry.rows += rows;
        entry.bytes += bytes;
        Ok(())
    }

    /// ParseComplete, BindComplete, CloseComplete, NoData.
    fn reply(&mut self, tag: u8) -> Result<(), BackendEnd> {
        let mut c = self.lock();
        let entry = c.pending.pop_front();
        drop(c);
        self.last_done = Instant::now();
        let ok = match (&entry, tag) {
            (Some(Pending::Parse { prepared, .. }), b'1') => prepared.refusal.is_none(),
            (Some(Pending::Bind { refusal, .. }), b'2') => refusal.is_none(),
            (Some(Pending::CloseStatement { .. }), b'3') => true,
            (Some(Pending::ClosePortal { name, .. }), b'3') => {
                let name = name.clone();
                self.finish_suspended(&name);
                true
            }
            (Some(Pending::Describe { .. }), b'n') => true,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(desync(&format!(
                "reply {:?} while waiting for {}",
                tag as char,
                describe(entry.as_ref())
            )))
        }
    }

    /// The error to send instead of `frame`, when it answers a refusal.
    fn error(&mut self, frame: &Frame) -> Result<Option<Frame>, BackendEnd> {
        let fields = ErrorFields::decode(frame).map_err(|e| BackendEnd::Protocol(e.to_string()))?;
        if fields.code == "23514"
            && fields.message.contains("warden_enc_")
            && let Some(e) = &self.ctx.encryption
        {
            // A write bounced off the check constraint of a column that became encrypted
            // since warden read the catalog.
            e.refresh_soon();
        }
        let (_, bytes, last_done) = self.take_progress();
        let error = Some((fields.code.clone(), fields.message.clone()));
        let mut c = self.lock();
        match c.pending.front() {
            Some(Pending::Query {
                analysis,
                start,
                refusal,
                ..
            }) => {
                let (analysis, start, refusal) = (analysis.clone(), start.clone(), refusal.clone());
                drop(c);
                let began = start.at.max(last_done);
                match &refusal {
                    Some(r) => {
                        // One refused record per statement of the refused text.
                        let n = analysis.statements.len().max(1);
                        for index in 0..n {
                            self.record(&start, began, &analysis, index, refused(r, began));
                        }
                        self.statement_index = n;
                        Ok(Some(refusal_error(r)))
                    }
                    None => {
                        let index = self.statement_index;
                        self.statement_index += 1;
                        self.record(
                            &start,
                            began,
                            &analysis,
                            index,
                            Completion {
                                error,
                                result_bytes: Some(bytes),
                                latency: began.elapsed(),
                                ..Completion::default()
                            },
                        );
                        Ok(None)
                    }
                }
            }
            Some(Pending::FunctionCall { start, refusal, .. }) => {
                let (start, refusal) = (start.clone(), refusal.clone());
                drop(c);
                let began = start.at.max(last_done);
                match refusal {
                    Some(r) => {
                        self.function_call_record(&start, refused(&r, began));
                        Ok(Some(refusal_error(&r)))
                    }
                    None => {
                        self.function_call_record(
                            &start,
                            Completion {
                                error,
                                latency: began.elapsed(),
                                ..Completion::default()
                            },
                        );
                        Ok(None)
                    }
                }
            }
            // An error at Sync (a deferred constraint failing the implicit COMMIT) or an
            // asynchronous one (the server is shutting the session down) belongs to no
            // statement warden is waiting for.
            None | Some(Pending::Sync { .. }) => Ok(None),
            Some(_) => {
                let entry = c.pending.pop_front().expect("front exists");
                drop(c);
                self.failing = true;
                let replacement = match &entry {
                    Pending::Parse {
                        prepared, start, ..
                    } => {
                        let began = start.at.max(last_done);
                        let completion = match &prepared.refusal {
                            Some(r) => refused(r, began),
                            None => Completion {
                                error,
                                latency: began.elapsed(),
                                ..Completion::default()
                            },
                        };
                        let analysis = prepared.analysis.clone();
                        self.record(start, began, &analysis, 0, completion);
                        prepared.refusal.as_ref().map(refusal_error)
                    }
                    Pending::Bind {
                        statement,
                        start,
                        refusal,
                        ..
                    } => {
                        let began = start.at.max(last_done);
                        let completion = match refusal {
                            Some(r) => refused(r, began),
                            None => Completion {
                                error,
                                latency: began.elapsed(),
                                ..Completion::default()
                            },
                        };
                        self.execution_record(statement.as_deref(), start, began, completion);
                        refusal.as_ref().map(refusal_error)
                    }
                    Pending::Execute {
                        portal,
                        statement,
                        start,
                        refusal,
                        ..
                    } => {
                        let (statement, start, rows) = match self.suspended.remove(portal) {
                            Some(s) => (s.statement, s.start, Some(s.rows)),
                            None => (statement.clone(), start.clone(), None),
                        };
                        let began = start.at.max(last_done);
                        let completion = match refusal {
                            Some(r) => refused(r, began),
                            None => Completion {
                                error,
                                rows,
                                latency: began.elapsed(),
                                ..Completion::default()
                            },
                        };
                        self.execution_record(statement.as_deref(), &start, began, completion);
                        refusal.as_ref().map(refusal_error)
                    }
                    _ => None,
                };
                self.undo.push(entry);
                Ok(replacement)
            }
        }
    }

    /// ReadyForQuery; `Ok(true)` when the session is idle and warden is draining.
    fn ready(&mut self, frame: &Frame) -> Result<bool, BackendEnd> {
        let status =
            ready_for_query_status(frame).map_err(|e| BackendEnd::Protocol(e.to_string()))?;
        self.take_progress();
        self.statement_index = 0;
        let mut c = self.lock();
        let generation = loop {
            match c.pending.pop_front() {
                Some(Pending::Sync { generation })
                | Some(Pending::Query { generation, .. })
                | Some(Pending::FunctionCall { generation, .. }) => break generation,
                Some(entry) if self.failing => self.undo.push(entry),
                other => {
                    return Err(desync(&format!(
                        "ReadyForQuery while waiting for {}",
                        describe(other.as_ref())
                    )));
                }
            }
        };
        self.failing = false;
        for entry in self.undo.drain(..).rev() {
            c.undo(&entry);
        }
        c.status = status;
        let mut finished = Vec::new();
        if status == b'I' {
            c.end_transaction(generation);
            finished = self
                .suspended
                .keys()
                .filter(|name| !c.portals.contains_key(*name))
                .cloned()
                .collect();
        }
        let idle = c.idle();
        drop(c);
        for name in finished {
            self.finish_suspended(&name);
        }
        Ok(idle && *self.drain.borrow())
    }

    /// A suspended portal ended without completing (closed, or its transaction ended): its
    /// record carries the rows it returned.
    fn finish_suspended(&mut self, portal: &str) {
        if let Some(s) = self.suspended.remove(portal) {
            let began = s.start.at;
            self.execution_record(
                s.statement.as_deref(),
                &s.start,
                began,
                Completion {
                    rows: Some(s.rows),
                    result_bytes: Some(s.bytes),
                    ..Completion::default()
                },
            );
        }
    }
}

fn refused(refusal: &Refusal, began: Instant) -> Completion {
    Completion {
        refused: Some(refusal.clone()),
        latency: began.elapsed(),
        ..Completion::default()
    }
}

fn desync(what: &str) -> BackendEnd {
    BackendEnd::Desync(what.to_string())
}

fn describe(entry: Option<&Pending>) -> &'static str {
    match entry {
        None => "nothing",
        Some(Pending::Query { .. }) => "a query",
        Some(Pending::FunctionCall { .. }) => "a function call",
        Some(Pending::Parse { .. }) => "a parse",
        Some(Pending::Bind { .. }) => "a bind",
        Some(Pending::Describe { .. }) | Some(Pending::InternalDescribe { .. }) => "a describe",
        Some(Pending::Execute { .. }) => "an execute",
        Some(Pending::CloseStatement { .. }) | Some(Pending::ClosePortal { .. }) => "a close",
        Some(Pending::Sync { .. }) => "a sync",
        Some(Pending::CopyEnd) => "the end of a COPY",
    }
}
