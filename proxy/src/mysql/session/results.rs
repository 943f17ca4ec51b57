//! Relaying the server's answer to one command, and the audit records it completes.
//!
//! An answer is one or more results: an OK, an ERR, or a result set (column count, column
//! definitions, an EOF unless DEPRECATE_EOF, rows, and a terminating EOF/OK). A status flag in
//! each OK/EOF says whether another result follows (multi-statement strings, stored
//! procedures). Rows are forwarded as they arrived and only counted; warden reads the first
//! byte of each packet and decodes only the OK/EOF/ERR packets that end a result — unless the
//! upstream encrypts columns: then the column definitions are decoded, and the rows of a
//! result with encrypted columns are rewritten (see [`super::crypt`]).

use std::sync::Arc;
use std::time::Instant;

use warden_analysis::Analysis;
use warden_policy::Refusal;

use super::crypt::{ColumnDef, ResultCrypt};
use super::{Session, SessionEnd};
use crate::mysql::codec::Reader;
use crate::mysql::constants::{errors, status};
use crate::mysql::messages::{ErrPacket, OkPacket, is_terminator};
use crate::mysql::packet::Packet;
use crate::pg::session::state::Start;
use crate::pipeline::records::Completion;

/// How one result of an answer ended.
pub(super) enum ResultEnd {
    Ok { affected: u64, status: u16 },
    Rows { rows: u64, bytes: u64, status: u16 },
    Err(ErrPacket),
}

impl ResultEnd {
    fn more(&self) -> bool {
        match self {
            ResultEnd::Ok { status: s, .. } | ResultEnd::Rows { status: s, .. } => {
                s & status::MORE_RESULTS_EXISTS != 0
            }
            ResultEnd::Err(_) => false,
        }
    }
}

/// What an audit record of a statement stands for.
pub(super) struct Executed {
    /// `None` for an execution of a statement warden does not know.
    pub analysis: Option<Arc<Analysis>>,
    pub start: Start,
    pub rewritten_by: Option<String>,
}

/// The ERR packet a client gets for a refusal: the refusal's SQLSTATE and message, with
/// MySQL's "access denied" error number for access-rule refusals.
pub(super) fn refusal_error(refusal: &Refusal) -> ErrPacket {
    let code = if refusal.sqlstate.starts_with("42") {
        errors::TABLE_ACCESS_DENIED
    } else {
        errors::UNKNOWN
    };
    ErrPacket::new(
        code,
        &refusal.sqlstate,
        format!(
            "{} (refused by warden rule \"{}\")",
            refusal.message, refusal.rule
        ),
    )
}

impl Session {
    /// The next packet from the server. The client's buffered output is flushed first when
    /// nothing more is buffered from the server, so writes are coalesced.
    pub(super) async fn server_packet(&mut self) -> Result<Packet, SessionEnd> {
        if !self.server_in.has_buffered_packet() {
            self.client_out.flush().await.map_err(SessionEnd::Io)?;
        }
        let mut packet = self.server_in.expect().await.map_err(SessionEnd::server)?;
        self.metrics.bytes_out.inc_by(packet.raw().len() as u64);
        if let Some(seq) = self.reply_seq.take() {
            packet = packet.with_seq(seq);
        }
        Ok(packet)
    }

    pub(super) async fn send_client(&mut self, packet: &Packet) -> Result<(), SessionEnd> {
        self.client_out.push(packet).await.map_err(SessionEnd::Io)
    }

    pub(super) async fn send_server(&mut self, packet: &Packet) -> Result<(), SessionEnd> {
        self.server_out.push(packet).await.map_err(SessionEnd::Io)
    }

    /// Relays one result of an answer. `local_infile`: the command may make the server ask
    /// for a client file (LOAD DATA LOCAL INFILE).
    pub(super) async fn relay_result(
        &mut self,
        local_infile: bool,
    ) -> Result<ResultEnd, SessionEnd> {
        loop {
            let first = self.server_packet().await?;
            match first.first() {
                Some(0x00) => {
                    let ok = OkPacket::decode(&first.payload()).map_err(server_protocol)?;
                    self.send_client(&first).await?;
                    return Ok(ResultEnd::Ok {
                        affected: ok.affected_rows,
                        status: ok.status,
                    });
                }
                Some(0xff) => {
                    let err = ErrPacket::decode(&first.payload()).map_err(server_protocol)?;
                    self.send_client(&first).await?;
                    return Ok(ResultEnd::Err(err));
                }
                Some(0xfb) if local_infile => {
                    self.send_client(&first).await?;
                    self.client_out.flush().await.map_err(SessionEnd::Io)?;
                    match self.turn.plan.as_ref().and_then(|p| p.load_data.clone()) {
                        Some(load) => self.encrypt_local_file(load).await?,
                        None => self.relay_local_file().await?,
                    }
                }
                _ => return self.relay_result_set(first).await,
            }
        }
    }

    /// A result set, from its column-count packet on.
    async fn relay_result_set(&mut self, count: Packet) -> Result<ResultEnd, SessionEnd> {
        let columns = Reader::new(count.head())
            .lenenc("column count")
            .map_err(server_protocol)?;
        if columns == 0 || columns > u64::from(u16::MAX) {
            return Err(SessionEnd::ServerProtocol(format!(
                "a result set with {columns} columns"
            )));
        }
        self.send_client(&count).await?;
        let mut definitions = Vec::with_capacity(columns as usize);
        for _ in 0..columns {
            definitions.push(self.server_packet().await?);
        }
        let transform = self.result_transform(&mut definitions)?;
        for definition in &definitions {
            self.send_client(definition).await?;
        }
        if !self.deprecate_eof {
            let eof = self.server_packet().await?;
            if !is_terminator(&eof, false) {
                return Err(SessionEnd::ServerProtocol(
                    "no EOF after the column definitions".into(),
                ));
            }
            let state = OkPacket::decode_eof(&eof.payload()).map_err(server_protocol)?;
            self.send_client(&eof).await?;
            if state.status & status::CURSOR_EXISTS != 0 {
                // A cursor was opened: rows come with COM_STMT_FETCH.
                self.turn.cursor = transform.map(Arc::new);
                return Ok(ResultEnd::Rows {
                    rows: 0,
                    bytes: 0,
                    status: state.status,
                });
            }
        }
        let binary = self.turn.binary;
        self.relay_rows(transform.map(|t| (Arc::new(t), binary)))
            .await
    }

    /// The decryption of a result with these column definitions, which are rewritten for
    /// the client; `None` when no column needs one (or the upstream encrypts nothing).
    fn result_transform(
        &self,
        definitions: &mut [Packet],
    ) -> Result<Option<ResultCrypt>, SessionEnd> {
        let Some(encryption) = &self.encryption else {
            return Ok(None);
        };
        let catalog = Arc::clone(encryption.planner().catalog());
        if !catalog.has_encrypted() {
            return Ok(None);
        }
        let mut defs = definitions
            .iter()
            .map(|p| ColumnDef::decode(&p.payload()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(server_protocol)?;
        let outputs = self
            .turn
            .plan
            .as_ref()
            .and_then(|p| p.outputs.get(self.turn.statement))
            .map(Vec::as_slice);
        let Some(transform) = ResultCrypt::build(&catalog, &defs, outputs) else {
            return Ok(None);
        };
        if transform.decrypts() {
            transform.describe(&mut defs, self.charset);
            for (packet, def) in definitions.iter_mut().zip(&defs) {
                *packet = Packet::new(packet.seq, &def.encode());
            }
        }
        Ok(Some(transform))
    }

    /// Rows up to the terminating EOF/OK (or an ERR that breaks the result off). With a
    /// transform (and whether rows are binary), encrypted values are opened; a value that does
    /// not open withholds the rest of the answer, which ends with an ERR.
    pub(super) async fn relay_rows(
        &mut self,
        transform: Option<(Arc<ResultCrypt>, bool)>,
    ) -> Result<ResultEnd, SessionEnd> {
        let (mut rows, mut bytes) = (0u64, 0u64);
        loop {
            let mut packet = self.server_packet().await?;
            match packet.first() {
                Some(0xff) => {
                    let err = ErrPacket::decode(&packet.payload()).map_err(server_protocol)?;
                    self.send_client(&packet).await?;
                    return Ok(ResultEnd::Err(err));
                }
                Some(0xfe) if is_terminator(&packet, self.deprecate_eof) => {
                    let end = if self.deprecate_eof {
                        OkPacket::decode(&packet.payload())
                    } else {
                        OkPacket::decode_eof(&packet.payload())
                    }
                    .map_err(server_protocol)?;
                    self.send_client(&packet).await?;
                    return Ok(ResultEnd::Rows {
                        rows,
                        bytes,
                        status: end.status,
                    });
                }
                _ => {
                    rows += 1;
                    bytes += packet.len as u64;
                    if let Some((t, binary)) = &transform {
                        let payload = packet.payload();
                        let opened = if *binary {
                            t.binary_row(&payload)
                        } else {
                            t.text_row(&payload)
                        };
                        drop(payload);
                        match opened {
                            Ok(row)
                                if row.len() < crate::mysql::packet::MAX_PHYSICAL
                                    && packet.len < crate::mysql::packet::MAX_PHYSICAL =>
                            {
                                packet = Packet::new(packet.seq, &row);
                            }
                            Ok(_) => {
                                return self
                                    .withhold(
                                        packet.seq,
                                        "a row of 16 MiB or more with encrypted values".into(),
                                    )
                                    .await;
                            }
                            Err(message) => return self.withhold(packet.seq, message).await,
                        }
                    }
                    self.send_client(&packet).await?;
                }
            }
        }
    }

    /// A value could not be opened: the rest of the answer is read and dropped, and the client
    /// gets an ERR (sequence id `seq`, where the row would have been) instead.
    async fn withhold(&mut self, seq: u8, message: String) -> Result<ResultEnd, SessionEnd> {
        tracing::warn!(session = self.identity.session_id, reason = %message, "withheld a result that warden could not decrypt");
        let mut more = self.drain_rows().await?;
        while more {
            more = self.drain_result().await?;
        }
        let err = ErrPacket::new(
            errors::UNKNOWN,
            "HY000",
            format!(
                "warden withheld the result: {message} (refused by warden rule \"encryption\")"
            ),
        );
        self.send_client(&err.packet(seq)).await?;
        Ok(ResultEnd::Err(err))
    }

    /// Reads the rest of a result's rows; whether another result follows.
    async fn drain_rows(&mut self) -> Result<bool, SessionEnd> {
        loop {
            let packet = self.server_packet().await?;
            if packet.first() == Some(0xff) {
                return Ok(false);
            }
            if is_terminator(&packet, self.deprecate_eof) {
                let end = if self.deprecate_eof {
                    OkPacket::decode(&packet.payload())
                } else {
                    OkPacket::decode_eof(&packet.payload())
                }
                .map_err(server_protocol)?;
                return Ok(end.status & status::MORE_RESULTS_EXISTS != 0);
            }
        }
    }

    /// Reads a whole result and drops it; whether another result follows.
    async fn drain_result(&mut self) -> Result<bool, SessionEnd> {
        let first = self.server_packet().await?;
        match first.first() {
            Some(0x00) => {
                let ok = OkPacket::decode(&first.payload()).map_err(server_protocol)?;
                Ok(ok.status & status::MORE_RESULTS_EXISTS != 0)
            }
            Some(0xff) => Ok(false),
            Some(0xfb) => Err(SessionEnd::ServerProtocol(
                "a LOCAL INFILE request in a withheld answer".into(),
            )),
            _ => {
                let columns = Reader::new(first.head())
                    .lenenc("column count")
                    .map_err(server_protocol)?;
                for _ in 0..columns + u64::from(!self.deprecate_eof) {
                    self.server_packet().await?;
                }
                self.drain_rows().await
            }
        }
    }

    /// LOAD DATA LOCAL INFILE: the client's file, packet by packet, up to an empty packet.
    async fn relay_local_file(&mut self) -> Result<(), SessionEnd> {
        loop {
            let packet = self.client_in.expect().await.map_err(SessionEnd::client)?;
            self.metrics.bytes_in.inc_by(packet.raw().len() as u64);
            self.send_server(&packet).await?;
            if packet.len == 0 {
                return self.server_out.flush().await.map_err(SessionEnd::Io);
            }
        }
    }

    /// Relays a whole answer to a statement-carrying command and records one audit record per
    /// statement. Results beyond the statements the analysis found (a CALL's result sets) add
    /// their rows to the last statement's record.
    pub(super) async fn relay_answer(
        &mut self,
        executed: Executed,
        local_infile: bool,
    ) -> Result<(), SessionEnd> {
        let statements = executed
            .analysis
            .as_ref()
            .map(|a| a.statements.len())
            .unwrap_or(0)
            .max(1);
        let mut index = 0;
        let (mut rows, mut bytes) = (0u64, 0u64);
        let mut began = executed.start.at;
        loop {
            self.turn.statement = index;
            let end = self.relay_result(local_infile).await?;
            let more = end.more();
            if let (ResultEnd::Err(e), Some(encryption)) = (&end, &self.encryption)
                && e.message.contains("warden_enc_")
            {
                // A write bounced off warden's check constraint: the catalog is stale.
                encryption.refresh_soon();
            }
            let error = match end {
                ResultEnd::Ok { affected, .. } => {
                    rows += affected;
                    None
                }
                ResultEnd::Rows {
                    rows: r, bytes: b, ..
                } => {
                    rows += r;
                    bytes += b;
                    None
                }
                ResultEnd::Err(e) => Some(e),
            };
            if !more || index + 1 < statements {
                let completion = Completion {
                    rows: Some(rows),
                    result_bytes: Some(bytes),
                    latency: began.elapsed(),
                    error: error.map(|e| (e.sqlstate.clone(), e.describe())),
                    refused: None,
                    rewritten_by: executed.rewritten_by.clone(),
                };
                self.record(&executed, index, began, completion);
                index += 1;
                rows = 0;
                bytes = 0;
                began = Instant::now();
            }
            if !more {
                return Ok(());
            }
        }
    }

    /// One audit record, and the statement metrics.
    pub(super) fn record(
        &mut self,
        executed: &Executed,
        index: usize,
        began: Instant,
        completion: Completion,
    ) {
        let record = match &executed.analysis {
            Some(analysis) => self.records.statement(
                executed.start.time,
                analysis,
                analysis.statements.get(index),
                &completion,
            ),
            None => {
                let analysis = self
                    .shared
                    .analyze_mysql(b"", Err("the statement is unknown to warden"));
                let mut record =
                    self.records
                        .statement(executed.start.time, &analysis, None, &completion);
                record.statement_kind = Some("unknown".into());
                record.sql = Some("<prepared statement unknown to warden>".into());
                record
            }
        };
        let kind = if completion.refused.is_some() {
            "refused"
        } else {
            record.statement_kind.as_deref().unwrap_or("unparsed")
        };
        self.metrics.statement(kind);
        self.metrics
            .duration
            .observe(Instant::now().duration_since(began).as_secs_f64());
        self.outbox.push(record);
    }

    /// Answers a refused command with the refusal's ERR and records one refused record per
    /// statement of its text.
    pub(super) async fn refuse(
        &mut self,
        executed: Executed,
        refusal: Refusal,
    ) -> Result<(), SessionEnd> {
        let statements = executed
            .analysis
            .as_ref()
            .map(|a| a.statements.len())
            .unwrap_or(0)
            .max(1);
        for index in 0..statements {
            let completion = Completion {
                refused: Some(refusal.clone()),
                latency: executed.start.at.elapsed(),
                ..Completion::default()
            };
            self.record(&executed, index, executed.start.at, completion);
        }
        let err = refusal_error(&refusal);
        self.send_client(&err.packet(1)).await
    }

    /// Relays a single-packet answer (OK, ERR, EOF, or COM_STATISTICS' text); returns it.
    pub(super) async fn relay_one(&mut self) -> Result<Packet, SessionEnd> {
        let packet = self.server_packet().await?;
        self.send_client(&packet).await?;
        Ok(packet)
    }
}

fn server_protocol(e: crate::mysql::codec::DecodeError) -> SessionEnd {
    SessionEnd::ServerProtocol(e.to_string())
}

impl ErrPacket {
    /// The message as an audit record shows it: MySQL's error number, then the text.
    pub fn describe(&self) -> String {
        format!("{}: {}", self.code, self.message)
    }
}
