//! The AST walk that finds which tables and columns a statement reads and writes.
//!
//! The statement level is handled by hand, because only it says what is a *target*: the table
//! after `INSERT INTO`, `UPDATE`, `DELETE FROM`, `MERGE INTO`, `COPY … FROM`, DDL. Everything below
//! it (queries, subqueries, joins, expressions of every kind) is walked with sqlparser's
//! [`Visitor`], so no expression variant can hide a column or a subquery from the walk.
//!
//! Name resolution follows SQL's scoping with a stack of scopes: each query pushes its CTE names,
//! each SELECT pushes its FROM items with their aliases, and a column reference is resolved
//! against the innermost scope that can name it:
//!
//! - `a.col`: `a` is an alias or table name in some enclosing scope; a derived table, CTE or table
//!   function is not a table, and its own body already recorded the real columns it reads;
//! - `col` with exactly one FROM item in the innermost scope: that item (the usual
//!   approximation, since the catalog is unknown); with several, the column is recorded without a
//!   table; inside ORDER BY / GROUP BY, an output alias of the SELECT is not a column;
//! - `t.*`, `*`, `count(t.*)`, and a bare table alias used as a value (`row_to_json(u)`) are
//!   wildcards on the table: every column leaves the database.
//!
//! CTE names are never reported as tables. Every table whose column is read through a resolved
//! reference also counts as read (so `UPDATE t SET a = 1 WHERE id = 2` reads and writes `t`).
//!
//! Literal values are never read here (no `pre_visit_value`, no access to `Value` content), and
//! names are taken only through `names.rs`, which refuses literal-derived identifiers: this keeps
//! the facts independent of literals, as the cache requires.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{
    AssignmentTarget, CommentObject, CopySource, CopyTarget, Delete, Expr, FromTable, Function,
    FunctionArg, FunctionArgExpr, FunctionArguments, GrantObjects, GroupByExpr, Ident, Insert,
    JoinConstraint, JoinOperator, Merge, MergeAction, MergeInsertKind, MergeUpdateKind, ObjectName,
    ObjectType, OnConflictAction, OnInsert, OrderBy, Query, Select, SelectItem,
    SelectItemQualifiedWildcardKind, SetExpr, Statement, TableAlias, TableFactor, TableObject,
    TableWithJoins, Update, UpdateTableFromKind, Visit, Visitor,
};

use crate::dialect::Dialect;
use crate::facts::{ColumnName, ColumnRef, CopyEndpoint};
use crate::kind::StatementKind;
use crate::names::{self, TableName};

/// What the walk found in one statement.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    pub tables_read: BTreeSet<TableName>,
    pub tables_written: BTreeSet<TableName>,
    pub columns_read: BTreeSet<ColumnRef>,
    pub columns_written: BTreeSet<ColumnRef>,
    pub has_where: bool,
    pub select_into: bool,
    pub copy_endpoint: Option<CopyEndpoint>,
    pub opaque_names: bool,
}

/// Walk one parsed statement.
pub(crate) fn walk(statement: &Statement, dialect: Dialect) -> Walked {
    let mut walker = Walker {
        dialect,
        found: Walked::default(),
        scopes: Vec::new(),
        order_or_group: 0,
        suppressed: 0,
        statement_frames: Vec::new(),
        generic: None,
        pending_factor_names: 0,
        free_identifiers_are_columns: true,
        skipped_exprs: Vec::new(),
    };
    walker.statement(statement, true);
    walker.found
}

/// What a name in a FROM clause stands for.
#[derive(Debug, Clone)]
enum Target {
    /// A base table or view.
    Table(TableName),
    /// A subquery, CTE, table function or pseudo-table (`excluded`): not a table; its columns come
    /// from whatever its own body reads.
    Derived,
}

/// One FROM item visible in a scope.
#[derive(Debug, Clone)]
struct Source {
    /// The alias, if one was written (and was a real identifier).
    alias: Option<String>,
    target: Target,
}

impl Source {
    fn answers_to(&self, qualifier: &[String]) -> bool {
        match (&self.alias, &self.target) {
            (Some(alias), _) => qualifier.len() == 1 && qualifier.first() == Some(alias),
            (None, Target::Table(table)) => {
                let parts = table.parts();
                qualifier.len() <= parts.len()
                    && parts.get(parts.len() - qualifier.len()..) == Some(qualifier)
            }
            (None, Target::Derived) => false,
        }
    }
}

#[derive(Debug, Default)]
struct Scope {
    sources: Vec<Source>,
    /// CTE names defined by this query level.
    ctes: Vec<String>,
    /// Output aliases of the SELECT list, which ORDER BY / GROUP BY may name.
    output_aliases: Vec<String>,
    /// ORDER BY of a UNION and the like: unqualified names are output columns.
    outputs_only: bool,
}

/// Whether relations met outside FROM clauses are read or written (generic statement walk).
#[derive(Debug, Clone, Copy)]
enum RelationRole {
    Read,
    Written,
}

struct Walker {
    dialect: Dialect,
    found: Walked,
    scopes: Vec<Scope>,
    /// Inside a query-level ORDER BY or a GROUP BY.
    order_or_group: usize,
    /// Inside a nested statement that was already walked structurally: ignore the generic descent.
    suppressed: usize,
    /// For each statement the visitor entered: whether entering it raised `suppressed`.
    statement_frames: Vec<bool>,
    /// Set while walking a statement generically: the root's address and the role of relations.
    generic: Option<(usize, RelationRole)>,
    /// Table factors just entered whose name the visitor will report next as a relation.
    pending_factor_names: usize,
    /// Whether identifiers outside any FROM scope are column references (not in `SET x = y`).
    free_identifiers_are_columns: bool,
    /// Expressions that are names of other things (`SELECT … INTO target`).
    skipped_exprs: Vec<usize>,
}

fn address<T>(value: &T) -> usize {
    value as *const T as usize
}

impl Walker {
    // ----- statements -------------------------------------------------------------------------

    fn statement(&mut self, statement: &Statement, top_level: bool) {
        match statement {
            Statement::Query(query) => {
                if top_level {
                    self.found.has_where = match query.body.as_ref() {
                        SetExpr::Select(select) => select.selection.is_some(),
                        SetExpr::Update(Statement::Update(update)) => update.selection.is_some(),
                        SetExpr::Delete(Statement::Delete(delete)) => delete.selection.is_some(),
                        _ => false,
                    };
                }
                self.visit(query.as_ref());
            }
            Statement::Insert(insert) => self.insert(insert),
            Statement::Update(update) => self.update(update, top_level),
            Statement::Delete(delete) => self.delete(delete, top_level),
            Statement::Merge(merge) => self.merge(merge),
            Statement::Copy {
                source, to, target, ..
            } => self.copy(source, *to, target),
            Statement::Explain { statement, .. } => self.statement(statement, top_level),
            Statement::Prepare { statement, .. } => self.statement(statement, top_level),
            Statement::Declare { stmts } => {
                for declare in stmts {
                    if let Some(query) = &declare.for_query {
                        self.visit(query.as_ref());
                    }
                }
            }
            Statement::Drop {
                object_type,
                names,
                table,
                ..
            } => {
                if matches!(
                    object_type,
                    ObjectType::Table | ObjectType::View | ObjectType::MaterializedView
                ) {
                    for name in names {
                        self.write_table(name);
                    }
                }
                if let Some(table) = table {
                    self.write_table(table);
                }
            }
            Statement::Comment {
                object_type,
                object_name,
                ..
            } => match object_type {
                CommentObject::Table | CommentObject::View | CommentObject::MaterializedView => {
                    self.write_table(object_name);
                }
                CommentObject::Column => {
                    let parts = object_name.0.len().saturating_sub(1);
                    let table = ObjectName(object_name.0.iter().take(parts).cloned().collect());
                    if parts > 0 {
                        self.write_table(&table);
                    }
                }
                _ => {}
            },
            Statement::RenameTable(renames) => {
                for rename in renames {
                    self.write_table(&rename.old_name);
                    self.write_table(&rename.new_name);
                }
            }
            Statement::Grant(grant) => self.grant_objects(grant.objects.as_ref()),
            Statement::Revoke(revoke) => self.grant_objects(revoke.objects.as_ref()),
            Statement::LockTables { tables } => {
                for lock in tables {
                    self.read_table(&ObjectName::from(vec![lock.table.clone()]));
                }
            }
            Statement::Set(_)
            | Statement::ShowVariable { .. }
            | Statement::Execute { .. }
            | Statement::Call(_) => {
                // Values, not columns; but a subquery in them (`SET @v = (SELECT …)`) still reads.
                let before = self.free_identifiers_are_columns;
                self.free_identifiers_are_columns = false;
                self.generic(statement, RelationRole::Read);
                self.free_identifiers_are_columns = before;
            }
            Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. }
            | Statement::Deallocate { .. }
            | Statement::Reset(_)
            | Statement::Discard { .. }
            | Statement::Use(_) => {}
            other => {
                let role = match StatementKind::of(other) {
                    StatementKind::Ddl(_) | StatementKind::Grant | StatementKind::Revoke => {
                        RelationRole::Written
                    }
                    _ => RelationRole::Read,
                };
                let before = self.free_identifiers_are_columns;
                self.free_identifiers_are_columns = false;
                self.generic(other, role);
                self.free_identifiers_are_columns = before;
            }
        }
    }

    /// Walk a statement with the visitor alone: FROM items are reads, and any other relation
    /// sqlparser marks in it (`CREATE TABLE t`, `TRUNCATE t`, `LOCK t`, …) gets `role`.
    fn generic(&mut self, statement: &Statement, role: RelationRole) {
        let before = self.generic.replace((address(statement), role));
        self.visit(statement);
        self.generic = before;
    }

    fn insert(&mut self, insert: &Insert) {
        let target = match &insert.table {
            TableObject::TableName(name) => self.write_table(name),
            TableObject::TableFunction(function) => {
                self.found.opaque_names = true;
                self.visit(function);
                None
            }
            TableObject::TableQuery(query) => {
                self.visit(query.as_ref());
                None
            }
        };
        if !insert.columns.is_empty() {
            for column in &insert.columns {
                self.write_column_of(&target, column);
            }
        } else if !insert.assignments.is_empty() {
            for assignment in &insert.assignments {
                self.write_assignment_target(&target, &assignment.target);
            }
        } else {
            self.write_wildcard(&target);
        }
        if let Some(source) = &insert.source {
            self.visit(source.as_ref());
        }
        let alias = insert
            .table_alias
            .as_ref()
            .and_then(|a| self.alias_name(&a.alias));
        let target_source = Source {
            alias,
            target: target.clone().map_or(Target::Derived, Target::Table),
        };
        self.with_scope(vec![target_source.clone()], |w| {
            for assignment in &insert.assignments {
                w.visit(&assignment.value);
            }
        });
        match &insert.on {
            Some(OnInsert::DuplicateKeyUpdate(assignments)) => {
                self.with_scope(vec![target_source.clone()], |w| {
                    for assignment in assignments {
                        w.write_assignment_target(&target, &assignment.target);
                        w.visit(&assignment.value);
                    }
                });
            }
            Some(OnInsert::OnConflict(conflict)) => {
                if let OnConflictAction::DoUpdate(update) = &conflict.action {
                    let excluded = Source {
                        alias: Some("excluded".to_string()),
                        target: Target::Derived,
                    };
                    self.with_scope(vec![target_source.clone(), excluded], |w| {
                        for assignment in &update.assignments {
                            w.write_assignment_target(&target, &assignment.target);
                            w.visit(&assignment.value);
                        }
                        if let Some(selection) = &update.selection {
                            w.visit(selection);
                        }
                    });
                }
            }
            _ => {}
        }
        if let Some(returning) = &insert.returning {
            self.with_scope(vec![target_source], |w| w.select_items(returning));
        }
    }

    fn update(&mut self, update: &Update, top_level: bool) {
        if top_level {
            self.found.has_where = update.selection.is_some();
        }
        let mut sources = Vec::new();
        self.collect_sources(&update.table, &mut sources);
        let from = match &update.from {
            Some(UpdateTableFromKind::BeforeSet(from) | UpdateTableFromKind::AfterSet(from)) => {
                from.as_slice()
            }
            None => &[],
        };
        for item in from {
            self.collect_sources(item, &mut sources);
        }
        let target = match &update.table.relation {
            TableFactor::Table { name, .. } => self.write_table(name),
            other => {
                self.visit(other);
                None
            }
        };
        self.with_scope(sources, |w| {
            for join in &update.table.joins {
                w.visit(join);
            }
            for item in from {
                w.visit(item);
            }
            for assignment in &update.assignments {
                w.write_assignment_target(&target, &assignment.target);
                w.visit(&assignment.value);
            }
            if let Some(selection) = &update.selection {
                w.visit(selection);
            }
            if let Some(returning) = &update.returning {
                w.select_items(returning);
            }
            for order in &update.order_by {
                w.visit(order);
            }
            if let Some(limit) = &update.limit {
                w.visit(limit);
            }
        });
    }

    fn delete(&mut self, delete: &Delete, top_level: bool) {
        if top_level {
            self.found.has_where = delete.selection.is_some();
        }
        let from = match &delete.from {
            FromTable::WithFromKeyword(from) | FromTable::WithoutKeyword(from) => from,
        };
        let using = delete.using.as_deref().unwrap_or_default();
        let mut sources = Vec::new();
        for item in from.iter().chain(using) {
            self.collect_sources(item, &mut sources);
        }
        let multi_table = !delete.tables.is_empty();
        if multi_table {
            // MySQL `DELETE t1, t2 FROM t1 JOIN t2 …`: the listed names (or aliases) are targets.
            for name in &delete.tables {
                let qualifier = names::normalize_object_name(name, self.dialect);
                match qualifier.and_then(|q| resolve_in(&[&sources], &q)) {
                    Some(Target::Table(table)) => {
                        self.found.tables_written.insert(table);
                    }
                    Some(Target::Derived) => {}
                    None => {
                        self.write_table(name);
                    }
                }
            }
        } else {
            for item in from {
                match &item.relation {
                    TableFactor::Table { name, .. } => {
                        self.write_table(name);
                    }
                    other => self.visit(other),
                }
            }
        }
        self.with_scope(sources, |w| {
            for item in from {
                if multi_table {
                    w.visit(item);
                } else {
                    for join in &item.joins {
                        w.visit(join);
                    }
                }
            }
            for item in using {
                w.visit(item);
            }
            if let Some(selection) = &delete.selection {
                w.visit(selection);
            }
            if let Some(returning) = &delete.returning {
                w.select_items(returning);
            }
            for order in &delete.order_by {
                w.visit(order);
            }
            if let Some(limit) = &delete.limit {
                w.visit(limit);
            }
        });
    }

    fn merge(&mut self, merge: &Merge) {
        let mut sources = Vec::new();
        self.collect_factor_sources(&merge.table, &mut sources);
        self.collect_factor_sources(&merge.source, &mut sources);
        let target = match &merge.table {
            TableFactor::Table { name, .. } => self.write_table(name),
            other => {
                self.visit(other);
                None
            }
        };
        self.with_scope(sources, |w| {
            w.visit(&merge.source);
            w.visit(merge.on.as_ref());
            for clause in &merge.clauses {
                if let Some(predicate) = &clause.predicate {
                    w.visit(predicate);
                }
                match &clause.action {
                    MergeAction::Insert(insert) => {
                        if insert.columns.is_empty() {
                            w.write_wildcard(&target);
                        }
                        for column in &insert.columns {
                            w.write_column_of(&target, column);
                        }
                        match &insert.kind {
                            MergeInsertKind::Values(values) => w.visit(values),
                            MergeInsertKind::Row | MergeInsertKind::Wildcard => {}
                        }
                        if let Some(predicate) = &insert.insert_predicate {
                            w.visit(predicate);
                        }
                    }
                    MergeAction::Update(update) => {
                        match &update.kind {
                            MergeUpdateKind::Set(assignments) => {
                                for assignment in assignments {
                                    w.write_assignment_target(&target, &assignment.target);
                                    w.visit(&assignment.value);
                                }
                            }
                            MergeUpdateKind::Wildcard => w.write_wildcard(&target),
                        }
                        for predicate in [&update.update_predicate, &update.delete_predicate]
                            .into_iter()
                            .flatten()
                        {
                            w.visit(predicate);
                        }
                    }
                    MergeAction::Delete { .. } | MergeAction::DoNothing { .. } => {}
                }
            }
        });
    }

    fn copy(&mut self, source: &CopySource, to: bool, target: &CopyTarget) {
        self.found.copy_endpoint = Some(match target {
            CopyTarget::Stdin | CopyTarget::Stdout => CopyEndpoint::Client,
            CopyTarget::File { .. } => CopyEndpoint::ServerFile,
            CopyTarget::Program { .. } => CopyEndpoint::Program,
        });
        match source {
            CopySource::Query(query) => self.visit(query.as_ref()),
            CopySource::Table {
                table_name,
                columns,
            } => {
                let table = if to {
                    self.read_table(table_name)
                } else {
                    self.write_table(table_name)
                };
                let column_refs: Vec<ColumnRef> = if columns.is_empty() {
                    table
                        .iter()
                        .map(|t| ColumnRef {
                            table: Some(t.clone()),
                            column: ColumnName::Wildcard,
                        })
                        .collect()
                } else {
                    columns
                        .iter()
                        .filter_map(|c| self.column_name(c))
                        .map(|column| ColumnRef {
                            table: table.clone(),
                            column: ColumnName::Named(column),
                        })
                        .collect()
                };
                let set = if to {
                    &mut self.found.columns_read
                } else {
                    &mut self.found.columns_written
                };
                set.extend(column_refs);
            }
        }
    }

    fn grant_objects(&mut self, objects: Option<&GrantObjects>) {
        if let Some(GrantObjects::Tables(tables) | GrantObjects::Views(tables)) = objects {
            for table in tables {
                self.write_table(table);
            }
        }
    }

    // ----- scopes and sources -----------------------------------------------------------------

    fn with_scope(&mut self, sources: Vec<Source>, body: impl FnOnce(&mut Self)) {
        self.scopes.push(Scope {
            sources,
            ..Scope::default()
        });
        body(self);
        self.scopes.pop();
    }

    fn collect_sources(&mut self, item: &TableWithJoins, sources: &mut Vec<Source>) {
        self.collect_factor_sources(&item.relation, sources);
        for join in &item.joins {
            self.collect_factor_sources(&join.relation, sources);
        }
    }

    fn collect_factor_sources(&mut self, factor: &TableFactor, sources: &mut Vec<Source>) {
        match factor {
            TableFactor::Table {
                name, alias, args, ..
            } => {
                let mut alias = self.table_alias(alias.as_ref());
                let target = if args.is_some() {
                    Target::Derived
                } else {
                    match self.table_or_cte(name) {
                        Some(target) => target,
                        None => return,
                    }
                };
                if alias.is_none() && matches!(target, Target::Derived) {
                    // A CTE (or table function) is referred to by its own name.
                    alias = names::normalize_object_name(name, self.dialect)
                        .and_then(|parts| parts.last().cloned());
                }
                sources.push(Source { alias, target });
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if let Some(alias) = self.table_alias(alias.as_ref()) {
                    sources.push(Source {
                        alias: Some(alias),
                        target: Target::Derived,
                    });
                }
                self.collect_sources(table_with_joins, sources);
            }
            TableFactor::Pivot { table, alias, .. }
            | TableFactor::Unpivot { table, alias, .. }
            | TableFactor::MatchRecognize { table, alias, .. } => {
                self.collect_factor_sources(table, sources);
                if let Some(alias) = self.table_alias(alias.as_ref()) {
                    sources.push(Source {
                        alias: Some(alias),
                        target: Target::Derived,
                    });
                }
            }
            other => {
                let alias = match other {
                    TableFactor::Derived { alias, .. }
                    | TableFactor::TableFunction { alias, .. }
                    | TableFactor::Function { alias, .. }
                    | TableFactor::UNNEST { alias, .. }
                    | TableFactor::JsonTable { alias, .. }
                    | TableFactor::OpenJsonTable { alias, .. }
                    | TableFactor::XmlTable { alias, .. }
                    | TableFactor::SemanticView { alias, .. } => alias.as_ref(),
                    _ => None,
                };
                sources.push(Source {
                    alias: self.table_alias(alias),
                    target: Target::Derived,
                });
            }
        }
    }

    /// A table factor's name: a CTE in scope (not a table), or a table. `None` if literal-derived.
    fn table_or_cte(&mut self, name: &ObjectName) -> Option<Target> {
        let Some(parts) = names::normalize_object_name(name, self.dialect) else {
            self.found.opaque_names = true;
            return None;
        };
        if let [single] = parts.as_slice()
            && self
                .scopes
                .iter()
                .rev()
                .any(|scope| scope.ctes.iter().any(|cte| cte == single))
        {
            return Some(Target::Derived);
        }
        TableName::from_parts(parts).map(Target::Table)
    }

    fn table_alias(&mut self, alias: Option<&TableAlias>) -> Option<String> {
        alias.and_then(|a| self.alias_name(&a.name))
    }

    fn alias_name(&mut self, ident: &Ident) -> Option<String> {
        let name = names::normalize(ident, self.dialect);
        if name.is_none() {
            self.found.opaque_names = true;
        }
        name
    }

    fn column_name(&mut self, ident: &Ident) -> Option<String> {
        self.alias_name(ident)
    }

    // ----- recording --------------------------------------------------------------------------

    fn read_table(&mut self, name: &ObjectName) -> Option<TableName> {
        let table = names::table_name(name, self.dialect);
        match &table {
            Some(table) => {
                self.found.tables_read.insert(table.clone());
            }
            None => self.found.opaque_names = true,
        }
        table
    }

    fn write_table(&mut self, name: &ObjectName) -> Option<TableName> {
        let table = names::table_name(name, self.dialect);
        match &table {
            Some(table) => {
                self.found.tables_written.insert(table.clone());
            }
            None => self.found.opaque_names = true,
        }
        table
    }

    fn write_wildcard(&mut self, target: &Option<TableName>) {
        self.found.columns_written.insert(ColumnRef {
            table: target.clone(),
            column: ColumnName::Wildcard,
        });
    }

    /// An INSERT / MERGE column list entry: always a column of the target.
    fn write_column_of(&mut self, target: &Option<TableName>, column: &ObjectName) {
        let parts = names::normalize_object_name(column, self.dialect);
        match parts.as_ref().and_then(|p| p.last()) {
            Some(column) => {
                self.found.columns_written.insert(ColumnRef {
                    table: target.clone(),
                    column: ColumnName::Named(column.clone()),
                });
            }
            None => self.found.opaque_names = true,
        }
    }

    /// A SET target: `col`, `t.col` (multi-table UPDATE) or `(a, b)`.
    fn write_assignment_target(&mut self, target: &Option<TableName>, assigned: &AssignmentTarget) {
        let names: &[ObjectName] = match assigned {
            AssignmentTarget::ColumnName(name) => std::slice::from_ref(name),
            AssignmentTarget::Tuple(names) => names,
        };
        for name in names {
            let Some(parts) = names::normalize_object_name(name, self.dialect) else {
                self.found.opaque_names = true;
                continue;
            };
            let Some((column, qualifier)) = parts.split_last() else {
                continue;
            };
            let table = if qualifier.is_empty() {
                target.clone()
            } else {
                match self.resolve_qualifier(qualifier) {
                    Some(Target::Table(table)) => Some(table),
                    Some(Target::Derived) => continue,
                    None => TableName::from_parts(qualifier.iter().cloned()),
                }
            };
            if let Some(table) = &table {
                self.found.tables_written.insert(table.clone());
            }
            self.found.columns_written.insert(ColumnRef {
                table,
                column: ColumnName::Named(column.clone()),
            });
        }
    }

    fn read_column(&mut self, table: Option<TableName>, column: ColumnName) {
        if let Some(table) = &table {
            self.found.tables_read.insert(table.clone());
        }
        self.found.columns_read.insert(ColumnRef { table, column });
    }

    /// A RETURNING list (a SELECT list outside a SELECT).
    fn select_items(&mut self, items: &[SelectItem]) {
        for item in items {
            match item {
                SelectItem::Wildcard(_) => self.wildcard_all_in_innermost(),
                SelectItem::QualifiedWildcard(kind, _) => match kind {
                    SelectItemQualifiedWildcardKind::ObjectName(name) => self.wildcard_of(name),
                    SelectItemQualifiedWildcardKind::Expr(expr) => self.visit(expr),
                },
                SelectItem::UnnamedExpr(expr)
                | SelectItem::ExprWithAlias { expr, .. }
                | SelectItem::ExprWithAliases { expr, .. } => self.visit(expr),
            }
        }
    }

    fn wildcard_all_in_innermost(&mut self) {
        let tables: Vec<TableName> = self
            .scopes
            .iter()
            .rev()
            .find(|scope| !scope.sources.is_empty())
            .map(|scope| {
                scope
                    .sources
                    .iter()
                    .filter_map(|s| match &s.target {
                        Target::Table(t) => Some(t.clone()),
                        Target::Derived => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        for table in tables {
            self.read_column(Some(table), ColumnName::Wildcard);
        }
    }

    fn wildcard_of(&mut self, name: &ObjectName) {
        let Some(qualifier) = names::normalize_object_name(name, self.dialect) else {
            self.found.opaque_names = true;
            return;
        };
        match self.resolve_qualifier(&qualifier) {
            Some(Target::Table(table)) => self.read_column(Some(table), ColumnName::Wildcard),
            Some(Target::Derived) => {}
            None => {
                let table = TableName::from_parts(qualifier);
                self.found.columns_read.insert(ColumnRef {
                    table,
                    column: ColumnName::Wildcard,
                });
            }
        }
    }

    // ----- resolution -------------------------------------------------------------------------

    fn resolve_qualifier(&self, qualifier: &[String]) -> Option<Target> {
        let scopes: Vec<&[Source]> = self
            .scopes
            .iter()
            .rev()
            .map(|s| s.sources.as_slice())
            .collect();
        resolve_in(&scopes, qualifier)
    }

    /// A column reference written as `idents` (`col`, `t.col`, `s.t.col`).
    fn column_reference(&mut self, idents: &[Ident]) {
        let mut parts = Vec::with_capacity(idents.len());
        for ident in idents {
            match names::normalize(ident, self.dialect) {
                Some(part) => parts.push(part),
                None => {
                    self.found.opaque_names = true;
                    return;
                }
            }
        }
        let Some((column, qualifier)) = parts.split_last() else {
            return;
        };
        if self.scopes.is_empty() && !self.free_identifiers_are_columns {
            return;
        }
        if !qualifier.is_empty() {
            match self.resolve_qualifier(qualifier) {
                Some(Target::Table(table)) => {
                    self.read_column(Some(table), ColumnName::Named(column.clone()))
                }
                Some(Target::Derived) => {}
                None => {
                    // Not a FROM item in scope: keep what was written (never a literal).
                    let table = TableName::from_parts(qualifier.iter().cloned());
                    self.found.columns_read.insert(ColumnRef {
                        table,
                        column: ColumnName::Named(column.clone()),
                    });
                }
            }
            return;
        }
        self.unqualified_column(column.clone());
    }

    fn unqualified_column(&mut self, column: String) {
        let Some(scope) = self
            .scopes
            .iter()
            .rev()
            .find(|s| !s.sources.is_empty() || s.outputs_only || !s.output_aliases.is_empty())
        else {
            if self.free_identifiers_are_columns {
                self.found.columns_read.insert(ColumnRef {
                    table: None,
                    column: ColumnName::Named(column),
                });
            }
            return;
        };
        if self.order_or_group > 0 && (scope.outputs_only || scope.output_aliases.contains(&column))
        {
            return;
        }
        // A bare FROM alias used as a value is the whole row (`SELECT row_to_json(u) FROM users u`).
        let whole_row = scope
            .sources
            .iter()
            .find_map(|s| match (&s.alias, &s.target) {
                (Some(alias), Target::Table(t)) if *alias == column => Some(t.clone()),
                (None, Target::Table(t)) if t.name() == column => Some(t.clone()),
                _ => None,
            });
        if let Some(table) = whole_row {
            self.read_column(Some(table), ColumnName::Wildcard);
            return;
        }
        let tables: Vec<&TableName> = scope
            .sources
            .iter()
            .filter_map(|s| match &s.target {
                Target::Table(t) => Some(t),
                Target::Derived => None,
            })
            .collect();
        let derived = scope.sources.len() - tables.len();
        match (tables.as_slice(), derived) {
            ([table], 0) => {
                let table = (*table).clone();
                self.read_column(Some(table), ColumnName::Named(column));
            }
            ([], _) => {}
            _ => {
                self.found.columns_read.insert(ColumnRef {
                    table: None,
                    column: ColumnName::Named(column),
                });
            }
        }
    }

    fn function_arguments(&mut self, function: &Function) {
        let FunctionArguments::List(list) = &function.args else {
            return;
        };
        for arg in &list.args {
            let arg = match arg {
                FunctionArg::Named { arg, .. }
                | FunctionArg::ExprNamed { arg, .. }
                | FunctionArg::Unnamed(arg) => arg,
            };
            if let FunctionArgExpr::QualifiedWildcard(name) = arg {
                self.wildcard_of(name);
            }
            // An unqualified `*` argument is `count(*)`: it reads no column.
        }
    }

    fn visit<V: Visit + ?Sized>(&mut self, node: &V) {
        let _ = node.visit(self);
    }
}

/// Resolve a qualifier against scopes given innermost first.
fn resolve_in(scopes: &[&[Source]], qualifier: &[String]) -> Option<Target> {
    scopes.iter().find_map(|sources| {
        sources
            .iter()
            .find(|s| s.answers_to(qualifier))
            .map(|s| s.target.clone())
    })
}

impl Visitor for Walker {
    type Break = ();

    fn pre_visit_statement(&mut self, statement: &Statement) -> ControlFlow<()> {
        let is_root = self
            .generic
            .is_some_and(|(root, _)| root == address(statement));
        if self.suppressed > 0 || is_root {
            self.statement_frames.push(false);
            return ControlFlow::Continue(());
        }
        // A statement inside another (data-modifying CTE, EXPLAIN body, procedure body): walk it
        // structurally now, then ignore the visitor's generic descent into it.
        // Enclosing scopes stay visible: CTE names must still resolve, and the statement pushes
        // its own scope for its own tables.
        let generic = self.generic.take();
        self.statement(statement, false);
        self.generic = generic;
        self.suppressed += 1;
        self.statement_frames.push(true);
        ControlFlow::Continue(())
    }

    fn post_visit_statement(&mut self, _statement: &Statement) -> ControlFlow<()> {
        if self.statement_frames.pop() == Some(true) {
            self.suppressed = self.suppressed.saturating_sub(1);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if self.suppressed > 0 {
            return ControlFlow::Continue(());
        }
        let mut scope = Scope::default();
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                if let Some(name) = self.alias_name(&cte.alias.name) {
                    scope.ctes.push(name);
                }
            }
        }
        self.scopes.push(scope);
        // ORDER BY / LIMIT of this query are visited after its body's SELECT scope is gone, so
        // give the query level the body's FROM items too (or mark it as output-columns-only).
        let mut sources = Vec::new();
        let mut outputs_only = false;
        let mut aliases = Vec::new();
        match query.body.as_ref() {
            SetExpr::Select(select) => {
                for item in &select.from {
                    self.collect_sources(item, &mut sources);
                }
                aliases = self.output_aliases(select);
            }
            _ => outputs_only = true,
        }
        if let Some(scope) = self.scopes.last_mut() {
            scope.sources = sources;
            scope.outputs_only = outputs_only;
            scope.output_aliases = aliases;
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        if self.suppressed == 0 {
            self.scopes.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        if self.suppressed > 0 {
            return ControlFlow::Continue(());
        }
        let mut sources = Vec::new();
        for item in &select.from {
            self.collect_sources(item, &mut sources);
        }
        let output_aliases = self.output_aliases(select);
        self.scopes.push(Scope {
            sources,
            output_aliases,
            ..Scope::default()
        });
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) => self.wildcard_all_in_innermost(),
                SelectItem::QualifiedWildcard(
                    SelectItemQualifiedWildcardKind::ObjectName(n),
                    _,
                ) => self.wildcard_of(n),
                _ => {}
            }
        }
        for item in &select.from {
            for join in &item.joins {
                self.join_using(item, join);
            }
        }
        if let Some(into) = &select.into {
            self.found.select_into = true;
            for target in &into.targets {
                self.skipped_exprs.push(address(target));
                if let (Dialect::PostgreSql, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) =
                    (self.dialect, target)
                {
                    let idents = match target {
                        Expr::Identifier(ident) => vec![ident.clone()],
                        Expr::CompoundIdentifier(idents) => idents.clone(),
                        _ => Vec::new(),
                    };
                    let name = ObjectName::from(idents);
                    self.write_table(&name);
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_select(&mut self, _select: &Select) -> ControlFlow<()> {
        if self.suppressed == 0 {
            self.scopes.pop();
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if self.suppressed > 0 {
            return ControlFlow::Continue(());
        }
        if let TableFactor::Table { name, args, .. } = factor {
            self.pending_factor_names += 1;
            if args.is_none()
                && let Some(Target::Table(table)) = self.table_or_cte(name)
            {
                self.found.tables_read.insert(table);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if self.suppressed > 0 {
            return ControlFlow::Continue(());
        }
        if self.pending_factor_names > 0 {
            // The name of the table factor just entered: already recorded as a read.
            self.pending_factor_names -= 1;
            return ControlFlow::Continue(());
        }
        match self.generic.map(|(_, role)| role) {
            Some(RelationRole::Read) => {
                self.read_table(relation);
            }
            Some(RelationRole::Written) => {
                self.write_table(relation);
            }
            None => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_order_by(&mut self, _order_by: &OrderBy) -> ControlFlow<()> {
        self.order_or_group += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_order_by(&mut self, _order_by: &OrderBy) -> ControlFlow<()> {
        self.order_or_group = self.order_or_group.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_group_by(&mut self, _group_by: &GroupByExpr) -> ControlFlow<()> {
        self.order_or_group += 1;
        ControlFlow::Continue(())
    }

    fn post_visit_group_by(&mut self, _group_by: &GroupByExpr) -> ControlFlow<()> {
        self.order_or_group = self.order_or_group.saturating_sub(1);
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if self.suppressed > 0 || self.skipped_exprs.contains(&address(expr)) {
            return ControlFlow::Continue(());
        }
        match expr {
            Expr::Identifier(ident) => self.column_reference(std::slice::from_ref(ident)),
            Expr::CompoundIdentifier(idents) => self.column_reference(idents),
            Expr::QualifiedWildcard(name, _) => self.wildcard_of(name),
            Expr::Function(function) => self.function_arguments(function),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

impl Walker {
    fn output_aliases(&mut self, select: &Select) -> Vec<String> {
        select
            .projection
            .iter()
            .filter_map(|item| match item {
                SelectItem::ExprWithAlias { alias, .. } => names::normalize(alias, self.dialect),
                _ => None,
            })
            .collect()
    }

    /// `JOIN … USING (col)` reads `col` from both sides.
    fn join_using(&mut self, item: &TableWithJoins, join: &sqlparser::ast::Join) {
        let constraint = match &join.join_operator {
            JoinOperator::Join(c)
            | JoinOperator::Inner(c)
            | JoinOperator::Left(c)
            | JoinOperator::LeftOuter(c)
            | JoinOperator::Right(c)
            | JoinOperator::RightOuter(c)
            | JoinOperator::FullOuter(c)
            | JoinOperator::Semi(c)
            | JoinOperator::LeftSemi(c)
            | JoinOperator::RightSemi(c)
            | JoinOperator::Anti(c)
            | JoinOperator::LeftAnti(c)
            | JoinOperator::RightAnti(c)
            | JoinOperator::StraightJoin(c) => c,
            _ => return,
        };
        let JoinConstraint::Using(columns) = constraint else {
            return;
        };
        let mut sides = Vec::new();
        for factor in [&item.relation, &join.relation] {
            if let TableFactor::Table {
                name, args: None, ..
            } = factor
                && let Some(Target::Table(table)) = self.table_or_cte(name)
            {
                sides.push(table);
            }
        }
        for column in columns {
            let Some(parts) = names::normalize_object_name(column, self.dialect) else {
                self.found.opaque_names = true;
                continue;
            };
            let Some(name) = parts.last() else { continue };
            for table in &sides {
                self.read_column(Some(table.clone()), ColumnName::Named(name.clone()));
            }
        }
    }
}
