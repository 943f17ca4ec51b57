//! The planner: from a SQL text and the live catalog to a [`Plan`].
//!
//! It walks every statement with the scopes SQL gives names (tables, aliases, subqueries,
//! CTEs, `EXCLUDED`), and classifies each place a protected column appears:
//!
//! - a value written into it (INSERT values, UPDATE and ON CONFLICT `SET`) must be a literal,
//!   a parameter, `NULL`, `DEFAULT`, or a column of the same key domain (`EXCLUDED.c`,
//!   `INSERT … SELECT` between same-domain columns); literals and parameters are encrypted;
//! - a comparison must be one the mode answers on ciphertext: deterministic `=`, `<>`, `IN`,
//!   `IS [NOT] DISTINCT FROM`; order-preserving also `<`, `<=`, `>`, `>=`, `BETWEEN`; any mode
//!   `IS [NOT] NULL`. The other side must be a literal or parameter (encrypted for the column)
//!   or a column of the same domain (joins);
//! - a result column may be the column itself (decrypted on the way out), `count(…)`, or, for
//!   order-preserving columns, `min`/`max`; GROUP BY and DISTINCT need equality (not randomized),
//!   ORDER BY needs order (order-preserving only);
//! - anything else (functions, arithmetic, casts, LIKE, CASE, concatenation, other aggregates,
//!   copying ciphertext into an unprotected column) is refused with the column and the reason.
//!   It could only give wrong results or ciphertext.
//!
//! Columns that are declared but still hold plaintext (before `warden encrypt`) are ordinary
//! columns here. Plans are cached by template: nothing in a plan depends on a literal's value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, CastKind, CopyLegacyCsvOption, CopyLegacyOption, CopyOption,
    CopySource, CopyTarget, Delete, Distinct, Expr, FromTable, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, Insert, JoinConstraint, JoinOperator,
    ObjectName, ObjectNamePart, OnConflictAction, OnInsert, OrderBy, OrderByKind, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, TableObject, TableWithJoins, UnaryOperator,
    Update, UpdateTableFromKind, Value,
};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;
use warden_analysis::Dialect;
use warden_crypto::Mode;

use crate::catalog::{Catalog, CatalogTable};
use crate::cipher::ColumnCrypto;
use crate::plan::{CopyFormat, CopyPlan, LiteralSlot, Plan, PlanRefusal};
use crate::tokens::{self, Tok};

/// Plans at most this many templates before the cache starts over.
const CACHE_CAPACITY: usize = 10_000;

/// Plans statements against one catalog, caching by template.
pub struct Planner {
    catalog: Arc<Catalog>,
    dialect: Dialect,
    cache: Mutex<HashMap<String, Arc<Plan>>>,
}

impl std::fmt::Debug for Planner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Planner")
            .field("catalog_generation", &self.catalog.generation)
            .finish()
    }
}

impl Planner {
    /// A planner for PostgreSQL sessions.
    pub fn new(catalog: Arc<Catalog>) -> Planner {
        Planner::with_dialect(catalog, Dialect::PostgreSql)
    }

    /// A planner for sessions of `dialect` (MySQL sessions plan in their `sql_mode`'s lexing:
    /// use one planner per dialect, or the default MySQL dialect and
    /// [`Planner::plan_opaque`] for sessions whose lexing differs).
    pub fn with_dialect(catalog: Arc<Catalog>, dialect: Dialect) -> Planner {
        Planner {
            catalog,
            dialect,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The dialect plans are made in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The catalog plans are made against.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The plan of `sql`. `template` is its literal-free form (the analysis' redacted SQL), the
    /// cache key; `None` for texts that must not be cached.
    pub fn plan(&self, sql: &str, template: Option<&str>) -> Arc<Plan> {
        if !self.catalog.has_encrypted() {
            return Arc::new(Plan::passthrough());
        }
        if let Some(key) = template
            && let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(key).cloned())
        {
            return hit;
        }
        let plan = Arc::new(self.compute(sql));
        if let Some(key) = template
            && let Ok(mut cache) = self.cache.lock()
        {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(key.to_string(), Arc::clone(&plan));
        }
        plan
    }

    /// The plan of a text whose lexing warden cannot follow (a session with
    /// `standard_conforming_strings = off` or a non-UTF-8 encoding): it is refused if it names
    /// a table with encrypted columns, and passes untouched otherwise.
    pub fn plan_opaque(&self, sql: &str) -> Arc<Plan> {
        if !self.catalog.has_encrypted() {
            return Arc::new(Plan::passthrough());
        }
        Arc::new(self.unreadable(sql, "cannot be read reliably in this session's settings"))
    }

    fn compute(&self, sql: &str) -> Plan {
        if let Some(plan) = self.load_data(sql) {
            return plan;
        }
        let toks = match tokens::lex(sql, self.dialect) {
            Ok(t) => t,
            Err(_) => return self.unreadable(sql, "could not be tokenized"),
        };
        let statements = match self.dialect.with_sqlparser(|d| {
            Parser::new(d)
                .try_with_sql(sql)
                .and_then(|mut p| p.parse_statements())
        }) {
            Ok(s) => s,
            Err(_) => return self.unreadable(sql, "could not be parsed"),
        };
        // `?` placeholders (MySQL) are numbered in text order.
        let mut ordinal = 0;
        let placeholders = toks
            .iter()
            .enumerate()
            .filter(|(_, t)| matches!(&t.token, Token::Placeholder(p) if p == "?"))
            .map(|(i, _)| {
                ordinal += 1;
                (i, ordinal)
            })
            .collect();
        let mut builder = Builder {
            catalog: &self.catalog,
            dialect: self.dialect,
            placeholders,
            toks: &toks,
            by_location: toks
                .iter()
                .enumerate()
                .map(|(i, t)| (t.location, i))
                .collect(),
            scopes: Vec::new(),
            ctes: Vec::new(),
            plan: Plan::default(),
        };
        for statement in &statements {
            let outputs = match builder.statement(statement) {
                Ok(o) => o,
                Err(refusal) => {
                    return Plan {
                        refusal: Some(refusal),
                        ..Plan::default()
                    };
                }
            };
            builder.plan.outputs.push(outputs);
        }
        let mut plan = builder.plan;
        plan.literals.sort_by_key(|s| s.tokens.start);
        plan
    }

    /// MySQL's `LOAD DATA`, which sqlparser does not read (see [`crate::load_data`]); `None`
    /// for other texts.
    fn load_data(&self, sql: &str) -> Option<Plan> {
        use crate::load_data::{self, LoadData};
        if self.dialect == Dialect::PostgreSql {
            return None;
        }
        match load_data::plan(sql, self.dialect, &self.catalog) {
            LoadData::NotLoadData => None,
            LoadData::Unreadable => Some(self.unreadable(sql, "could not be parsed")),
            LoadData::Untouched => Some(Plan::passthrough()),
            LoadData::Planned(p) => Some(Plan {
                load_data: Some(Arc::new(p)),
                ..Plan::default()
            }),
            LoadData::Refused(r) => Some(Plan {
                refusal: Some(r),
                ..Plan::default()
            }),
        }
    }

    /// A text warden cannot read is refused if it names a table with encrypted columns: it
    /// could write plaintext into them or read ciphertext out.
    fn unreadable(&self, sql: &str, what: &str) -> Plan {
        match mentioned_encrypted_table(&self.catalog, sql) {
            Some(table) => Plan::refuse(
                format!("{}.{}", table.schema, table.name),
                format!(
                    "the statement {what} by warden and names table {}, which has encrypted columns; it is refused rather than run unchecked",
                    table.name
                ),
            ),
            None => Plan::passthrough(),
        }
    }
}

/// A table with encrypted columns whose name appears as a whole word in `text`
/// (case-insensitively).
fn mentioned_encrypted_table<'c>(catalog: &'c Catalog, text: &str) -> Option<&'c CatalogTable> {
    let lower = text.to_lowercase();
    catalog
        .tables()
        .iter()
        .filter(|t| t.has_encrypted())
        .find(|table| {
            let name = table.name.to_lowercase();
            lower.match_indices(name.as_str()).any(|(i, m)| {
                let before = lower[..i].chars().next_back();
                let after = lower[i + m.len()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after)
            })
        })
}

type Refused = PlanRefusal;
type Outcome<T> = Result<T, Refused>;

fn refuse<T>(column: &ColumnCrypto, reason: impl Into<String>) -> Outcome<T> {
    Err(PlanRefusal {
        column: column.column.display_name(),
        reason: reason.into(),
    })
}

/// One result column of a query or relation.
#[derive(Debug, Clone)]
struct OutCol {
    name: Option<String>,
    crypto: Option<Arc<ColumnCrypto>>,
}

/// Something in a FROM clause, by the name it answers to.
#[derive(Debug, Clone)]
struct Source {
    /// The alias, or the table's own name.
    name: String,
    /// The schema, when the relation is a table named with one.
    schema: Option<String>,
    columns: SourceColumns,
}

#[derive(Debug, Clone)]
enum SourceColumns {
    /// A table warden knows (it has protected columns).
    Known(Vec<OutCol>),
    /// A table or function warden does not track: none of its columns is protected.
    Unknown,
}

/// What an expression is, as far as encryption cares.
#[derive(Debug, Clone)]
enum Operand {
    /// A protected column holding ciphertext.
    Column(Arc<ColumnCrypto>),
    /// A literal (its slot, not yet tied to a column).
    Literal {
        tokens: std::ops::Range<usize>,
        literal: usize,
        negate: bool,
    },
    /// `$n`.
    Param(usize),
    Null,
    /// `DEFAULT` in VALUES or SET.
    Default,
    /// Anything else, already checked to involve no protected column.
    Plain,
}

struct Builder<'a> {
    catalog: &'a Catalog,
    dialect: Dialect,
    /// Token index of each `?` placeholder → its 1-based ordinal.
    placeholders: HashMap<usize, usize>,
    toks: &'a [Tok],
    by_location: HashMap<(u64, u64), usize>,
    scopes: Vec<Vec<Source>>,
    ctes: Vec<(String, Vec<OutCol>)>,
    plan: Plan,
}

fn ident_name(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

fn object_parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => ident_name(i),
            other => other.to_string(),
        })
        .collect()
}

fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Randomized => "randomized",
        Mode::Deterministic => "deterministic",
        Mode::OrderPreserving => "order-preserving",
        Mode::FormatPreserving => "format-preserving",
    }
}

fn same_domain(a: &ColumnCrypto, b: &ColumnCrypto) -> bool {
    a.column.domain == b.column.domain
}

fn is_comparison(op: &BinaryOperator) -> bool {
    matches!(
        op,
        BinaryOperator::Eq
            | BinaryOperator::NotEq
            | BinaryOperator::Lt
            | BinaryOperator::LtEq
            | BinaryOperator::Gt
            | BinaryOperator::GtEq
    )
}

fn is_equality(op: &BinaryOperator) -> bool {
    matches!(op, BinaryOperator::Eq | BinaryOperator::NotEq)
}

/// The result column an ORDER BY item names by alias (`ORDER BY total`) or position
/// (`ORDER BY 2`): `Some` with its protection, `None` when the item is not such a reference.
fn output_named(expr: &Expr, outs: &[OutCol]) -> Option<Option<Arc<ColumnCrypto>>> {
    let out = match expr {
        Expr::Identifier(i) => {
            let name = ident_name(i);
            outs.iter()
                .find(|out| out.name.as_deref() == Some(name.as_str()))
        }
        Expr::Value(v) => match &v.value {
            Value::Number(n, _) => n
                .parse::<usize>()
                .ok()
                .and_then(|i| outs.get(i.wrapping_sub(1))),
            _ => None,
        },
        _ => None,
    }?;
    Some(out.crypto.clone())
}

/// Whether two column names are the same column: exactly, or ignoring ASCII case (MySQL
/// column names are case-insensitive even when quoted; PostgreSQL would reject a quoted name
/// whose case matches no column, so the fallback never changes its meaning).
fn same_column(a: &str, b: &str) -> bool {
    a == b || a.eq_ignore_ascii_case(b)
}

/// The function's name, lowercased, without schema.
fn function_name(f: &Function) -> String {
    object_parts(&f.name).pop().unwrap_or_default()
}

/// The plain expression arguments of a function call (`count(*)` has none).
fn function_args(f: &Function) -> (Vec<&Expr>, bool) {
    match &f.args {
        FunctionArguments::List(list) => {
            let distinct = list.duplicate_treatment.is_some();
            let args = list
                .args
                .iter()
                .filter_map(|a| match a {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    }
                    | FunctionArg::ExprNamed {
                        arg: FunctionArgExpr::Expr(e),
                        ..
                    } => Some(e),
                    _ => None,
                })
                .collect();
            (args, distinct)
        }
        _ => (Vec::new(), false),
    }
}

impl Builder<'_> {
    // ----- statements -----

    fn statement(&mut self, statement: &Statement) -> Outcome<Vec<Option<Arc<ColumnCrypto>>>> {
        let outs = match statement {
            Statement::Query(q) => self.query(q)?,
            Statement::Insert(insert) => self.insert(insert)?,
            Statement::Update(update) => self.update(update)?,
            Statement::Delete(delete) => self.delete(delete)?,
            Statement::Explain { statement, .. } => {
                self.statement(statement)?;
                Vec::new()
            }
            Statement::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => {
                self.copy(source, *to, target, options, legacy_options)?;
                Vec::new()
            }
            Statement::CreateView(view) => {
                self.query(&view.query)?;
                Vec::new()
            }
            Statement::CreateTable(create) => {
                if let Some(q) = &create.query
                    && let Some(c) = self.query(q)?.into_iter().find_map(|o| o.crypto)
                {
                    return refuse(
                        &c,
                        "CREATE TABLE … AS would copy its ciphertext into a table that is not declared encrypted",
                    );
                }
                Vec::new()
            }
            Statement::Declare { stmts } => {
                for d in stmts {
                    if let Some(q) = &d.for_query {
                        self.query(q)?;
                    }
                }
                Vec::new()
            }
            Statement::Merge(merge) => {
                let mut names = Vec::new();
                let _ = sqlparser::ast::visit_relations(merge, |r| {
                    names.push(r.clone());
                    std::ops::ControlFlow::<()>::Continue(())
                });
                for name in names {
                    if let Some(t) = self.table(&name).filter(|t| t.has_encrypted()) {
                        let c = t
                            .columns
                            .iter()
                            .find_map(|c| c.encrypted())
                            .expect("has_encrypted");
                        return refuse(
                            c,
                            format!(
                                "MERGE on table {} is not supported while it has encrypted columns; use INSERT … ON CONFLICT or UPDATE",
                                t.name
                            ),
                        );
                    }
                }
                Vec::new()
            }
            Statement::Prepare { statement, .. } => {
                let before = self.plan.literals.len() + self.plan.params.len();
                self.statement(statement)?;
                if self.plan.literals.len() + self.plan.params.len() != before {
                    return Err(PlanRefusal {
                        column: "(PREPARE)".into(),
                        reason: "SQL-level PREPARE of a statement with values for encrypted columns is not supported; use the protocol's prepared statements".into(),
                    });
                }
                Vec::new()
            }
            Statement::CreateFunction(_)
            | Statement::CreateProcedure { .. }
            | Statement::CreateTrigger(_) => {
                // Their bodies run later, inside the database, out of warden's sight.
                if let Some(table) = self.mentioned_encrypted_table(&statement.to_string()) {
                    return Err(PlanRefusal {
                        column: format!("{}.{}", table.schema, table.name),
                        reason: format!(
                            "a function, procedure or trigger whose body names {}, which has encrypted columns, would read or write them where warden cannot encrypt or decrypt; create it through the service login",
                            table.name
                        ),
                    });
                }
                Vec::new()
            }
            _ => Vec::new(),
        };
        Ok(outs.into_iter().map(|o| o.crypto).collect())
    }

    /// `COPY`: through the client connection, protected fields are encrypted (in) or
    /// decrypted (out) by warden row by row; to or from a server file or program they cannot
    /// be, so that is refused.
    fn copy(
        &mut self,
        source: &CopySource,
        to: bool,
        target: &CopyTarget,
        options: &[CopyOption],
        legacy: &[CopyLegacyOption],
    ) -> Outcome<()> {
        let fields: Vec<Option<Arc<ColumnCrypto>>> = match source {
            CopySource::Table {
                table_name,
                columns,
            } => match self.table(table_name) {
                None => return Ok(()),
                Some(t) if columns.is_empty() => t
                    .visible_columns()
                    .map(|c| c.encrypted().cloned())
                    .collect(),
                Some(t) => columns
                    .iter()
                    .map(|c| {
                        t.column(&ident_name(c))
                            .and_then(|c| c.encrypted().cloned())
                    })
                    .collect(),
            },
            CopySource::Query(q) => self.query(q)?.into_iter().map(|o| o.crypto).collect(),
        };
        let Some(first) = fields.iter().flatten().next().cloned() else {
            return Ok(());
        };
        let through_client = matches!(target, CopyTarget::Stdin | CopyTarget::Stdout);
        if !through_client {
            return refuse(
                &first,
                "COPY to or from a server file or program bypasses warden, which encrypts and decrypts the column; use COPY … FROM STDIN / TO STDOUT",
            );
        }
        let mut format = "text".to_string();
        let (mut delimiter, mut null, mut header) = (None, None, false);
        let (mut quote, mut escape) = (b'"', None);
        let single_byte = |c: char, what: &str| -> Outcome<u8> {
            u8::try_from(c as u32)
                .ok()
                .filter(u8::is_ascii)
                .map_or_else(
                    || {
                        refuse(
                            &first,
                            format!(
                                "COPY with a non-ASCII {what} is not supported on encrypted columns"
                            ),
                        )
                    },
                    Ok,
                )
        };
        for o in options {
            match o {
                CopyOption::Format(f) => format = f.value.to_lowercase(),
                CopyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "delimiter")?),
                CopyOption::Null(n) => null = Some(n.clone()),
                CopyOption::Header(h) => header = *h,
                CopyOption::Quote(c) => quote = single_byte(*c, "quote")?,
                CopyOption::Escape(c) => escape = Some(single_byte(*c, "escape")?),
                _ => {}
            }
        }
        for o in legacy {
            match o {
                CopyLegacyOption::Binary => format = "binary".into(),
                CopyLegacyOption::Delimiter(c) => delimiter = Some(single_byte(*c, "delimiter")?),
                CopyLegacyOption::Null(n) => null = Some(n.clone()),
                CopyLegacyOption::Csv(csv) => {
                    format = "csv".into();
                    for c in csv {
                        match c {
                            CopyLegacyCsvOption::Header => header = true,
                            CopyLegacyCsvOption::Quote(q) => quote = single_byte(*q, "quote")?,
                            CopyLegacyCsvOption::Escape(e) => {
                                escape = Some(single_byte(*e, "escape")?)
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let format = match format.as_str() {
            "text" => CopyFormat::Text {
                delimiter: delimiter.unwrap_or(b'\t'),
                null: null.unwrap_or_else(|| "\\N".to_string()),
            },
            "csv" => CopyFormat::Csv {
                delimiter: delimiter.unwrap_or(b','),
                quote,
                escape: escape.unwrap_or(quote),
                null: null.unwrap_or_default(),
                header,
            },
            other => {
                return refuse(
                    &first,
                    format!(
                        "COPY in {other} format cannot be encrypted or decrypted by warden; use text or csv"
                    ),
                );
            }
        };
        self.plan.copy = Some(Arc::new(CopyPlan {
            into_database: !to,
            format,
            fields,
        }));
        Ok(())
    }

    /// A table with encrypted columns whose name appears as a word in `text`.
    fn mentioned_encrypted_table(&self, text: &str) -> Option<&CatalogTable> {
        mentioned_encrypted_table(self.catalog, text)
    }

    fn table(&self, name: &ObjectName) -> Option<&CatalogTable> {
        let parts = object_parts(name);
        match parts.as_slice() {
            [table] => self.catalog.resolve(None, table),
            [.., schema, table] => self.catalog.resolve(Some(schema), table),
            [] => None,
        }
    }

    /// Refuses an unqualified table name that warden does not find through its search path
    /// but that names a table with encrypted columns in another schema: the session's own
    /// `search_path` may find that one, and warden would then not see its encrypted columns.
    fn check_unqualified(&self, name: &ObjectName) -> Outcome<()> {
        let parts = object_parts(name);
        if let [table] = parts.as_slice()
            && self.catalog.resolve(None, table).is_none()
            && let Some(other) = self
                .catalog
                .tables()
                .iter()
                .find(|t| t.name == *table && t.has_encrypted())
        {
            return Err(PlanRefusal {
                column: format!("{}.{}", other.schema, other.name),
                reason: format!(
                    "the unqualified name {table} is not in warden's search path, but {}.{table} has encrypted columns; qualify the name, or add {} to [upstream.service] search_path",
                    other.schema, other.schema
                ),
            });
        }
        Ok(())
    }

    fn table_columns(t: &CatalogTable) -> Vec<OutCol> {
        t.visible_columns()
            .map(|c| OutCol {
                name: Some(c.name.clone()),
                crypto: c.encrypted().cloned(),
            })
            .collect()
    }

    fn insert(&mut self, insert: &Insert) -> Outcome<Vec<OutCol>> {
        let table = match &insert.table {
            TableObject::TableName(name) => {
                self.check_unqualified(name)?;
                self.table(name).cloned()
            }
            _ => None,
        };
        let targets: Vec<Option<Arc<ColumnCrypto>>> = match &table {
            None => Vec::new(),
            Some(t) if insert.columns.is_empty() => t
                .visible_columns()
                .map(|c| c.encrypted().cloned())
                .collect(),
            Some(t) => insert
                .columns
                .iter()
                .map(|c| {
                    let name = object_parts(c).pop().unwrap_or_default();
                    t.column(&name).and_then(|c| c.encrypted().cloned())
                })
                .collect(),
        };
        let target_name = match &insert.table {
            TableObject::TableName(name) => object_parts(name).pop().unwrap_or_default(),
            _ => String::new(),
        };
        let alias = insert
            .table_alias
            .as_ref()
            .map(|a| ident_name(&a.alias))
            .unwrap_or(target_name.clone());
        let target_source = Source {
            name: alias,
            schema: None,
            columns: table.as_ref().map_or(SourceColumns::Unknown, |t| {
                SourceColumns::Known(Self::table_columns(t))
            }),
        };
        if let Some(source) = &insert.source {
            match source.body.as_ref() {
                SetExpr::Values(values) if source.with.is_none() => {
                    self.scopes.push(Vec::new());
                    let result = (|| {
                        for row in &values.rows {
                            for (i, e) in row.iter().enumerate() {
                                self.value_for(targets.get(i).cloned().flatten().as_ref(), e)?;
                            }
                        }
                        Ok(())
                    })();
                    self.scopes.pop();
                    result?;
                }
                _ => {
                    let outs = self.query(source)?;
                    if outs.len() != targets.len()
                        && let Some(t) = targets.iter().flatten().next()
                    {
                        return refuse(
                            t,
                            "INSERT … SELECT must select exactly the columns it fills (a * over a table warden does not track hides them); name the columns",
                        );
                    }
                    for (i, out) in outs.iter().enumerate() {
                        let target = targets.get(i).cloned().flatten();
                        match (&target, &out.crypto) {
                            (Some(t), Some(o)) if same_domain(t, o) => {}
                            (Some(t), _) => {
                                return refuse(
                                    t,
                                    "INSERT … SELECT can fill an encrypted column only from a column of the same key domain",
                                );
                            }
                            (None, Some(o)) => {
                                return refuse(
                                    o,
                                    format!(
                                        "INSERT … SELECT would copy its ciphertext into {target_name}, which is not encrypted with the same key domain"
                                    ),
                                );
                            }
                            (None, None) => {}
                        }
                    }
                }
            }
        }
        if !insert.assignments.is_empty() {
            // MySQL's `INSERT INTO t SET a = …, b = …`.
            self.scopes.push(vec![target_source.clone()]);
            let result = (|| {
                for a in &insert.assignments {
                    let target = self.assignment_target(table.as_ref(), &a.target)?;
                    self.value_for(target.as_ref(), &a.value)?;
                }
                Ok(())
            })();
            self.scopes.pop();
            result?;
        }
        match &insert.on {
            Some(OnInsert::OnConflict(conflict)) => {
                if let OnConflictAction::DoUpdate(update) = &conflict.action {
                    let mut excluded = target_source.clone();
                    excluded.name = "excluded".into();
                    self.scopes.push(vec![target_source.clone(), excluded]);
                    let result = (|| {
                        for a in &update.assignments {
                            let target = self.assignment_target(table.as_ref(), &a.target)?;
                            self.value_for(target.as_ref(), &a.value)?;
                        }
                        if let Some(selection) = &update.selection {
                            self.predicate(selection)?;
                        }
                        Ok(())
                    })();
                    self.scopes.pop();
                    result?;
                }
            }
            Some(OnInsert::DuplicateKeyUpdate(assignments)) => {
                self.scopes.push(vec![target_source.clone()]);
                let result = (|| {
                    for a in assignments {
                        let target = self.assignment_target(table.as_ref(), &a.target)?;
                        self.value_for(target.as_ref(), &a.value)?;
                    }
                    Ok(())
                })();
                self.scopes.pop();
                result?;
            }
            _ => {}
        }
        match &insert.returning {
            Some(items) => {
                self.scopes.push(vec![target_source]);
                let outs = self.select_items(items);
                self.scopes.pop();
                outs
            }
            None => Ok(Vec::new()),
        }
    }

    /// The protection of an assignment's target column. A tuple assignment
    /// (`SET (a, b) = …`) that includes an encrypted column is refused: its values cannot be
    /// paired with their columns reliably.
    fn assignment_target(
        &self,
        table: Option<&CatalogTable>,
        target: &AssignmentTarget,
    ) -> Outcome<Option<Arc<ColumnCrypto>>> {
        let column_of = |name: &ObjectName| {
            let column = object_parts(name).pop()?;
            table?.column(&column)?.encrypted().cloned()
        };
        match target {
            AssignmentTarget::ColumnName(name) => Ok(column_of(name)),
            AssignmentTarget::Tuple(names) => match names.iter().find_map(column_of) {
                Some(c) => refuse(
                    &c,
                    "a tuple assignment SET (…) = … cannot be encrypted; assign the column on its own",
                ),
                None => Ok(None),
            },
        }
    }

    fn update(&mut self, update: &Update) -> Outcome<Vec<OutCol>> {
        let table = match &update.table.relation {
            TableFactor::Table { name, .. } => self.table(name).cloned(),
            _ => None,
        };
        let mut sources = Vec::new();
        self.collect_sources(&update.table, &mut sources)?;
        if let Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) =
            &update.from
        {
            for item in from {
                self.collect_sources(item, &mut sources)?;
            }
        }
        self.scopes.push(sources);
        let result = (|| {
            self.join_constraints(&update.table)?;
            for a in &update.assignments {
                let target = self.assignment_target(table.as_ref(), &a.target)?;
                self.value_for(target.as_ref(), &a.value)?;
            }
            if let Some(selection) = &update.selection {
                self.predicate(selection)?;
            }
            match &update.returning {
                Some(items) => self.select_items(items),
                None => Ok(Vec::new()),
            }
        })();
        self.scopes.pop();
        result
    }

    fn delete(&mut self, delete: &Delete) -> Outcome<Vec<OutCol>> {
        let from = match &delete.from {
            FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
        };
        let mut sources = Vec::new();
        for item in from
            .iter()
            .chain(delete.using.as_deref().unwrap_or_default())
        {
            self.collect_sources(item, &mut sources)?;
        }
        self.scopes.push(sources);
        let result = (|| {
            for item in from {
                self.join_constraints(item)?;
            }
            if let Some(selection) = &delete.selection {
                self.predicate(selection)?;
            }
            match &delete.returning {
                Some(items) => self.select_items(items),
                None => Ok(Vec::new()),
            }
        })();
        self.scopes.pop();
        result
    }

    // ----- queries -----

    fn query(&mut self, query: &Query) -> Outcome<Vec<OutCol>> {
        let ctes_before = self.ctes.len();
        let result = (|| {
            if let Some(with) = &query.with {
                for cte in &with.cte_tables {
                    let mut outs = self.query(&cte.query)?;
                    for (out, alias) in outs.iter_mut().zip(&cte.alias.columns) {
                        out.name = Some(ident_name(&alias.name));
                    }
                    self.ctes.push((ident_name(&cte.alias.name), outs));
                }
            }
            self.set_expr(&query.body, query.order_by.as_ref())
        })();
        self.ctes.truncate(ctes_before);
        result
    }

    fn set_expr(&mut self, body: &SetExpr, order_by: Option<&OrderBy>) -> Outcome<Vec<OutCol>> {
        match body {
            SetExpr::Select(select) => self.select(select, order_by),
            SetExpr::Query(q) => {
                let outs = self.query(q)?;
                self.order_by_outputs(order_by, &outs)?;
                Ok(outs)
            }
            SetExpr::SetOperation { left, right, .. } => {
                let l = self.set_expr(left, None)?;
                let r = self.set_expr(right, None)?;
                if l.len() != r.len()
                    && let Some(c) = l.iter().chain(&r).find_map(|o| o.crypto.as_ref())
                {
                    return refuse(
                        c,
                        "a set operation whose sides warden cannot line up (a * over a table it does not track) combines it with unknown columns",
                    );
                }
                for (a, b) in l.iter().zip(&r) {
                    match (&a.crypto, &b.crypto) {
                        (Some(x), Some(y)) if same_domain(x, y) => {}
                        (Some(x), _) | (None, Some(x)) => {
                            return refuse(
                                x,
                                "a set operation (UNION, INTERSECT, EXCEPT) combines it with values of another column",
                            );
                        }
                        (None, None) => {}
                    }
                }
                self.order_by_outputs(order_by, &l)?;
                Ok(l)
            }
            SetExpr::Values(values) => {
                self.scopes.push(Vec::new());
                let result = (|| {
                    for row in &values.rows {
                        for e in row.iter() {
                            self.operand(e)?;
                        }
                    }
                    Ok(())
                })();
                self.scopes.pop();
                result?;
                let width = values.rows.first().map_or(0, |r| r.len());
                Ok(vec![
                    OutCol {
                        name: None,
                        crypto: None
                    };
                    width
                ])
            }
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                Ok(self
                    .statement(s)?
                    .into_iter()
                    .map(|crypto| OutCol { name: None, crypto })
                    .collect())
            }
            SetExpr::Table(t) => {
                let name = t.table_name.clone().unwrap_or_default();
                let table = match &t.schema_name {
                    Some(s) => self
                        .catalog
                        .resolve(Some(&s.to_lowercase()), &name.to_lowercase()),
                    None => self.catalog.resolve(None, &name.to_lowercase()),
                };
                Ok(table.map(Self::table_columns).unwrap_or_default())
            }
        }
    }

    fn select(&mut self, select: &Select, order_by: Option<&OrderBy>) -> Outcome<Vec<OutCol>> {
        let mut sources = Vec::new();
        for item in &select.from {
            self.collect_sources(item, &mut sources)?;
        }
        self.scopes.push(sources);
        let result = (|| {
            for item in &select.from {
                self.join_constraints(item)?;
            }
            if let Some(selection) = &select.selection {
                self.predicate(selection)?;
            }
            let outs = self.select_items(&select.projection)?;
            if let GroupByExpr::Expressions(exprs, _) = &select.group_by {
                for e in exprs {
                    match self.operand(e)? {
                        Operand::Column(c) if c.mode() == Mode::Randomized => {
                            return refuse(
                                &c,
                                "GROUP BY needs equal values to have equal ciphertexts; the column is randomized",
                            );
                        }
                        _ => {}
                    }
                }
            }
            if let Some(having) = &select.having {
                self.predicate(having)?;
            }
            if matches!(select.distinct, Some(Distinct::Distinct | Distinct::On(_)))
                && let Some(c) = outs
                    .iter()
                    .filter_map(|o| o.crypto.as_ref())
                    .find(|c| c.mode() == Mode::Randomized)
            {
                return refuse(
                    c,
                    "DISTINCT needs equal values to have equal ciphertexts; the column is randomized",
                );
            }
            if let Some(order_by) = order_by
                && let OrderByKind::Expressions(exprs) = &order_by.kind
            {
                for o in exprs {
                    let by_alias = output_named(&o.expr, &outs);
                    let crypto = match by_alias {
                        Some(c) => c,
                        None => match self.operand(&o.expr)? {
                            Operand::Column(c) => Some(c),
                            _ => None,
                        },
                    };
                    if let Some(c) = crypto {
                        Self::check_order(&c)?;
                    }
                }
            }
            Ok(outs)
        })();
        self.scopes.pop();
        result
    }

    fn check_order(c: &ColumnCrypto) -> Outcome<()> {
        if c.mode() != Mode::OrderPreserving {
            return refuse(
                c,
                format!(
                    "ORDER BY would sort by ciphertext; the column is {} (only order-preserving columns sort)",
                    mode_name(c.mode())
                ),
            );
        }
        Ok(())
    }

    fn order_by_outputs(&mut self, order_by: Option<&OrderBy>, outs: &[OutCol]) -> Outcome<()> {
        let Some(OrderBy {
            kind: OrderByKind::Expressions(exprs),
            ..
        }) = order_by
        else {
            return Ok(());
        };
        for o in exprs {
            let crypto = output_named(&o.expr, outs).flatten();
            if let Some(c) = crypto {
                Self::check_order(&c)?;
            }
        }
        Ok(())
    }

    fn select_items(&mut self, items: &[SelectItem]) -> Outcome<Vec<OutCol>> {
        let mut outs = Vec::new();
        for item in items {
            match item {
                SelectItem::UnnamedExpr(e) => {
                    let name = match e {
                        Expr::Identifier(i) => Some(ident_name(i)),
                        Expr::CompoundIdentifier(parts) => parts.last().map(ident_name),
                        Expr::Function(f) => Some(function_name(f)),
                        _ => None,
                    };
                    outs.push(OutCol {
                        name,
                        crypto: self.output(e)?,
                    });
                }
                SelectItem::ExprWithAlias { expr, alias } => outs.push(OutCol {
                    name: Some(ident_name(alias)),
                    crypto: self.output(expr)?,
                }),
                SelectItem::ExprWithAliases { expr, aliases } => outs.push(OutCol {
                    name: aliases.first().map(ident_name),
                    crypto: self.output(expr)?,
                }),
                SelectItem::Wildcard(_) => {
                    let scope = self.scopes.last().cloned().unwrap_or_default();
                    for source in scope {
                        match source.columns {
                            SourceColumns::Known(cols) => outs.extend(cols),
                            // Positions after an unknown relation's columns are unknown; its
                            // columns are not protected, and the database's row description
                            // gives origins for the rest.
                            SourceColumns::Unknown => {}
                        }
                    }
                }
                SelectItem::QualifiedWildcard(kind, _) => {
                    if let sqlparser::ast::SelectItemQualifiedWildcardKind::ObjectName(name) = kind
                    {
                        let parts = object_parts(name);
                        if let Some(source) = self.find_source(&parts)
                            && let SourceColumns::Known(cols) = source.columns
                        {
                            outs.extend(cols);
                        }
                    }
                }
            }
        }
        Ok(outs)
    }

    /// A result column: the protected column it returns, if any.
    fn output(&mut self, e: &Expr) -> Outcome<Option<Arc<ColumnCrypto>>> {
        if let Expr::Nested(inner) = e {
            return self.output(inner);
        }
        if let Expr::Function(f) = e {
            let name = function_name(f);
            let (args, _distinct) = function_args(f);
            if let [arg] = args.as_slice()
                && let Operand::Column(c) = self.operand(arg)?
            {
                return match name.as_str() {
                    "count" => Ok(None),
                    "min" | "max" if c.mode() == Mode::OrderPreserving => {
                        // MySQL compares VARBINARY itself; PostgreSQL has no min(bytea).
                        if self.dialect == Dialect::PostgreSql {
                            self.extremum(f, name == "max", &c)?;
                        }
                        Ok(Some(c))
                    }
                    "min" | "max" => refuse(
                        &c,
                        format!(
                            "{name}() needs order-preserving encryption; the column is {}",
                            mode_name(c.mode())
                        ),
                    ),
                    _ => refuse(&c, format!("{name}() cannot be computed on ciphertext")),
                };
            }
        }
        match self.operand(e)? {
            Operand::Column(c) => Ok(Some(c)),
            _ => Ok(None),
        }
    }

    /// The parts of a function call `function_args` leaves out: `alias.*` arguments (whole
    /// rows) and a subquery argument (`ARRAY(SELECT …)`), which must not return ciphertext.
    fn function_extras(&mut self, f: &Function) -> Outcome<()> {
        match &f.args {
            FunctionArguments::List(list) => {
                for a in &list.args {
                    let arg = match a {
                        FunctionArg::Unnamed(a)
                        | FunctionArg::Named { arg: a, .. }
                        | FunctionArg::ExprNamed { arg: a, .. } => a,
                    };
                    if let FunctionArgExpr::QualifiedWildcard(name) = arg
                        && let Some(last) = object_parts(name).pop()
                    {
                        self.whole_row(&last)?;
                    }
                }
                Ok(())
            }
            FunctionArguments::Subquery(q) => {
                if let Some(c) = self.query(q)?.into_iter().find_map(|o| o.crypto) {
                    return refuse(
                        &c,
                        format!(
                            "{}(SELECT …) would return its ciphertext inside another value",
                            function_name(f)
                        ),
                    );
                }
                Ok(())
            }
            FunctionArguments::None => Ok(()),
        }
    }

    /// Plans the rewrite of `min(col)` / `max(col)` (see [`crate::plan::ExtremumSlot`]).
    fn extremum(&mut self, f: &Function, max: bool, c: &ColumnCrypto) -> Outcome<()> {
        let shape = || PlanRefusal {
            column: c.column.display_name(),
            reason: "warden could not rewrite this min()/max() call".into(),
        };
        if f.filter.is_some() || f.over.is_some() || !f.within_group.is_empty() {
            return refuse(
                c,
                "min()/max() with FILTER, OVER or WITHIN GROUP is not supported on ciphertext",
            );
        }
        let ObjectNamePart::Identifier(ident) = f.name.0.last().ok_or_else(shape)? else {
            return Err(shape());
        };
        let start = (ident.span.start.line, ident.span.start.column);
        let name_token = *self.by_location.get(&start).ok_or_else(shape)?;
        let first = if f.name.0.len() > 1 {
            // `pg_catalog.min(…)`: replace from the schema.
            let ObjectNamePart::Identifier(schema) = &f.name.0[0] else {
                return Err(shape());
            };
            *self
                .by_location
                .get(&(schema.span.start.line, schema.span.start.column))
                .ok_or_else(shape)?
        } else {
            name_token
        };
        let open = self.skip_ws(name_token + 1, true).ok_or_else(shape)?;
        if self.toks[open].token != Token::LParen {
            return Err(shape());
        }
        let mut depth = 0usize;
        let mut close = open;
        for (i, t) in self.toks.iter().enumerate().skip(open) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        close = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        if close == open {
            return Err(shape());
        }
        self.plan.extrema.push(crate::plan::ExtremumSlot {
            tokens: first..close + 1,
            arg: open + 1..close,
            max,
        });
        Ok(())
    }

    // ----- FROM -----

    fn collect_sources(&mut self, item: &TableWithJoins, out: &mut Vec<Source>) -> Outcome<()> {
        self.factor_sources(&item.relation, out)?;
        for join in &item.joins {
            self.factor_sources(&join.relation, out)?;
        }
        Ok(())
    }

    fn factor_sources(&mut self, factor: &TableFactor, out: &mut Vec<Source>) -> Outcome<()> {
        match factor {
            TableFactor::Table { name, alias, .. } => {
                let parts = object_parts(name);
                let is_cte = parts.len() == 1 && self.ctes.iter().any(|(n, _)| *n == parts[0]);
                if !is_cte {
                    self.check_unqualified(name)?;
                }
                let cte = if parts.len() == 1 {
                    self.ctes
                        .iter()
                        .rev()
                        .find(|(n, _)| *n == parts[0])
                        .map(|(_, c)| c.clone())
                } else {
                    None
                };
                let columns = match cte {
                    Some(cols) => SourceColumns::Known(cols),
                    None => self.table(name).map_or(SourceColumns::Unknown, |t| {
                        SourceColumns::Known(Self::table_columns(t))
                    }),
                };
                let mut columns = columns;
                if let (Some(a), SourceColumns::Known(cols)) = (alias, &mut columns) {
                    for (c, renamed) in cols.iter_mut().zip(&a.columns) {
                        c.name = Some(ident_name(&renamed.name));
                    }
                }
                out.push(Source {
                    name: alias
                        .as_ref()
                        .map(|a| ident_name(&a.name))
                        .unwrap_or_else(|| parts.last().cloned().unwrap_or_default()),
                    schema: if alias.is_none() && parts.len() >= 2 {
                        Some(parts[parts.len() - 2].clone())
                    } else {
                        None
                    },
                    columns,
                });
            }
            TableFactor::Derived {
                subquery, alias, ..
            } => {
                let mut cols = self.query(subquery)?;
                if let Some(a) = alias {
                    for (c, renamed) in cols.iter_mut().zip(&a.columns) {
                        c.name = Some(ident_name(&renamed.name));
                    }
                }
                out.push(Source {
                    name: alias
                        .as_ref()
                        .map(|a| ident_name(&a.name))
                        .unwrap_or_default(),
                    schema: None,
                    columns: SourceColumns::Known(cols),
                });
            }
            TableFactor::NestedJoin {
                table_with_joins, ..
            } => {
                self.collect_sources(table_with_joins, out)?;
                self.scopes.push(out.clone());
                let r = self.join_constraints(table_with_joins);
                self.scopes.pop();
                r?;
            }
            _ => out.push(Source {
                name: String::new(),
                schema: None,
                columns: SourceColumns::Unknown,
            }),
        }
        Ok(())
    }

    fn join_constraints(&mut self, item: &TableWithJoins) -> Outcome<()> {
        for join in &item.joins {
            let constraint = match &join.join_operator {
                JoinOperator::Join(c)
                | JoinOperator::Inner(c)
                | JoinOperator::Left(c)
                | JoinOperator::LeftOuter(c)
                | JoinOperator::Right(c)
                | JoinOperator::RightOuter(c)
                | JoinOperator::FullOuter(c)
                | JoinOperator::CrossJoin(c)
                | JoinOperator::Semi(c)
                | JoinOperator::LeftSemi(c)
                | JoinOperator::RightSemi(c)
                | JoinOperator::Anti(c)
                | JoinOperator::LeftAnti(c)
                | JoinOperator::RightAnti(c)
                | JoinOperator::StraightJoin(c) => Some(c),
                JoinOperator::AsOf { constraint, .. } => Some(constraint),
                _ => None,
            };
            match constraint {
                Some(JoinConstraint::On(e)) => self.predicate(e)?,
                Some(JoinConstraint::Using(names)) => {
                    for name in names {
                        let column = object_parts(name).pop().unwrap_or_default();
                        let found: Vec<Option<Arc<ColumnCrypto>>> = self
                            .scopes
                            .last()
                            .into_iter()
                            .flatten()
                            .filter_map(|s| match &s.columns {
                                SourceColumns::Known(cols) => cols
                                    .iter()
                                    .find(|c| c.name.as_deref() == Some(column.as_str()))
                                    .map(|c| c.crypto.clone()),
                                SourceColumns::Unknown => None,
                            })
                            .collect();
                        if let Some(Some(first)) = found.iter().find(|c| c.is_some())
                            && (first.mode() == Mode::Randomized
                                || found
                                    .iter()
                                    .any(|c| c.as_ref().is_none_or(|c| !same_domain(c, first))))
                        {
                            return refuse(
                                first,
                                "JOIN … USING needs both columns deterministic or order-preserving in the same key domain",
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    // ----- names -----

    fn find_source(&self, qualifier: &[String]) -> Option<Source> {
        let (schema, name) = match qualifier {
            [name] => (None, name),
            [.., schema, name] => (Some(schema), name),
            [] => return None,
        };
        for scope in self.scopes.iter().rev() {
            if let Some(s) = scope
                .iter()
                .find(|s| s.name == *name && schema.is_none_or(|sc| s.schema.as_ref() == Some(sc)))
            {
                return Some(s.clone());
            }
        }
        None
    }

    /// Refuses a whole-row reference (`SELECT u FROM users u`, `row_to_json(u)`, `u.*` as a
    /// function argument) to a relation with encrypted columns: the row would carry their
    /// ciphertext inside a record, JSON or array value warden cannot open.
    fn whole_row(&self, name: &str) -> Outcome<()> {
        if self.scopes.iter().flatten().any(|s| s.name == name)
            && let Some(c) = self
                .find_source(&[name.to_string()])
                .and_then(|s| match s.columns {
                    SourceColumns::Known(cols) => cols.into_iter().find_map(|c| c.crypto),
                    SourceColumns::Unknown => None,
                })
        {
            return refuse(
                &c,
                format!(
                    "a whole-row reference to {name} would return its ciphertext inside a composite value; select the columns"
                ),
            );
        }
        Ok(())
    }

    /// The protected column a column reference names, if it holds ciphertext.
    fn resolve_column(&self, parts: &[String]) -> Option<Arc<ColumnCrypto>> {
        let (qualifier, column) = parts.split_at(parts.len().checked_sub(1)?);
        let column = &column[0];
        if qualifier.is_empty() {
            for scope in self.scopes.iter().rev() {
                for source in scope {
                    if let SourceColumns::Known(cols) = &source.columns
                        && let Some(c) = cols
                            .iter()
                            .find(|c| c.name.as_deref().is_some_and(|n| same_column(n, column)))
                    {
                        return c.crypto.clone();
                    }
                }
            }
            return None;
        }
        match self.find_source(qualifier)?.columns {
            SourceColumns::Known(cols) => cols
                .iter()
                .find(|c| c.name.as_deref().is_some_and(|n| same_column(n, column)))
                .and_then(|c| c.crypto.clone()),
            SourceColumns::Unknown => None,
        }
    }

    // ----- expressions -----

    fn literal_operand(&self, value_start: (u64, u64), negate_from: Option<usize>) -> Operand {
        let Some(&literal) = self.by_location.get(&value_start) else {
            return Operand::Plain;
        };
        let start = negate_from.unwrap_or(literal);
        Operand::Literal {
            tokens: start..literal + 1,
            literal,
            negate: negate_from.is_some(),
        }
    }

    /// Skips whitespace tokens from `i` in direction `step`.
    fn skip_ws(&self, mut i: usize, forward: bool) -> Option<usize> {
        loop {
            if !matches!(self.toks.get(i)?.token, Token::Whitespace(_)) {
                return Some(i);
            }
            i = if forward { i + 1 } else { i.checked_sub(1)? };
        }
    }

    /// The token range of `'…'::type`: from the literal through the type name.
    fn extend_over_cast(&self, literal: usize) -> Option<usize> {
        let colons = self.skip_ws(literal + 1, true)?;
        if self.toks[colons].token != Token::DoubleColon {
            return None;
        }
        let mut end = colons;
        let mut i = self.skip_ws(colons + 1, true)?;
        loop {
            let t = &self.toks.get(i)?.token;
            if tokens::is_type_word(t) || *t == Token::Period {
                end = i;
            } else if *t == Token::LParen {
                // `(12, 2)`
                let mut j = i;
                while self.toks.get(j)?.token != Token::RParen {
                    j += 1;
                }
                end = j;
                i = j;
            } else {
                break;
            }
            match self.skip_ws(i + 1, true) {
                Some(n) => i = n,
                None => break,
            }
        }
        Some(end + 1)
    }

    /// An expression in a position where it is an operand of a comparison or a value.
    fn operand(&mut self, e: &Expr) -> Outcome<Operand> {
        match e {
            Expr::Nested(inner) => self.operand(inner),
            Expr::Identifier(i) => {
                if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") {
                    return Ok(Operand::Default);
                }
                let name = ident_name(i);
                match self.resolve_column(std::slice::from_ref(&name)) {
                    Some(c) => Ok(Operand::Column(c)),
                    None => {
                        self.whole_row(&name)?;
                        Ok(Operand::Plain)
                    }
                }
            }
            Expr::CompoundIdentifier(parts) => {
                let parts: Vec<String> = parts.iter().map(ident_name).collect();
                Ok(self
                    .resolve_column(&parts)
                    .map_or(Operand::Plain, Operand::Column))
            }
            Expr::Value(v) => Ok(match &v.value {
                Value::Placeholder(p) if p == "?" => self
                    .by_location
                    .get(&(v.span.start.line, v.span.start.column))
                    .and_then(|i| self.placeholders.get(i))
                    .map_or(Operand::Plain, |&n| Operand::Param(n)),
                Value::Placeholder(p) => match p.strip_prefix('$').and_then(|n| n.parse().ok()) {
                    Some(n) => Operand::Param(n),
                    None => Operand::Plain,
                },
                Value::Null => Operand::Null,
                Value::Boolean(_) => Operand::Plain,
                _ => {
                    let start = (v.span.start.line, v.span.start.column);
                    self.literal_operand(start, None)
                }
            }),
            Expr::UnaryOp {
                op: UnaryOperator::Minus | UnaryOperator::Plus,
                expr,
            } if matches!(expr.as_ref(), Expr::Value(v) if matches!(v.value, Value::Number(..))) => {
                let Expr::Value(v) = expr.as_ref() else {
                    unreachable!()
                };
                let start = (v.span.start.line, v.span.start.column);
                let Some(&literal) = self.by_location.get(&start) else {
                    return Ok(Operand::Plain);
                };
                // The sign token precedes the number (possibly with space between).
                let mut sign = literal.checked_sub(1);
                while let Some(s) = sign {
                    if matches!(self.toks[s].token, Token::Whitespace(_)) {
                        sign = s.checked_sub(1);
                    } else {
                        break;
                    }
                }
                let negative = matches!(
                    e,
                    Expr::UnaryOp {
                        op: UnaryOperator::Minus,
                        ..
                    }
                );
                match sign {
                    Some(s) if negative && self.toks[s].token == Token::Minus => {
                        Ok(self.literal_operand(start, Some(s)))
                    }
                    Some(s) if !negative && self.toks[s].token == Token::Plus => {
                        let mut op = self.literal_operand(start, None);
                        if let Operand::Literal { tokens, .. } = &mut op {
                            tokens.start = s;
                        }
                        Ok(op)
                    }
                    _ => Ok(Operand::Plain),
                }
            }
            Expr::TypedString(ts) => {
                let start = (ts.value.span.start.line, ts.value.span.start.column);
                let Some(&literal) = self.by_location.get(&start) else {
                    return Ok(Operand::Plain);
                };
                // Walk back over the type words (`timestamp without time zone '…'`).
                let mut first = literal;
                let mut i = literal.checked_sub(1);
                while let Some(j) = i {
                    let t = &self.toks[j].token;
                    if matches!(t, Token::Whitespace(_)) {
                        i = j.checked_sub(1);
                    } else if tokens::is_type_word(t) {
                        first = j;
                        i = j.checked_sub(1);
                    } else {
                        break;
                    }
                }
                Ok(Operand::Literal {
                    tokens: first..literal + 1,
                    literal,
                    negate: false,
                })
            }
            Expr::Cast {
                kind: CastKind::DoubleColon,
                expr,
                ..
            } => match self.operand(expr)? {
                Operand::Literal {
                    tokens,
                    literal,
                    negate,
                } => match self.extend_over_cast(tokens.end - 1) {
                    Some(end) => Ok(Operand::Literal {
                        tokens: tokens.start..end,
                        literal,
                        negate,
                    }),
                    None => Ok(Operand::Plain),
                },
                Operand::Column(c) => refuse(&c, "a cast cannot be applied to ciphertext"),
                Operand::Null => Ok(Operand::Null),
                Operand::Param(_) => {
                    self.plain(e)?;
                    Ok(Operand::Plain)
                }
                _ => Ok(Operand::Plain),
            },
            _ => {
                self.plain(e)?;
                Ok(Operand::Plain)
            }
        }
    }

    /// Ties a literal or parameter to the column whose value it is.
    fn bind(&mut self, operand: &Operand, column: &Arc<ColumnCrypto>) -> Outcome<bool> {
        match operand {
            Operand::Literal {
                tokens,
                literal,
                negate,
            } => {
                self.plan.literals.push(LiteralSlot {
                    tokens: tokens.clone(),
                    literal: *literal,
                    negate: *negate,
                    column: Arc::clone(column),
                });
                Ok(true)
            }
            Operand::Param(n) => {
                if let Some(previous) = self.plan.params.get(n)
                    && !same_domain(previous, column)
                {
                    return refuse(
                        column,
                        format!(
                            "parameter ${n} is also used for {}, which has another key domain",
                            previous.column.display_name()
                        ),
                    );
                }
                self.plan.params.insert(*n, Arc::clone(column));
                Ok(true)
            }
            Operand::Null => Ok(true),
            _ => Ok(false),
        }
    }

    /// Ties each of `values` (an IN list, BETWEEN bounds) to `column`: each must be a literal,
    /// a parameter, NULL or a column of the same key domain; `otherwise` says why not.
    fn bind_all<'e>(
        &mut self,
        column: &Arc<ColumnCrypto>,
        values: impl IntoIterator<Item = &'e Expr>,
        otherwise: &str,
    ) -> Outcome<()> {
        for value in values {
            match self.operand(value)? {
                Operand::Column(d) if same_domain(column, &d) => {}
                o => {
                    if !self.bind(&o, column)? {
                        return refuse(column, otherwise);
                    }
                }
            }
        }
        Ok(())
    }

    /// A value written into a column (`target` is its protection, if it holds ciphertext).
    fn value_for(&mut self, target: Option<&Arc<ColumnCrypto>>, e: &Expr) -> Outcome<()> {
        let operand = self.operand(e)?;
        match (target, &operand) {
            (Some(_), Operand::Default) => Ok(()),
            (Some(t), Operand::Column(c)) if same_domain(t, c) => Ok(()),
            (Some(t), Operand::Column(c)) => refuse(
                t,
                format!(
                    "it cannot take the value of {}, which has another key domain",
                    c.column.display_name()
                ),
            ),
            (Some(t), _) => {
                if self.bind(&operand, t)? {
                    Ok(())
                } else {
                    refuse(
                        t,
                        "the value written must be a literal, a parameter, NULL or DEFAULT; warden cannot encrypt a computed value",
                    )
                }
            }
            (None, Operand::Column(c)) => refuse(
                c,
                "its ciphertext cannot be copied into a column that is not encrypted with the same key domain",
            ),
            (None, _) => Ok(()),
        }
    }

    /// A comparison `left op right` where one side may be a protected column.
    fn comparison(&mut self, left: &Expr, op: &BinaryOperator, right: &Expr) -> Outcome<()> {
        let l = self.operand(left)?;
        let r = self.operand(right)?;
        let (column, other) = match (&l, &r) {
            (Operand::Column(c), o) | (o, Operand::Column(c)) => (Arc::clone(c), o.clone()),
            _ => return Ok(()),
        };
        match column.mode() {
            Mode::Randomized => {
                return refuse(
                    &column,
                    format!(
                        "the comparison {op} cannot run on randomized ciphertext; declare the column deterministic (equality) or ope (ranges)"
                    ),
                );
            }
            Mode::Deterministic if !is_equality(op) => {
                return refuse(
                    &column,
                    format!(
                        "the comparison {op} needs order-preserving encryption; the column is deterministic (equality only)"
                    ),
                );
            }
            _ => {}
        }
        match other {
            Operand::Column(c) if same_domain(&c, &column) => Ok(()),
            Operand::Column(c) => refuse(
                &column,
                format!(
                    "it cannot be compared with {}, which has another key domain",
                    c.column.display_name()
                ),
            ),
            o => {
                if self.bind(&o, &column)? {
                    Ok(())
                } else {
                    refuse(
                        &column,
                        "it can be compared only with a literal, a parameter or a column of the same key domain",
                    )
                }
            }
        }
    }

    fn predicate(&mut self, e: &Expr) -> Outcome<()> {
        match e {
            Expr::Nested(inner) => self.predicate(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And | BinaryOperator::Or,
                right,
            } => {
                self.predicate(left)?;
                self.predicate(right)
            }
            Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            } => self.predicate(expr),
            Expr::BinaryOp { left, op, right } if is_comparison(op) => {
                self.comparison(left, op, right)
            }
            Expr::IsDistinctFrom(a, b) | Expr::IsNotDistinctFrom(a, b) => {
                self.comparison(a, &BinaryOperator::NotEq, b)
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                self.operand(inner)?;
                Ok(())
            }
            Expr::InList { expr, list, .. } => {
                let subject = self.operand(expr)?;
                let Operand::Column(c) = subject else {
                    for item in list {
                        if let Operand::Column(c) = self.operand(item)? {
                            return refuse(&c, "it can appear in IN (…) only as the tested value");
                        }
                    }
                    return Ok(());
                };
                if c.mode() == Mode::Randomized {
                    return refuse(
                        &c,
                        "IN (…) needs equal values to have equal ciphertexts; the column is randomized",
                    );
                }
                self.bind_all(
                    &c,
                    list,
                    "IN (…) lists for it must hold literals or parameters",
                )
            }
            Expr::InSubquery { expr, subquery, .. } => {
                let subject = self.operand(expr)?;
                let outs = self.query(subquery)?;
                let inner = outs.first().and_then(|o| o.crypto.clone());
                match (subject, inner) {
                    (Operand::Column(a), Some(b))
                        if same_domain(&a, &b) && a.mode() != Mode::Randomized =>
                    {
                        Ok(())
                    }
                    (Operand::Column(a), _) => refuse(
                        &a,
                        "IN (SELECT …) must select a deterministic or order-preserving column of the same key domain",
                    ),
                    (_, Some(b)) => refuse(
                        &b,
                        "IN (SELECT …) compares its ciphertext with a value that is not encrypted in the same key domain",
                    ),
                    _ => Ok(()),
                }
            }
            Expr::Between {
                expr, low, high, ..
            } => {
                let subject = self.operand(expr)?;
                let Operand::Column(c) = subject else {
                    for bound in [low, high] {
                        if let Operand::Column(c) = self.operand(bound)? {
                            return refuse(&c, "it cannot be a bound of BETWEEN");
                        }
                    }
                    return Ok(());
                };
                if c.mode() != Mode::OrderPreserving {
                    return refuse(
                        &c,
                        format!(
                            "BETWEEN needs order-preserving encryption; the column is {}",
                            mode_name(c.mode())
                        ),
                    );
                }
                self.bind_all(
                    &c,
                    [low.as_ref(), high.as_ref()],
                    "BETWEEN bounds for it must be literals or parameters",
                )
            }
            Expr::Exists { subquery, .. } => {
                self.query(subquery)?;
                Ok(())
            }
            other => {
                self.operand(other)?;
                Ok(())
            }
        }
    }

    /// Checks an expression that is evaluated by the database as it stands: no protected
    /// column may appear in it except where the database compares or returns ciphertext as is.
    fn plain(&mut self, e: &Expr) -> Outcome<()> {
        match e {
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
                if let Operand::Column(c) = self.operand(e)? {
                    return refuse(&c, "it cannot be used in this expression on ciphertext");
                }
                Ok(())
            }
            Expr::Value(_) | Expr::TypedString(_) => Ok(()),
            Expr::Nested(inner) => self.plain(inner),
            Expr::BinaryOp { left, op, right } => {
                if is_comparison(op) || matches!(op, BinaryOperator::And | BinaryOperator::Or) {
                    return self.predicate(e);
                }
                for side in [left, right] {
                    if let Operand::Column(c) = self.operand(side)? {
                        return refuse(
                            &c,
                            format!("the operator {op} cannot be computed on ciphertext"),
                        );
                    }
                }
                Ok(())
            }
            Expr::UnaryOp { expr, op } => {
                if let Operand::Column(c) = self.operand(expr)? {
                    return refuse(
                        &c,
                        format!("the operator {op} cannot be computed on ciphertext"),
                    );
                }
                Ok(())
            }
            Expr::Like { expr, pattern, .. }
            | Expr::ILike { expr, pattern, .. }
            | Expr::SimilarTo { expr, pattern, .. }
            | Expr::RLike { expr, pattern, .. } => {
                for side in [expr, pattern] {
                    if let Operand::Column(c) = self.operand(side)? {
                        return refuse(
                            &c,
                            "pattern matching (LIKE, ILIKE, SIMILAR TO, regular expressions) cannot run on ciphertext",
                        );
                    }
                }
                Ok(())
            }
            Expr::Cast { expr, .. } => {
                if let Operand::Column(c) = self.operand(expr)? {
                    return refuse(&c, "a cast cannot be applied to ciphertext");
                }
                Ok(())
            }
            Expr::Function(f) => {
                let name = function_name(f);
                self.function_extras(f)?;
                let (args, _) = function_args(f);
                for arg in args {
                    if let Operand::Column(c) = self.operand(arg)? {
                        if name == "count" {
                            continue;
                        }
                        if matches!(name.as_str(), "min" | "max") {
                            return refuse(
                                &c,
                                format!(
                                    "{name}() of it can only be selected, not used in an expression"
                                ),
                            );
                        }
                        return refuse(&c, format!("{name}() cannot be computed on ciphertext"));
                    }
                }
                Ok(())
            }
            Expr::Subquery(q) => {
                let outs = self.query(q)?;
                if let Some(c) = outs.iter().find_map(|o| o.crypto.as_ref()) {
                    return refuse(
                        c,
                        "a scalar subquery returning it can only be selected as a column",
                    );
                }
                Ok(())
            }
            Expr::Exists { .. }
            | Expr::InSubquery { .. }
            | Expr::InList { .. }
            | Expr::Between { .. }
            | Expr::IsNull(_)
            | Expr::IsNotNull(_)
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..) => self.predicate(e),
            other => {
                // Any other construct (CASE, arrays, JSON operators, …): refused if a protected
                // column appears anywhere inside it.
                let mut subqueries: Vec<Query> = Vec::new();
                let _ = sqlparser::ast::visit_expressions(other, |inner| {
                    match inner {
                        Expr::Subquery(q)
                        | Expr::Exists { subquery: q, .. }
                        | Expr::InSubquery { subquery: q, .. } => subqueries.push((**q).clone()),
                        _ => {}
                    }
                    std::ops::ControlFlow::<()>::Continue(())
                });
                for q in &subqueries {
                    if let Some(c) = self.query(q)?.into_iter().find_map(|o| o.crypto) {
                        return refuse(
                            &c,
                            "a subquery returning it is used inside an expression that cannot be evaluated on ciphertext",
                        );
                    }
                }
                let mut found = None;
                let _ = sqlparser::ast::visit_expressions(other, |inner| {
                    let parts: Option<Vec<String>> = match inner {
                        Expr::Identifier(i) => Some(vec![ident_name(i)]),
                        Expr::CompoundIdentifier(p) => Some(p.iter().map(ident_name).collect()),
                        _ => None,
                    };
                    if let Some(parts) = parts
                        && let Some(c) = self.resolve_column(&parts)
                    {
                        found = Some(c);
                        return std::ops::ControlFlow::Break(());
                    }
                    std::ops::ControlFlow::Continue(())
                });
                if let Some(c) = found {
                    return refuse(
                        &c,
                        "this expression cannot be evaluated on ciphertext (CASE, arrays, and other computed forms need plaintext)",
                    );
                }
                Ok(())
            }
        }
    }
}
