//! Following how the server lexes this session's SQL: the `sql_mode` switches that change
//! lexing (`ANSI_QUOTES`, `NO_BACKSLASH_ESCAPES`) and the client character set.
//!
//! Warden reads `@@SESSION.sql_mode` and `@@SESSION.character_set_client` with a query of its
//! own after login, and again after any command that may have changed them (text that names
//! `sql_mode`, a character set or `NAMES`, or runs dynamic SQL with `EXECUTE`; COM_CHANGE_USER;
//! COM_RESET_CONNECTION). The server answers it before the client's next command, and warden
//! consumes the answer. Until it is known, and whenever the character set can hide quote bytes
//! inside multi-byte characters, the session's SQL is analysed as opaque text: warden never
//! guesses how the server reads it.
//!
//! The same query reads the session's current database (`DATABASE()`): column encryption
//! resolves unqualified table names there, and `USE db` sent as SQL text changes it (the
//! session re-reads it after such text when the upstream encrypts columns).

use warden_analysis::Dialect;

use super::{Session, SessionEnd};
use crate::mysql::codec::Reader;
use crate::mysql::constants::charset_hides_quotes;
use crate::mysql::messages::{ErrPacket, is_terminator};
use crate::mysql::packet::Packet;

/// The query warden sends between the client's commands.
pub const PROBE: &str = "SELECT @@SESSION.sql_mode, @@SESSION.character_set_client, DATABASE()";

/// What warden knows about the session's lexing.
#[derive(Debug, Default, Clone)]
pub struct Lexing {
    known: Option<(String, String)>,
    /// The current database as last read (`Some("")` when none is selected).
    database: Option<String>,
}

impl Lexing {
    /// The dialect to analyse the session's SQL in, or why it cannot be analysed.
    pub fn dialect(&self) -> Result<Dialect, &'static str> {
        let Some((mode, charset)) = &self.known else {
            return Err("the session's sql_mode is unknown to warden: its SQL is not analysed");
        };
        if charset_hides_quotes(charset) {
            return Err(
                "the client character set can hide quotes in multi-byte characters: warden does not analyse this session's SQL",
            );
        }
        Ok(dialect_of(mode))
    }

    pub fn set(&mut self, sql_mode: String, charset: String) {
        self.known = Some((sql_mode, charset));
    }

    pub fn forget(&mut self) {
        self.known = None;
        self.database = None;
    }

    /// The session's current database, when warden read it.
    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    pub fn set_database(&mut self, database: String) {
        self.database = Some(database);
    }
}

/// The lexing switches of an `sql_mode` value (as the server reports it, modes expanded).
pub fn dialect_of(sql_mode: &str) -> Dialect {
    let has = |name: &str| {
        sql_mode
            .split(',')
            .any(|m| m.trim().eq_ignore_ascii_case(name))
    };
    Dialect::MySql {
        ansi_quotes: has("ANSI_QUOTES") || has("ANSI"),
        no_backslash_escapes: has("NO_BACKSLASH_ESCAPES"),
    }
}

/// Whether running `sql` may change how the server lexes the session's later SQL.
pub fn may_change_lexing(sql: &[u8]) -> bool {
    const WORDS: [&[u8]; 5] = [
        b"sql_mode",
        b"names",
        b"character_set",
        b"charset",
        b"execute",
    ];
    sql.windows(5).enumerate().any(|(i, w)| {
        WORDS.iter().any(|word| {
            w.eq_ignore_ascii_case(&word[..5])
                && sql
                    .get(i..i + word.len())
                    .is_some_and(|s| s.eq_ignore_ascii_case(word))
        })
    })
}

impl Session {
    /// Asks the server for the session's `sql_mode` and character set, and consumes the answer.
    pub(super) async fn refresh_lexing(&mut self) -> Result<(), SessionEnd> {
        self.lexing.forget();
        let mut payload = vec![crate::mysql::constants::command::QUERY];
        payload.extend_from_slice(PROBE.as_bytes());
        self.server_out
            .send(&Packet::new(0, &payload))
            .await
            .map_err(SessionEnd::Io)?;
        let first = self.server_in.expect().await.map_err(SessionEnd::server)?;
        match first.first() {
            Some(0xff) => {
                let err = ErrPacket::decode(&first.payload()).ok();
                tracing::warn!(session = self.identity.session_id, error = ?err, "cannot read the session's sql_mode; its SQL is treated as opaque");
                return Ok(());
            }
            Some(0x00) | Some(0xfb) => {
                return Err(SessionEnd::ServerProtocol(
                    "unexpected answer to warden's sql_mode query".into(),
                ));
            }
            _ => {}
        }
        let columns = Reader::new(first.head())
            .lenenc("column count")
            .map_err(|e| SessionEnd::ServerProtocol(e.to_string()))?;
        let skip = columns + u64::from(!self.deprecate_eof);
        for _ in 0..skip {
            self.server_in.expect().await.map_err(SessionEnd::server)?;
        }
        let mut values = None;
        loop {
            let packet = self.server_in.expect().await.map_err(SessionEnd::server)?;
            if packet.first() == Some(0xff) {
                return Ok(());
            }
            if is_terminator(&packet, self.deprecate_eof) {
                break;
            }
            let payload = packet.payload();
            let mut r = Reader::new(&payload);
            let mut text = || -> Option<String> {
                match r.lenenc_or_null("value").ok()? {
                    None => Some(String::new()),
                    Some(n) => r
                        .take(usize::try_from(n).ok()?, "value")
                        .ok()
                        .map(|v| String::from_utf8_lossy(v).into_owned()),
                }
            };
            values = text().zip(text()).zip(text());
        }
        if let Some(((mode, charset), database)) = values {
            self.lexing.set(mode, charset);
            self.lexing.set_database(database);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_modes_give_lexing_switches() {
        assert_eq!(
            dialect_of("STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO"),
            Dialect::MYSQL_DEFAULT
        );
        assert_eq!(
            dialect_of("REAL_AS_FLOAT,PIPES_AS_CONCAT,ANSI_QUOTES,IGNORE_SPACE"),
            Dialect::MySql {
                ansi_quotes: true,
                no_backslash_escapes: false
            }
        );
        assert_eq!(
            dialect_of("no_backslash_escapes"),
            Dialect::MySql {
                ansi_quotes: false,
                no_backslash_escapes: true
            }
        );
    }

    #[test]
    fn unknown_modes_and_risky_charsets_are_opaque() {
        let mut l = Lexing::default();
        assert!(l.dialect().is_err());
        l.set(String::new(), "utf8mb4".into());
        assert_eq!(l.dialect(), Ok(Dialect::MYSQL_DEFAULT));
        l.set(String::new(), "gbk".into());
        assert!(l.dialect().is_err());
    }

    #[test]
    fn statements_that_may_change_lexing_are_noticed() {
        assert!(may_change_lexing(b"SET SESSION SQL_MODE='ANSI'"));
        assert!(may_change_lexing(b"set names gbk"));
        assert!(may_change_lexing(b"SET character_set_client = latin1"));
        assert!(may_change_lexing(b"EXECUTE IMMEDIATE @q"));
        assert!(!may_change_lexing(b"SELECT c FROM sbtest1 WHERE id=1"));
        assert!(!may_change_lexing(b"sql"));
    }
}
