//! What a statement does, as a small closed set of kinds.
//!
//! The kind is the first thing the firewall, the audit log and the metrics look at. Its label
//! ([`StatementKind::as_str`]) is used as a Prometheus label value, so the set is small, fixed and
//! lower case; anything sqlparser parses that is not listed here is [`StatementKind::Other`].

use serde::Serialize;
use sqlparser::ast::{CopySource, SetExpr, Statement};

/// The kind of one statement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub enum StatementKind {
    Select,
    Insert,
    Update,
    Delete,
    Merge,
    Copy(CopyDirection),
    Ddl(DdlKind),
    Transaction(TransactionKind),
    Set,
    Show,
    /// `RESET`, `DISCARD`.
    Reset,
    /// MySQL `USE db`: changes how unqualified table names resolve for the rest of the session.
    Use,
    /// SQL-level `PREPARE name AS …` (not the protocol's Parse message).
    Prepare,
    /// SQL-level `EXECUTE name`.
    Execute,
    /// SQL-level `DEALLOCATE name`.
    Deallocate,
    /// `EXPLAIN [ANALYZE] <of>`; with `analyze` the explained statement really runs.
    Explain {
        analyze: bool,
        of: Box<StatementKind>,
    },
    Call,
    Grant,
    Revoke,
    Listen,
    Notify,
    Unlisten,
    Lock,
    Vacuum,
    Analyze,
    Cursor(CursorKind),
    /// Parsed, but none of the above (`KILL`, `FLUSH`, `PRAGMA`, …).
    Other,
    /// Not parsed (sqlparser rejected it, or the text could not be tokenized).
    Unparsed,
}

/// Direction of a `COPY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyDirection {
    /// `COPY … FROM`: rows flow into a table.
    From,
    /// `COPY … TO`: rows flow out of the database.
    To,
}

/// The DDL verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DdlKind {
    Create,
    Alter,
    Drop,
    Truncate,
    Comment,
    Rename,
}

/// The transaction-control verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransactionKind {
    Begin,
    Commit,
    Rollback,
    Savepoint,
    Release,
}

/// The cursor verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CursorKind {
    Declare,
    Fetch,
    Close,
}

impl StatementKind {
    /// Every label [`as_str`](Self::as_str) can return, for pre-registering metrics.
    pub const LABELS: &'static [&'static str] = &[
        "select",
        "insert",
        "update",
        "delete",
        "merge",
        "copy.from",
        "copy.to",
        "ddl.create",
        "ddl.alter",
        "ddl.drop",
        "ddl.truncate",
        "ddl.comment",
        "ddl.rename",
        "transaction.begin",
        "transaction.commit",
        "transaction.rollback",
        "transaction.savepoint",
        "transaction.release",
        "set",
        "show",
        "reset",
        "use",
        "prepare",
        "execute",
        "deallocate",
        "explain",
        "call",
        "grant",
        "revoke",
        "listen",
        "notify",
        "unlisten",
        "lock",
        "vacuum",
        "analyze",
        "cursor.declare",
        "cursor.fetch",
        "cursor.close",
        "other",
        "unparsed",
    ];

    /// A stable lower-case label for audit records and metrics (one of [`LABELS`](Self::LABELS)).
    pub fn as_str(&self) -> &'static str {
        match self {
            StatementKind::Select => "select",
            StatementKind::Insert => "insert",
            StatementKind::Update => "update",
            StatementKind::Delete => "delete",
            StatementKind::Merge => "merge",
            StatementKind::Copy(CopyDirection::From) => "copy.from",
            StatementKind::Copy(CopyDirection::To) => "copy.to",
            StatementKind::Ddl(DdlKind::Create) => "ddl.create",
            StatementKind::Ddl(DdlKind::Alter) => "ddl.alter",
            StatementKind::Ddl(DdlKind::Drop) => "ddl.drop",
            StatementKind::Ddl(DdlKind::Truncate) => "ddl.truncate",
            StatementKind::Ddl(DdlKind::Comment) => "ddl.comment",
            StatementKind::Ddl(DdlKind::Rename) => "ddl.rename",
            StatementKind::Transaction(TransactionKind::Begin) => "transaction.begin",
            StatementKind::Transaction(TransactionKind::Commit) => "transaction.commit",
            StatementKind::Transaction(TransactionKind::Rollback) => "transaction.rollback",
            StatementKind::Transaction(TransactionKind::Savepoint) => "transaction.savepoint",
            StatementKind::Transaction(TransactionKind::Release) => "transaction.release",
            StatementKind::Set => "set",
            StatementKind::Show => "show",
            StatementKind::Reset => "reset",
            StatementKind::Use => "use",
            StatementKind::Prepare => "prepare",
            StatementKind::Execute => "execute",
            StatementKind::Deallocate => "deallocate",
            StatementKind::Explain { .. } => "explain",
            StatementKind::Call => "call",
            StatementKind::Grant => "grant",
            StatementKind::Revoke => "revoke",
            StatementKind::Listen => "listen",
            StatementKind::Notify => "notify",
            StatementKind::Unlisten => "unlisten",
            StatementKind::Lock => "lock",
            StatementKind::Vacuum => "vacuum",
            StatementKind::Analyze => "analyze",
            StatementKind::Cursor(CursorKind::Declare) => "cursor.declare",
            StatementKind::Cursor(CursorKind::Fetch) => "cursor.fetch",
            StatementKind::Cursor(CursorKind::Close) => "cursor.close",
            StatementKind::Other => "other",
            StatementKind::Unparsed => "unparsed",
        }
    }

    /// Whether statements of this kind change table data (`INSERT`, `UPDATE`, `DELETE`, `MERGE`,
    /// `COPY FROM`, `TRUNCATE`), or run one that does (`EXPLAIN ANALYZE`).
    pub fn modifies_data(&self) -> bool {
        match self {
            StatementKind::Insert
            | StatementKind::Update
            | StatementKind::Delete
            | StatementKind::Merge
            | StatementKind::Copy(CopyDirection::From)
            | StatementKind::Ddl(DdlKind::Truncate) => true,
            StatementKind::Explain { analyze, of } => *analyze && of.modifies_data(),
            _ => false,
        }
    }

    /// The kind of a parsed statement.
    pub(crate) fn of(statement: &Statement) -> StatementKind {
        use StatementKind as K;
        match statement {
            Statement::Query(query) => match query.body.as_ref() {
                // `WITH … INSERT/UPDATE/DELETE/MERGE …`: the CTEs feed a write.
                SetExpr::Insert(inner)
                | SetExpr::Update(inner)
                | SetExpr::Delete(inner)
                | SetExpr::Merge(inner) => K::of(inner),
                _ => K::Select,
            },
            Statement::Insert(_) => K::Insert,
            Statement::Update(_) => K::Update,
            Statement::Delete(_) => K::Delete,
            Statement::Merge(_) => K::Merge,
            Statement::Copy { to, source, .. } => {
                if *to || matches!(source, CopySource::Query(_)) {
                    K::Copy(CopyDirection::To)
                } else {
                    K::Copy(CopyDirection::From)
                }
            }
            Statement::CreateView(_)
            | Statement::CreateTable(_)
            | Statement::CreateVirtualTable { .. }
            | Statement::CreateIndex(_)
            | Statement::CreateRole(_)
            | Statement::CreateSecret { .. }
            | Statement::CreateServer(_)
            | Statement::CreatePolicy(_)
            | Statement::CreateConnector(_)
            | Statement::CreateOperator(_)
            | Statement::CreateOperatorFamily(_)
            | Statement::CreateOperatorClass(_)
            | Statement::CreateTextSearch(_)
            | Statement::CreateExtension(_)
            | Statement::CreateCollation(_)
            | Statement::CreateSchema { .. }
            | Statement::CreateDatabase { .. }
            | Statement::CreateFunction(_)
            | Statement::CreateTrigger(_)
            | Statement::CreateProcedure { .. }
            | Statement::CreateMacro { .. }
            | Statement::CreateStage { .. }
            | Statement::CreateFileFormat { .. }
            | Statement::CreateWarehouse(_)
            | Statement::CreateSequence { .. }
            | Statement::CreateDomain(_)
            | Statement::CreateType { .. }
            | Statement::CreateUser(_) => K::Ddl(DdlKind::Create),
            Statement::AlterTable(_)
            | Statement::AlterSchema(_)
            | Statement::AlterIndex { .. }
            | Statement::AlterView { .. }
            | Statement::AlterFunction(_)
            | Statement::AlterType(_)
            | Statement::AlterCollation(_)
            | Statement::AlterOperator(_)
            | Statement::AlterOperatorFamily(_)
            | Statement::AlterOperatorClass(_)
            | Statement::AlterTextSearch(_)
            | Statement::AlterRole { .. }
            | Statement::AlterPolicy(_)
            | Statement::AlterConnector { .. }
            | Statement::AlterUser(_) => K::Ddl(DdlKind::Alter),
            Statement::Drop { .. }
            | Statement::DropFunction(_)
            | Statement::DropDomain(_)
            | Statement::DropProcedure { .. }
            | Statement::DropSecret { .. }
            | Statement::DropPolicy(_)
            | Statement::DropConnector { .. }
            | Statement::DropExtension(_)
            | Statement::DropOperator(_)
            | Statement::DropOperatorFamily(_)
            | Statement::DropOperatorClass(_)
            | Statement::DropTrigger(_) => K::Ddl(DdlKind::Drop),
            Statement::Truncate(_) => K::Ddl(DdlKind::Truncate),
            Statement::Comment { .. } => K::Ddl(DdlKind::Comment),
            Statement::RenameTable(_) => K::Ddl(DdlKind::Rename),
            Statement::StartTransaction { .. } => K::Transaction(TransactionKind::Begin),
            Statement::Commit { .. } => K::Transaction(TransactionKind::Commit),
            Statement::Rollback { .. } => K::Transaction(TransactionKind::Rollback),
            Statement::Savepoint { .. } => K::Transaction(TransactionKind::Savepoint),
            Statement::ReleaseSavepoint { .. } => K::Transaction(TransactionKind::Release),
            Statement::Set(_) => K::Set,
            Statement::ShowFunctions { .. }
            | Statement::ShowVariable { .. }
            | Statement::ShowStatus { .. }
            | Statement::ShowVariables { .. }
            | Statement::ShowCreate { .. }
            | Statement::ShowColumns { .. }
            | Statement::ShowCatalogs { .. }
            | Statement::ShowDatabases { .. }
            | Statement::ShowProcessList { .. }
            | Statement::ShowSchemas { .. }
            | Statement::ShowCharset(_)
            | Statement::ShowObjects(_)
            | Statement::ShowTables { .. }
            | Statement::ShowViews { .. }
            | Statement::ShowCollation { .. }
            | Statement::ExplainTable { .. } => K::Show,
            Statement::Reset(_) | Statement::Discard { .. } => K::Reset,
            Statement::Use(_) => K::Use,
            Statement::Prepare { .. } => K::Prepare,
            Statement::Execute { .. } => K::Execute,
            Statement::Deallocate { .. } => K::Deallocate,
            Statement::Explain {
                analyze, statement, ..
            } => K::Explain {
                analyze: *analyze,
                of: Box::new(K::of(statement)),
            },
            Statement::Call(_) => K::Call,
            Statement::Grant(_) => K::Grant,
            Statement::Revoke(_) | Statement::Deny(_) => K::Revoke,
            Statement::LISTEN { .. } => K::Listen,
            Statement::NOTIFY { .. } => K::Notify,
            Statement::UNLISTEN { .. } => K::Unlisten,
            Statement::Lock(_) | Statement::LockTables { .. } | Statement::UnlockTables => K::Lock,
            Statement::Vacuum(_) => K::Vacuum,
            Statement::Analyze(_) => K::Analyze,
            Statement::Declare { .. } => K::Cursor(CursorKind::Declare),
            Statement::Fetch { .. } => K::Cursor(CursorKind::Fetch),
            Statement::Close { .. } => K::Cursor(CursorKind::Close),
            _ => K::Other,
        }
    }
}

impl std::fmt::Display for StatementKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<StatementKind> for String {
    fn from(kind: StatementKind) -> String {
        kind.as_str().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_lower_case_and_listed() {
        let mut seen = std::collections::HashSet::new();
        for label in StatementKind::LABELS {
            assert!(seen.insert(*label), "duplicate {label}");
            assert_eq!(label.to_ascii_lowercase(), *label);
        }
        let sample = [
            StatementKind::Select,
            StatementKind::Copy(CopyDirection::To),
            StatementKind::Ddl(DdlKind::Rename),
            StatementKind::Transaction(TransactionKind::Release),
            StatementKind::Explain {
                analyze: true,
                of: Box::new(StatementKind::Delete),
            },
            StatementKind::Cursor(CursorKind::Fetch),
            StatementKind::Unparsed,
        ];
        for kind in sample {
            assert!(StatementKind::LABELS.contains(&kind.as_str()));
        }
    }

    #[test]
    fn explain_analyze_of_a_write_modifies_data() {
        let kind = StatementKind::Explain {
            analyze: true,
            of: Box::new(StatementKind::Delete),
        };
        assert!(kind.modifies_data());
        let kind = StatementKind::Explain {
            analyze: false,
            of: Box::new(StatementKind::Delete),
        };
        assert!(!kind.modifies_data());
    }
}
