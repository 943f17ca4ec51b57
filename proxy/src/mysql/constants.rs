//! Numbers of the MySQL client/server protocol: capability flags, commands, status flags,
//! and the error codes warden sends itself.

/// Capability flags (the low 32 bits are MySQL's; MariaDB's extended ones are above).
pub mod caps {
    /// MySQL: "long password"; a MariaDB server clears it to say it has extended capabilities.
    pub const CLIENT_MYSQL: u64 = 1;
    pub const FOUND_ROWS: u64 = 1 << 1;
    pub const LONG_FLAG: u64 = 1 << 2;
    pub const CONNECT_WITH_DB: u64 = 1 << 3;
    pub const NO_SCHEMA: u64 = 1 << 4;
    pub const COMPRESS: u64 = 1 << 5;
    pub const ODBC: u64 = 1 << 6;
    pub const LOCAL_FILES: u64 = 1 << 7;
    pub const IGNORE_SPACE: u64 = 1 << 8;
    pub const PROTOCOL_41: u64 = 1 << 9;
    pub const INTERACTIVE: u64 = 1 << 10;
    pub const SSL: u64 = 1 << 11;
    pub const IGNORE_SIGPIPE: u64 = 1 << 12;
    pub const TRANSACTIONS: u64 = 1 << 13;
    pub const RESERVED: u64 = 1 << 14;
    pub const SECURE_CONNECTION: u64 = 1 << 15;
    pub const MULTI_STATEMENTS: u64 = 1 << 16;
    pub const MULTI_RESULTS: u64 = 1 << 17;
    pub const PS_MULTI_RESULTS: u64 = 1 << 18;
    pub const PLUGIN_AUTH: u64 = 1 << 19;
    pub const CONNECT_ATTRS: u64 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_DATA: u64 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u64 = 1 << 22;
    pub const SESSION_TRACK: u64 = 1 << 23;
    pub const DEPRECATE_EOF: u64 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u64 = 1 << 25;
    pub const ZSTD_COMPRESSION: u64 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u64 = 1 << 27;
    pub const MULTI_FACTOR_AUTH: u64 = 1 << 28;

    /// What warden's relay understands. Compression, query attributes, optional result-set
    /// metadata, multi-factor authentication and MariaDB's extended capabilities (progress
    /// reports, bulk operations, extended and cached metadata) change packet formats warden
    /// reads, so they are never offered; a client that asks for them anyway is refused.
    pub const SUPPORTED: u64 = CLIENT_MYSQL
        | FOUND_ROWS
        | LONG_FLAG
        | CONNECT_WITH_DB
        | NO_SCHEMA
        | ODBC
        | LOCAL_FILES
        | IGNORE_SPACE
        | PROTOCOL_41
        | INTERACTIVE
        | SSL
        | IGNORE_SIGPIPE
        | TRANSACTIONS
        | RESERVED
        | SECURE_CONNECTION
        | MULTI_STATEMENTS
        | MULTI_RESULTS
        | PS_MULTI_RESULTS
        | PLUGIN_AUTH
        | CONNECT_ATTRS
        | PLUGIN_AUTH_LENENC_DATA
        | CAN_HANDLE_EXPIRED_PASSWORDS
        | SESSION_TRACK
        | DEPRECATE_EOF;

    /// What a client must support to talk to warden.
    pub const REQUIRED: u64 = PROTOCOL_41 | SECURE_CONNECTION | PLUGIN_AUTH;

    /// Flags a client may send that are not part of what it asks the server for.
    pub const CLIENT_ONLY: u64 = (1 << 30) | (1 << 31);
}

/// Command bytes (the first byte of a client packet after login).
pub mod command {
    pub const SLEEP: u8 = 0x00;
    pub const QUIT: u8 = 0x01;
    pub const INIT_DB: u8 = 0x02;
    pub const QUERY: u8 = 0x03;
    pub const FIELD_LIST: u8 = 0x04;
    pub const STATISTICS: u8 = 0x09;
    pub const PROCESS_INFO: u8 = 0x0a;
    pub const CONNECT: u8 = 0x0b;
    pub const PROCESS_KILL: u8 = 0x0c;
    pub const DEBUG: u8 = 0x0d;
    pub const PING: u8 = 0x0e;
    pub const TIME: u8 = 0x0f;
    pub const DELAYED_INSERT: u8 = 0x10;
    pub const CHANGE_USER: u8 = 0x11;
    pub const BINLOG_DUMP: u8 = 0x12;
    pub const TABLE_DUMP: u8 = 0x13;
    pub const CONNECT_OUT: u8 = 0x14;
    pub const REGISTER_SLAVE: u8 = 0x15;
    pub const STMT_PREPARE: u8 = 0x16;
    pub const STMT_EXECUTE: u8 = 0x17;
    pub const STMT_SEND_LONG_DATA: u8 = 0x18;
    pub const STMT_CLOSE: u8 = 0x19;
    pub const STMT_RESET: u8 = 0x1a;
    pub const SET_OPTION: u8 = 0x1b;
    pub const STMT_FETCH: u8 = 0x1c;
    pub const DAEMON: u8 = 0x1d;
    pub const BINLOG_DUMP_GTID: u8 = 0x1e;
    pub const RESET_CONNECTION: u8 = 0x1f;
    /// MariaDB's COM_MULTI (never negotiated through warden).
    pub const MULTI: u8 = 0xfe;
    /// MariaDB's bulk execute (needs STMT_BULK_OPERATIONS, never negotiated through warden).
    pub const STMT_BULK_EXECUTE: u8 = 0xfa;
}

/// Server status flags (OK and EOF packets).
pub mod status {
    pub const IN_TRANS: u16 = 0x0001;
    pub const AUTOCOMMIT: u16 = 0x0002;
    pub const MORE_RESULTS_EXISTS: u16 = 0x0008;
    pub const CURSOR_EXISTS: u16 = 0x0040;
    pub const LAST_ROW_SENT: u16 = 0x0080;
}

/// Error codes and SQLSTATEs warden uses in the ERR packets it writes itself.
pub mod errors {
    /// ER_UNKNOWN_ERROR.
    pub const UNKNOWN: u16 = 1105;
    /// ER_ACCESS_DENIED_ERROR.
    pub const ACCESS_DENIED: u16 = 1045;
    /// ER_TABLEACCESS_DENIED_ERROR: what MySQL answers when a privilege is missing.
    pub const TABLE_ACCESS_DENIED: u16 = 1142;
    /// ER_HANDSHAKE_ERROR ("Bad handshake").
    pub const HANDSHAKE: u16 = 1043;
    /// ER_CON_COUNT_ERROR.
    pub const TOO_MANY_CONNECTIONS: u16 = 1040;
    /// ER_NOT_SUPPORTED_YET.
    pub const NOT_SUPPORTED: u16 = 1235;
    /// ER_NET_PACKETS_OUT_OF_ORDER: the client broke the protocol.
    pub const PACKETS_OUT_OF_ORDER: u16 = 1156;
    /// ER_UNKNOWN_COM_ERROR.
    pub const UNKNOWN_COMMAND: u16 = 1047;
    /// ER_SERVER_SHUTDOWN.
    pub const SHUTDOWN: u16 = 1053;
    /// ER_SECURE_TRANSPORT_REQUIRED.
    pub const SECURE_TRANSPORT_REQUIRED: u16 = 3159;
}

/// Whether a client character set can hide a quote or backslash byte inside a multi-byte
/// character (the second byte of big5, gbk, sjis, cp932 and gb18030 characters can be 0x5C or
/// 0x27), so that warden's reading of the text could differ from the server's.
pub fn charset_hides_quotes(name: &str) -> bool {
    matches!(
        name.to_ascii_lowercase().as_str(),
        "big5" | "gbk" | "sjis" | "cp932" | "gb18030"
    )
}
