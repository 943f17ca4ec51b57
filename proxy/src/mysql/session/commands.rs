//! Client commands: what warden does with each before and after the server answers it.
//!
//! COM_QUERY and COM_STMT_PREPARE carry SQL: they are analysed and put to the policy, then
//! forwarded, refused (warden answers with an ERR and the server never sees the SQL) or
//! rewritten. COM_STMT_EXECUTE is decoded with the statement's tracked parameter types.
//! COM_INIT_DB, COM_CHANGE_USER and COM_RESET_CONNECTION change the session's identity or
//! state, which warden follows. Replication commands are refused. Everything else is
//! forwarded as it arrived and its one-packet answer relayed. When the upstream encrypts
//! columns, SQL texts are planned (and rewritten or refused) after the policy allowed them,
//! and executes carry sealed parameters (see [`super::crypt`]).

use std::sync::Arc;

use time::OffsetDateTime;
use warden_analysis::{Analysis, StatementKind};
use warden_audit::{AuditEvent, AuditResult};
use warden_encryption::Plan;
use warden_policy::Decision;

use super::crypt::{self, ColumnDef, ResultCrypt, TextOutcome, Turn};
use super::lexing::may_change_lexing;
use super::results::Executed;
use super::{Session, SessionEnd};
use crate::mysql::constants::{command, errors};
use crate::mysql::messages::{ChangeUser, ErrPacket, attribute};
use crate::mysql::packet::Packet;
use crate::mysql::statements::{self, Prepared, decode_execute};
use crate::pg::session::state::Start;
use crate::pipeline::records::{Completion, SessionRecords};

fn client_protocol(e: crate::mysql::codec::DecodeError) -> SessionEnd {
    SessionEnd::ClientProtocol(e.to_string())
}

impl Session {
    /// Handles one command (a packet with sequence id 0 from the client).
    pub(super) async fn command(&mut self, packet: Packet) -> Result<(), SessionEnd> {
        self.metrics.bytes_in.inc_by(packet.raw().len() as u64);
        if packet.seq != 0 {
            return Err(SessionEnd::ClientProtocol(format!(
                "a command with sequence id {} (commands start at 0)",
                packet.seq
            )));
        }
        let Some(code) = packet.first() else {
            return Err(SessionEnd::ClientProtocol("an empty command packet".into()));
        };
        match code {
            command::QUIT => {
                self.send_server(&packet).await?;
                Err(SessionEnd::Quit)
            }
            command::QUERY => self.query(packet).await,
            command::STMT_PREPARE => self.prepare(packet).await,
            command::STMT_EXECUTE => self.execute(packet).await,
            command::STMT_SEND_LONG_DATA => {
                let payload = packet.payload();
                let mut r = crate::mysql::codec::Reader::new(&payload);
                r.u8("command").map_err(client_protocol)?;
                let id = r.u32("statement id").map_err(client_protocol)?;
                let param = r.u16("parameter id").map_err(client_protocol)?;
                if let Some(s) = self.statements.get_mut(id)
                    && param < s.params
                {
                    s.long_data.resize(usize::from(s.params), false);
                    s.long_data[usize::from(param)] = true;
                }
                // No answer.
                self.send_server(&packet).await
            }
            command::STMT_CLOSE => {
                let id = statements::statement_id(&packet.payload()).map_err(client_protocol)?;
                self.statements.remove(id);
                // No answer.
                self.send_server(&packet).await
            }
            command::STMT_RESET => {
                let id = statements::statement_id(&packet.payload()).map_err(client_protocol)?;
                if let Some(s) = self.statements.get_mut(id) {
                    s.long_data.iter_mut().for_each(|l| *l = false);
                }
                self.forward(&packet).await?;
                self.relay_one().await.map(drop)
            }
            command::STMT_FETCH => {
                let id = statements::statement_id(&packet.payload()).map_err(client_protocol)?;
                let cursor = self.statements.get(id).and_then(|s| s.cursor.clone());
                self.forward(&packet).await?;
                // Rows of an open cursor (counted in the metrics only), or an ERR.
                self.relay_rows(cursor.map(|c| (c, true))).await.map(drop)
            }
            command::INIT_DB => self.init_db(packet).await,
            command::CHANGE_USER => self.change_user(packet).await,
            command::RESET_CONNECTION => {
                self.forward(&packet).await?;
                let answer = self.relay_one().await?;
                if answer.first() == Some(0x00) {
                    self.statements.clear();
                    self.client_out.flush().await.map_err(SessionEnd::Io)?;
                    self.refresh_lexing().await?;
                }
                Ok(())
            }
            command::FIELD_LIST => {
                self.forward(&packet).await?;
                self.relay_rows(None).await.map(drop)
            }
            command::PROCESS_INFO => {
                self.forward(&packet).await?;
                self.relay_result(false).await.map(drop)
            }
            command::BINLOG_DUMP
            | command::BINLOG_DUMP_GTID
            | command::REGISTER_SLAVE
            | command::TABLE_DUMP
            | command::CONNECT_OUT
            | command::CONNECT
            | command::DAEMON
            | command::DELAYED_INSERT
            | command::MULTI
            | command::STMT_BULK_EXECUTE => {
                let err = ErrPacket::new(
                    errors::NOT_SUPPORTED,
                    "42000",
                    format!(
                        "command 0x{code:02x} (replication or internal) cannot go through warden"
                    ),
                );
                self.send_client(&err.packet(1)).await
            }
            // COM_PING, COM_STATISTICS, COM_PROCESS_KILL, COM_DEBUG, COM_SET_OPTION, COM_REFRESH,
            // COM_SHUTDOWN, COM_SLEEP, COM_TIME: one packet answers them.
            _ => {
                self.forward(&packet).await?;
                self.relay_one().await.map(drop)
            }
        }
    }

    /// Sends a command to the server now: its answer is awaited next.
    async fn forward(&mut self, packet: &Packet) -> Result<(), SessionEnd> {
        self.send_server(packet).await?;
        self.server_out.flush().await.map_err(SessionEnd::Io)
    }

    /// Analyses a SQL-carrying command (COM_QUERY, COM_STMT_PREPARE), puts it to the policy,
    /// plans it for column encryption, and sends the database what was decided. `None` when
    /// it was refused: the client has its error and the database saw nothing.
    async fn decide_and_send(
        &mut self,
        packet: &Packet,
        command: u8,
    ) -> Result<Option<Sent>, SessionEnd> {
        let start = Start::now();
        let payload = packet.payload();
        let sql = &payload[1..];
        let analysis = self.shared.analyze_mysql(sql, self.lexing.dialect());
        let decision = self.shared.decide(&self.identity, sql, &analysis);
        let changes_lexing = may_change_lexing(sql);
        let (text, rewritten_by): (Vec<u8>, Option<String>) = match decision {
            Decision::Allow => (sql.to_vec(), None),
            Decision::Refuse(refusal) => {
                drop(payload);
                let executed = Executed {
                    analysis: Some(analysis),
                    start,
                    rewritten_by: None,
                };
                self.refuse(executed, refusal).await?;
                return Ok(None);
            }
            Decision::Rewrite(rewrite) => (rewrite.sql.into_bytes(), Some(rewrite.rule)),
        };
        drop(payload);
        let mut plan = None;
        let mut out = rewritten_by.is_some().then(|| text.clone());
        if let Some(encryption) = &self.encryption {
            let template = (rewritten_by.is_none() && analysis.is_understood())
                .then_some(analysis.redacted_sql.as_str());
            let database = self
                .lexing
                .database()
                .unwrap_or(&self.identity.database)
                .to_string();
            match crypt::plan_text(
                encryption,
                &text,
                self.lexing.dialect(),
                &database,
                template,
            ) {
                TextOutcome::Untouched => {}
                TextOutcome::Planned { plan: p, sql } => {
                    if let Some(sql) = sql {
                        out = Some(sql.into_bytes());
                    }
                    plan = Some(p);
                }
                TextOutcome::Refused(refusal) => {
                    let executed = Executed {
                        analysis: Some(analysis),
                        start,
                        rewritten_by: None,
                    };
                    self.refuse(executed, refusal).await?;
                    return Ok(None);
                }
            }
        }
        match out {
            None => self.forward(packet).await?,
            Some(sql) => {
                let mut bytes = vec![command];
                bytes.extend_from_slice(&sql);
                self.forward(&Packet::new(0, &bytes)).await?;
            }
        }
        Ok(Some(Sent {
            executed: Executed {
                analysis: Some(analysis.clone()),
                start,
                rewritten_by,
            },
            analysis,
            changes_lexing,
            plan,
        }))
    }

    async fn query(&mut self, packet: Packet) -> Result<(), SessionEnd> {
        let Some(sent) = self.decide_and_send(&packet, command::QUERY).await? else {
            return Ok(());
        };
        self.turn = Turn {
            plan: sent.plan,
            ..Turn::default()
        };
        self.relay_answer(sent.executed, true).await?;
        self.turn = Turn::default();
        if sent.changes_lexing
            || (self.encryption.is_some() && may_change_database(&sent.analysis, &packet))
        {
            self.client_out.flush().await.map_err(SessionEnd::Io)?;
            self.refresh_lexing().await?;
        }
        Ok(())
    }

    async fn prepare(&mut self, packet: Packet) -> Result<(), SessionEnd> {
        let Some(Sent {
            executed,
            analysis,
            changes_lexing,
            plan,
        }) = self.decide_and_send(&packet, command::STMT_PREPARE).await?
        else {
            return Ok(());
        };
        let answer = self.server_packet().await?;
        match answer.first() {
            Some(0x00) => {}
            Some(0xff) => {
                let err = ErrPacket::decode(&answer.payload())
                    .map_err(|e| SessionEnd::ServerProtocol(e.to_string()))?;
                self.send_client(&answer).await?;
                let completion = Completion {
                    latency: executed.start.at.elapsed(),
                    error: Some((err.sqlstate.clone(), err.describe())),
                    ..Completion::default()
                };
                self.record(&executed, 0, executed.start.at, completion);
                return Ok(());
            }
            _ => {
                return Err(SessionEnd::ServerProtocol(
                    "unexpected answer to COM_STMT_PREPARE".into(),
                ));
            }
        }
        let head = answer.payload();
        let mut r = crate::mysql::codec::Reader::new(&head);
        let fields = (|| {
            r.u8("status")?;
            let id = r.u32("statement id")?;
            let columns = r.u16("column count")?;
            let params = r.u16("parameter count")?;
            Ok::<_, crate::mysql::codec::DecodeError>((id, columns, params))
        })();
        let (id, columns, params) =
            fields.map_err(|e| SessionEnd::ServerProtocol(e.to_string()))?;
        drop(head);
        self.send_client(&answer).await?;
        for (count, results) in [(params, false), (columns, true)] {
            if count == 0 {
                continue;
            }
            let mut definitions = Vec::with_capacity(usize::from(count));
            for _ in 0..count {
                definitions.push(self.server_packet().await?);
            }
            if results {
                self.describe_prepared(&mut definitions, plan.as_deref())?;
            }
            for definition in &definitions {
                self.send_client(definition).await?;
            }
            if !self.deprecate_eof {
                let eof = self.server_packet().await?;
                self.send_client(&eof).await?;
            }
        }
        let statement = Prepared {
            analysis,
            params,
            columns,
            types: Vec::new(),
            long_data: Vec::new(),
            rewritten_by: executed.rewritten_by,
            changes_lexing,
            plan,
            cursor: None,
        };
        if !self.statements.insert(id, statement) {
            return Err(SessionEnd::ClientProtocol(format!(
                "more than {} prepared statements",
                statements::MAX_STATEMENTS
            )));
        }
        Ok(())
    }

    async fn execute(&mut self, packet: Packet) -> Result<(), SessionEnd> {
        let start = Start::now();
        let payload = packet.payload();
        let id = statements::statement_id(&payload).map_err(client_protocol)?;
        let mut sealed = Ok(None);
        let (analysis, rewritten_by, changes_lexing, plan) = match self.statements.get_mut(id) {
            Some(statement) => {
                let execute = decode_execute(&payload, statement).map_err(client_protocol)?;
                if let Some(plan) = &statement.plan {
                    sealed = crypt::encrypt_execute(&payload, &execute, &statement.types, plan);
                }
                (
                    Some(statement.analysis.clone()),
                    statement.rewritten_by.clone(),
                    statement.changes_lexing,
                    statement.plan.clone(),
                )
            }
            None => (None, None, false, None),
        };
        drop(payload);
        let executed = Executed {
            analysis,
            start,
            rewritten_by,
        };
        if let Some(refusal) = self.shared.audit_refusal() {
            return self.refuse(executed, refusal).await;
        }
        match sealed {
            Err(refusal) => return self.refuse(executed, refusal).await,
            Ok(Some(payload)) => self.forward(&Packet::new(0, &payload)).await?,
            Ok(None) => self.forward(&packet).await?,
        }
        self.turn = Turn {
            plan,
            binary: true,
            ..Turn::default()
        };
        let relayed = self.relay_answer(executed, false).await;
        let cursor = std::mem::take(&mut self.turn).cursor;
        relayed?;
        if let Some(statement) = self.statements.get_mut(id) {
            statement.cursor = cursor;
        }
        if changes_lexing {
            self.client_out.flush().await.map_err(SessionEnd::Io)?;
            self.refresh_lexing().await?;
        }
        Ok(())
    }

    /// COM_INIT_DB: the session's default schema changes when the server accepts it.
    async fn init_db(&mut self, packet: Packet) -> Result<(), SessionEnd> {
        let start = Start::now();
        let database = String::from_utf8_lossy(&packet.payload()[1..]).into_owned();
        let sql = format!("USE `{}`", database.replace('`', "``"));
        let analysis = self
            .shared
            .analyze_mysql(sql.as_bytes(), Ok(warden_analysis::Dialect::MYSQL_DEFAULT));
        let executed = Executed {
            analysis: Some(analysis.clone()),
            start,
            rewritten_by: None,
        };
        if let Decision::Refuse(refusal) =
            self.shared
                .decide(&self.identity, sql.as_bytes(), &analysis)
        {
            return self.refuse(executed, refusal).await;
        }
        self.forward(&packet).await?;
        let answer = self.relay_one().await?;
        let error = match answer.first() {
            Some(0xff) => ErrPacket::decode(&answer.payload())
                .ok()
                .map(|e| (e.sqlstate.clone(), e.describe())),
            _ => None,
        };
        if error.is_none() {
            self.lexing.set_database(database.clone());
            self.identity.database = database;
            self.records = SessionRecords::new(&self.identity);
        }
        let completion = Completion {
            latency: executed.start.at.elapsed(),
            error,
            ..Completion::default()
        };
        self.record(&executed, 0, executed.start.at, completion);
        Ok(())
    }

    /// COM_CHANGE_USER: a new login on the same connection. The authentication exchange is
    /// relayed as at login (the database checks the answer); on success the session takes the
    /// new identity, forgets its prepared statements and re-reads its lexing. A failed change
    /// closes the connection.
    async fn change_user(&mut self, packet: Packet) -> Result<(), SessionEnd> {
        let capabilities = crate::mysql::constants::caps::SUPPORTED;
        let change =
            ChangeUser::decode(&packet.payload(), capabilities).map_err(client_protocol)?;
        self.forward(&packet).await?;
        let outcome = loop {
            let answer = self.server_packet().await?;
            self.send_client(&answer).await?;
            match answer.first() {
                Some(0x00) => break Ok(()),
                Some(0xff) => {
                    break Err(ErrPacket::decode(&answer.payload()).unwrap_or_else(|_| {
                        ErrPacket::new(errors::ACCESS_DENIED, "28000", "access denied")
                    }));
                }
                Some(0xfe) | Some(0x01) => {
                    if *answer.payload() == [0x01, 0x03] {
                        continue;
                    }
                    self.client_out.flush().await.map_err(SessionEnd::Io)?;
                    let reply = self.client_in.expect().await.map_err(SessionEnd::client)?;
                    self.forward(&reply).await?;
                }
                _ => {
                    return Err(SessionEnd::ServerProtocol(
                        "unexpected packet in COM_CHANGE_USER authentication".into(),
                    ));
                }
            }
        };
        let user = String::from_utf8_lossy(&change.user).into_owned();
        let database = String::from_utf8_lossy(&change.database).into_owned();
        match outcome {
            Ok(()) => {
                self.identity.user = user;
                self.identity.database = database;
                if !change.attributes.is_empty() {
                    self.identity.program = attribute(&change.attributes, "program_name")
                        .or_else(|| attribute(&change.attributes, "_client_name"))
                        .unwrap_or_default()
                        .to_string();
                }
                self.records = SessionRecords::new(&self.identity);
                self.statements.clear();
                let mut login = self
                    .records
                    .event(AuditEvent::Login, OffsetDateTime::now_utc());
                login.message = Some("COM_CHANGE_USER".into());
                self.outbox.push(login);
                self.metrics.login_ok.inc();
                self.client_out.flush().await.map_err(SessionEnd::Io)?;
                self.refresh_lexing().await
            }
            Err(err) => {
                let mut identity = self.identity.clone();
                identity.user = user;
                identity.database = database;
                let mut record = SessionRecords::new(&identity)
                    .event(AuditEvent::LoginFailed, OffsetDateTime::now_utc());
                record.result = AuditResult::Error;
                record.error_code = Some(err.sqlstate.clone());
                record.message = Some(format!("{} (COM_CHANGE_USER)", err.describe()));
                self.outbox.push(record);
                self.metrics.login_failed.inc();
                Err(SessionEnd::ChangeUserFailed)
            }
        }
    }
}

/// A SQL-carrying command on its way to the database, with what its audit record needs.
struct Sent {
    executed: Executed,
    analysis: Arc<Analysis>,
    /// Whether the SQL may change how later SQL is lexed (sql_mode, character set).
    changes_lexing: bool,
    /// The encryption plan, when the text touches encrypted columns.
    plan: Option<Arc<Plan>>,
}

/// Whether a text may have changed the session's current database (`USE db`): column
/// encryption resolves table names there, so warden re-reads it.
fn may_change_database(analysis: &Analysis, packet: &Packet) -> bool {
    if analysis.is_understood() {
        return analysis
            .statements
            .iter()
            .any(|s| s.kind == StatementKind::Use);
    }
    let payload = packet.payload();
    payload.windows(3).enumerate().any(|(i, w)| {
        w.eq_ignore_ascii_case(b"use")
            && !payload
                .get(i + 3)
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
            && !i
                .checked_sub(1)
                .and_then(|j| payload.get(j))
                .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    })
}

impl Session {
    /// Rewrites a COM_STMT_PREPARE_OK's result column definitions for encrypted columns.
    fn describe_prepared(
        &self,
        definitions: &mut [Packet],
        plan: Option<&Plan>,
    ) -> Result<(), SessionEnd> {
        let Some(encryption) = &self.encryption else {
            return Ok(());
        };
        let catalog = Arc::clone(encryption.planner().catalog());
        if !catalog.has_encrypted() {
            return Ok(());
        }
        let mut defs = definitions
            .iter()
            .map(|p| ColumnDef::decode(&p.payload()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SessionEnd::ServerProtocol(e.to_string()))?;
        let outputs = plan.and_then(|p| p.outputs.first()).map(Vec::as_slice);
        if let Some(transform) = ResultCrypt::build(&catalog, &defs, outputs) {
            transform.describe(&mut defs, self.charset);
            for (packet, def) in definitions.iter_mut().zip(&defs) {
                *packet = Packet::new(packet.seq, &def.encode());
            }
        }
        Ok(())
    }
}
