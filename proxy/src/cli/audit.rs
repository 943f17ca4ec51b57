//! `warden audit`: the auditor's commands over the audit store (DLP-6).
//!
//! `query` finds records, `verify` checks the SM3 hash chain and the keyed checkpoints and names
//! the first broken record, `export` writes records to JSON Lines or CSV. All three read the
//! store directly (read-only, safe while warden is running) and are thin layers over the
//! `warden-audit` crate; they find the store with `--dir`, or with `--config` from the `[audit]`
//! table of a warden configuration file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use time::OffsetDateTime;
use warden_audit::export::{self, ExportFormat};
use warden_audit::query::IpMatch;
use warden_audit::store::AuditStore;
use warden_audit::timefmt::{parse_end_bound, parse_time_bound};
use warden_audit::verify::ChainStart;
use warden_audit::{
    AuditConfig, AuditEvent, AuditFilter, AuditResult, CheckpointKey, Order, StoredRecord,
    VerifyOptions, VerifyReport,
};

/// Query, verify and export the audit trail.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Find audit records. Every filter given must match; times are UTC.
    ///
    /// Examples:
    ///   warden audit query --config warden.toml --from 2h --user alice
    ///   warden audit query --dir /var/lib/warden/audit --table members --kind ddl
    ///   warden audit query -c warden.toml --result refused --format json
    #[command(verbatim_doc_comment)]
    Query {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// Output: an aligned table, JSON Lines (one object per record, every field), or CSV.
        #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
        format: QueryFormat,
        /// Show at most this many records (a note on stderr says when more match).
        #[arg(long, default_value_t = 1000, value_name = "N")]
        limit: u64,
        /// Newest first.
        #[arg(long)]
        newest_first: bool,
    },
    /// Check that the audit trail is intact: the hash chain across every day file, and with
    /// the checkpoint key, the HMAC-SM3 checkpoints. Exits with status 1 and names the first
    /// broken record when it is not.
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// File holding the checkpoint key (hex). Default: the key the configuration names.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["key_env", "no_key"])]
        key_file: Option<PathBuf>,
        /// Environment variable holding the checkpoint key (hex).
        #[arg(long, value_name = "VAR", conflicts_with = "no_key")]
        key_env: Option<String>,
        /// Check the hash chain only, even if the configuration names a key.
        #[arg(long)]
        no_key: bool,
        /// First day file to check (YYYY-MM-DD); earlier files are taken as given.
        #[arg(long, value_name = "DAY")]
        from: Option<String>,
        /// Last day file to check (YYYY-MM-DD).
        #[arg(long, value_name = "DAY")]
        to: Option<String>,
        /// List at most this many problems (the rest are counted).
        #[arg(long, default_value_t = 20, value_name = "N")]
        max_problems: usize,
        /// Output: a readable report, or the report as JSON.
        #[arg(long, value_enum, default_value_t = VerifyFormat::Text)]
        format: VerifyFormat,
    },
    /// Write audit records (all, or those matching the filters) to a file or stdout, oldest
    /// first. JSON Lines is lossless; CSV is for spreadsheets.
    ///
    /// Examples:
    ///   warden audit export -c warden.toml --from 2025-03-01 --to 2025-03-31 -o march.jsonl
    ///   warden audit export -c warden.toml --format csv --bom --user alice -o alice.csv
    #[command(verbatim_doc_comment)]
    Export {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        filter: FilterArgs,
        /// File format.
        #[arg(long, value_enum, default_value_t = ExportFormatArg::Jsonl)]
        format: ExportFormatArg,
        /// Write here instead of stdout.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Start CSV with a UTF-8 byte-order mark (Excel and WPS need it for Chinese text).
        #[arg(long)]
        bom: bool,
        /// Export at most this many records.
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
        /// In write order (the order of the hash chain) instead of event time.
        #[arg(long)]
        chain_order: bool,
    },
}

/// Where the store is: one of `--dir` and `--config`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct StoreArgs {
    /// The audit directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// A warden configuration file; the store is its `[audit]` `dir` (relative to the file).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Filters shared by `query` and `export`.
#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Records at or after: RFC 3339 (2025-03-01T08:00:00+08:00), a UTC date (2025-03-01), or an
    /// age (90s, 15m, 2h, 7d).
    #[arg(long, value_name = "TIME")]
    from: Option<String>,
    /// Records before (a date includes that whole day); same forms as --from.
    #[arg(long, value_name = "TIME")]
    to: Option<String>,
    /// Database user.
    #[arg(long)]
    user: Option<String>,
    /// Client address, or network in CIDR notation (10.1.0.0/16).
    #[arg(long, value_name = "ADDR")]
    ip: Option<String>,
    /// Client program (application_name, program_name).
    #[arg(long)]
    program: Option<String>,
    /// A table the statement touches (`members` also matches `public.members`).
    #[arg(long)]
    table: Option<String>,
    /// Statement kind (`ddl` also matches `ddl.create`, `ddl.drop`, ...).
    #[arg(long)]
    kind: Option<String>,
    /// Event: login, login_failed, statement, session_end.
    #[arg(long)]
    event: Option<String>,
    /// Result: ok, error, refused.
    #[arg(long)]
    result: Option<String>,
    /// Session id.
    #[arg(long, value_name = "ID")]
    session: Option<u64>,
    /// Text in the SQL or the error message (case-insensitive substring).
    #[arg(long)]
    text: Option<String>,
}

/// How `query` prints records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    /// Aligned columns for a terminal (SQL shortened, control characters replaced).
    Table,
    /// JSON Lines: one object per record, with every field (null when absent).
    Json,
    /// CSV with a header row.
    Csv,
}

/// How `verify` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VerifyFormat {
    /// A readable report.
    Text,
    /// The report as one JSON document.
    Json,
}

/// The file format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormatArg {
    /// JSON Lines, lossless.
    Jsonl,
    /// CSV for spreadsheets (formula-looking cells prefixed with ').
    Csv,
}

/// Runs an audit command. A broken trail (`verify`) is an error, so the exit status is non-zero.
pub fn run(cmd: AuditCommand) -> Result<()> {
    match cmd {
        AuditCommand::Query {
            store,
            filter,
            format,
            limit,
            newest_first,
        } => {
            let (store, _) = open_store(&store)?;
            let mut filter = filter.to_filter()?;
            filter.order = if newest_first {
                Order::TimeDesc
            } else {
                Order::TimeAsc
            };
            // One more than asked, to tell whether there are more.
            filter.limit = Some(limit.saturating_add(1));
            let mut records = store.query(&filter)?;
            let page = records
                .by_ref()
                .take(usize::try_from(limit).unwrap_or(usize::MAX));
            let stdout = std::io::stdout().lock();
            let shown = match format {
                QueryFormat::Table => {
                    let rows: Vec<StoredRecord> = page.collect::<Result<_, _>>()?;
                    export::write_table(&rows, stdout)?;
                    rows.len() as u64
                }
                QueryFormat::Json => export::write_jsonl(page, stdout)?,
                QueryFormat::Csv => export::write_csv(page, stdout, false)?,
            };
            if records.next().is_some() {
                eprintln!(
                    "(showing the first {limit} matching records; use --limit to see more, or \
                     `warden audit export` for all)"
                );
            } else if shown == 0 && format == QueryFormat::Table {
                eprintln!("no audit records match");
            }
            Ok(())
        }
        AuditCommand::Verify {
            store,
            key_file,
            key_env,
            no_key,
            from,
            to,
            max_problems,
            format,
        } => {
            let (store, config) = open_store(&store)?;
            let key = if no_key {
                None
            } else if let Some(file) = key_file {
                Some(CheckpointKey::from_file(&file)?)
            } else if let Some(var) = key_env {
                Some(CheckpointKey::from_env(&var)?)
            } else if let Some(config) = &config {
                CheckpointKey::from_config(config).context(
                    "the configuration names a checkpoint key that cannot be read; give \
                     --key-file or --key-env, or --no-key to check the hash chain only",
                )?
            } else {
                None
            };
            let day = |text: Option<String>| -> Result<Option<time::Date>> {
                text.map(|t| {
                    parse_time_bound(&t, OffsetDateTime::now_utc())
                        .map(|t| t.date())
                        .map_err(anyhow::Error::from)
                })
                .transpose()
            };
            let options = VerifyOptions {
                key,
                from: day(from)?,
                to: day(to)?,
                max_problems,
            };
            let report = store.verify(&options)?;
            match format {
                VerifyFormat::Json => {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                }
                VerifyFormat::Text => print_report(&store, &options, &report),
            }
            match report.first_problem() {
                None => Ok(()),
                Some(first) => bail!(
                    "the audit trail is not intact; first problem: {first} ({} problem(s) in all)",
                    report.problems.len() as u64 + report.more_problems
                ),
            }
        }
        AuditCommand::Export {
            store,
            filter,
            format,
            output,
            bom,
            limit,
            chain_order,
        } => {
            let (store, _) = open_store(&store)?;
            let mut filter = filter.to_filter()?;
            filter.limit = limit;
            filter.order = if chain_order {
                Order::Sequence
            } else {
                Order::TimeAsc
            };
            let format = match format {
                ExportFormatArg::Jsonl => ExportFormat::Jsonl,
                ExportFormatArg::Csv => ExportFormat::Csv,
            };
            let records = store.query(&filter)?;
            let written = match &output {
                Some(path) => {
                    let file = File::create(path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    let n = export::write_records(records, format, &file, bom)?;
                    file.sync_all()
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    n
                }
                None => export::write_records(records, format, std::io::stdout().lock(), bom)?,
            };
            let to = output.map_or("stdout".to_string(), |p| p.display().to_string());
            eprintln!("exported {written} audit records to {to}");
            Ok(())
        }
    }
}

impl FilterArgs {
    fn to_filter(&self) -> Result<AuditFilter> {
        let now = OffsetDateTime::now_utc();
        let parse = |text: &Option<String>| text.as_deref().map(str::to_owned);
        Ok(AuditFilter {
            from: self
                .from
                .as_deref()
                .map(|t| parse_time_bound(t, now))
                .transpose()
                .context("--from")?,
            to: self
                .to
                .as_deref()
                .map(|t| parse_end_bound(t, now))
                .transpose()
                .context("--to")?,
            user: parse(&self.user),
            client_ip: self
                .ip
                .as_deref()
                .map(str::parse::<IpMatch>)
                .transpose()
                .map_err(anyhow::Error::msg)
                .context("--ip")?,
            program: parse(&self.program),
            table: parse(&self.table),
            kind: parse(&self.kind),
            event: self
                .event
                .as_deref()
                .map(str::parse::<AuditEvent>)
                .transpose()
                .context("--event (login, login_failed, statement, session_end)")?,
            result: self
                .result
                .as_deref()
                .map(str::parse::<AuditResult>)
                .transpose()
                .context("--result (ok, error, refused)")?,
            session_id: self.session,
            text: parse(&self.text),
            limit: None,
            order: Order::TimeAsc,
        })
    }
}

/// Opens the store named by `--dir` or `--config`; with `--config`, also returns its
/// `[audit]` section (for the checkpoint key).
fn open_store(args: &StoreArgs) -> Result<(AuditStore, Option<AuditConfig>)> {
    let (dir, config) = match (&args.dir, &args.config) {
        (Some(dir), _) => (dir.clone(), None),
        (None, Some(file)) => {
            let config = audit_section(file)?;
            (config.dir.clone(), Some(config))
        }
        (None, None) => bail!("give the audit store with --dir DIR or --config FILE"),
    };
    let store = AuditStore::open(&dir)?;
    Ok((store, config))
}

/// The `[audit]` table of a warden configuration file, with paths resolved against the
/// file's directory. Only this table is read, so the rest of the file need not be valid.
fn audit_section(file: &Path) -> Result<AuditConfig> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the configuration {}", file.display()))?;
    let doc: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not valid TOML", file.display()))?;
    let mut config = match doc.get("audit") {
        None => AuditConfig::default(),
        Some(section) => section
            .clone()
            .try_into::<AuditConfig>()
            .with_context(|| format!("{}: in [audit]", file.display()))?,
    };
    let base = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    config.resolve_paths(base);
    Ok(config)
}

fn print_report(store: &AuditStore, options: &VerifyOptions, report: &VerifyReport) {
    let mut out = std::io::stdout().lock();
    let _ = print_report_to(&mut out, store, options, report);
}

fn print_report_to(
    out: &mut impl Write,
    store: &AuditStore,
    options: &VerifyOptions,
    report: &VerifyReport,
) -> std::io::Result<()> {
    writeln!(out, "audit store {}", store.dir().display())?;
    let first = report.files.iter().find_map(|f| f.first_seq);
    let last = report.files.iter().rev().find_map(|f| f.last_seq);
    let range = match (first, last) {
        (Some(a), Some(b)) => format!(" (records {a} to {b})"),
        _ => String::new(),
    };
    writeln!(
        out,
        "checked {} day file(s), {} record(s){range}, {} checkpoint(s)",
        report.files.len(),
        report.records,
        report.checkpoints
    )?;
    match &options.key {
        Some(key) => writeln!(
            out,
            "checkpoint key {}: {} checkpoint MAC(s) verified",
            key.id(),
            report.checkpoints_verified
        )?,
        None => writeln!(
            out,
            "no checkpoint key: the hash chain is checked, the checkpoint MACs are not (a \
             rewriter who recomputes every hash is only caught with the key)"
        )?,
    }
    match &report.start {
        ChainStart::Empty => writeln!(out, "the store has no day files in the range")?,
        ChainStart::Genesis => writeln!(out, "the chain starts at the first record ever written")?,
        ChainStart::After { file, present } => writeln!(
            out,
            "the chain continues from {file} ({})",
            if *present {
                "not checked: outside the range"
            } else {
                "no longer in the directory: removed by retention, or deleted"
            }
        )?,
    }
    match report.first_problem() {
        None => writeln!(out, "OK: the audit trail is intact")?,
        Some(first) => {
            let total = report.problems.len() as u64 + report.more_problems;
            writeln!(out, "BROKEN: {total} problem(s). The first broken record:")?;
            writeln!(out, "  {first}")?;
            if report.problems.len() > 1 {
                writeln!(out, "all problems, in chain order:")?;
                for p in &report.problems {
                    writeln!(out, "  {p}")?;
                }
                if report.more_problems > 0 {
                    writeln!(out, "  ... and {} more", report.more_problems)?;
                }
            }
        }
    }
    Ok(())
}
