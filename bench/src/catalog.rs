//! What the harness measures: the configurations a workload runs against and the workloads.
//!
//! Both are declared here in full, including those that cannot run yet: a configuration or a
//! workload whose feature is not built carries `needs`, and the report shows it as "not
//! available: needs issue N" instead of leaving it out or faking it. Making one available is a
//! small change: clear `needs`, and teach [`crate::lab::Lab`] to start it (a configuration) or
//! [`crate::run`] to drive it (a workload).
//!
//! Not every workload runs on every configuration ([`Workload::applies_to`]). The encrypted
//! workloads (`enc-lookup`, `enc-range`) read the people tables: `bench_people` through
//! warden-enc, whose policy encrypts its `id_card` and `salary`, and the plaintext copy
//! `bench_people_plain` on the direct connection (the reference their target is judged
//! against). warden-enc runs only those; the report says "not applicable" for the other
//! pairs, which is neither a failure nor a missing feature.

/// Where a workload's clients connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConfigId {
    /// The database itself.
    Direct,
    /// PgBouncer 1.x in session mode (one server connection per client, like warden).
    PgBouncer,
    /// Warden relaying with the audit trail off (`[audit] enabled = false`).
    Passthrough,
    /// Warden as deployed: every statement audited (fsync per batch, the defaults).
    Audit,
    /// Warden with the audit trail on (as `Audit`) and a column encryption policy on
    /// `bench_people`; runs only the encrypted workloads.
    Encryption,
    /// Warden with masking rules and the SQL firewall on.
    MaskingFirewall,
}

/// A configuration and whether it can run.
#[derive(Debug, Clone, Copy)]
pub struct Configuration {
    pub id: ConfigId,
    /// Short name used in tables, JSON and the chart.
    pub name: &'static str,
    pub description: &'static str,
    /// Why it cannot run yet, if it cannot.
    pub needs: Option<&'static str>,
}

/// Every configuration, in report order.
pub const CONFIGURATIONS: &[Configuration] = &[
    Configuration {
        id: ConfigId::Direct,
        name: "direct",
        description: "the database itself, no proxy",
        needs: None,
    },
    Configuration {
        id: ConfigId::PgBouncer,
        name: "pgbouncer",
        description: "PgBouncer, session mode (reference proxy)",
        needs: None,
    },
    Configuration {
        id: ConfigId::Passthrough,
        name: "warden-pass",
        description: "warden, audit trail off ([audit] enabled = false)",
        needs: None,
    },
    Configuration {
        id: ConfigId::Audit,
        name: "warden-audit",
        description: "warden, every statement audited (default durability: fsync per batch)",
        needs: None,
    },
    Configuration {
        id: ConfigId::Encryption,
        name: "warden-enc",
        description: "warden, audit on, column encryption on bench_people (SM4 deterministic id_card, SM4 ope salary)",
        needs: None,
    },
    Configuration {
        id: ConfigId::MaskingFirewall,
        name: "warden-mask-fw",
        description: "warden, dynamic masking and the SQL firewall on",
        needs: Some("issue 6 (masking and firewall)"),
    },
];

/// The configuration with `id`.
#[cfg(test)]
pub fn configuration(id: ConfigId) -> &'static Configuration {
    CONFIGURATIONS
        .iter()
        .find(|c| c.id == id)
        .expect("every ConfigId is declared")
}

/// A pgbench script the harness writes (so it knows exactly how many statements each
/// transaction runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Script {
    /// `pgbench -S`: one primary-key lookup.
    PointSelect,
    /// pgbench's TPC-B-like transaction: BEGIN, 3 UPDATEs, a SELECT, an INSERT, END.
    ReadWrite,
    /// One SELECT of 10,000 rows.
    BulkSelect,
    /// One INSERT of 100 rows.
    InsertBatch,
    /// One lookup by ID card in the people table (equality on a deterministic column).
    EncLookup,
    /// One range of salaries in the people table, ordered, 20 rows at most (an
    /// order-preserving column).
    EncRange,
}

impl Script {
    /// Whether the script reads the people tables (`bench_people` through warden-enc,
    /// `bench_people_plain` directly) rather than pgbench's.
    pub fn people(self) -> bool {
        matches!(self, Script::EncLookup | Script::EncRange)
    }
}

/// How a workload is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// pgbench with a script, a protocol mode (`simple` or `prepared`) and clients.
    Pgbench {
        script: Script,
        mode: &'static str,
        clients: u32,
    },
    /// The harness's tokio-postgres driver: `COPY ... FROM STDIN` of `rows` rows per operation.
    Copy { rows: u32, clients: u32 },
    /// Connect, one query, disconnect, by `clients` concurrent loops.
    ConnectionStorm { clients: u32 },
    /// `sessions` sessions held open and idle, `active` of them running point selects.
    Sessions { sessions: u32, active: u32 },
    /// Nothing to drive yet (the workload needs a feature that is not built).
    Unavailable,
}

/// The wire protocol a workload speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Postgres,
    Mysql,
}

/// A workload.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    pub name: &'static str,
    pub description: &'static str,
    pub protocol: Protocol,
    pub driver: Driver,
    /// Why it cannot run yet, if it cannot.
    pub needs: Option<&'static str>,
}

/// The configurations the encrypted workloads run on: the plaintext copy queried directly
/// (the reference) and warden with the encryption policy.
pub const ENCRYPTED_CONFIGS: &[ConfigId] = &[ConfigId::Direct, ConfigId::Encryption];

impl Workload {
    /// Whether the workload reads the encrypted people tables.
    pub fn encrypted(&self) -> bool {
        matches!(self.driver, Driver::Pgbench { script, .. } if script.people())
    }

    /// Whether this workload runs on `config`: the encrypted workloads on
    /// [`ENCRYPTED_CONFIGS`], every other workload on every configuration but warden-enc.
    pub fn applies_to(&self, config: ConfigId) -> bool {
        if self.encrypted() {
            ENCRYPTED_CONFIGS.contains(&config)
        } else {
            config != ConfigId::Encryption
        }
    }

    /// Why this workload does not run on `config` (when [`Workload::applies_to`] says so).
    pub fn not_applicable_reason(&self) -> &'static str {
        if self.encrypted() {
            "reads the encrypted table: runs on warden-enc, and directly on its plaintext copy"
        } else {
            "warden-enc runs only the encrypted workloads (enc-*)"
        }
    }

    /// Statements one transaction (operation) of this workload runs.
    pub fn statements_per_transaction(&self) -> u64 {
        match self.driver {
            Driver::Pgbench {
                script: Script::ReadWrite,
                ..
            } => 7,
            _ => 1,
        }
    }

    /// Concurrent clients, for the report.
    pub fn clients(&self) -> u32 {
        match self.driver {
            Driver::Pgbench { clients, .. }
            | Driver::Copy { clients, .. }
            | Driver::ConnectionStorm { clients } => clients,
            Driver::Sessions { active, .. } => active,
            Driver::Unavailable => 0,
        }
    }
}

const fn pgbench(
    name: &'static str,
    description: &'static str,
    script: Script,
    mode: &'static str,
    clients: u32,
) -> Workload {
    Workload {
        name,
        description,
        protocol: Protocol::Postgres,
        driver: Driver::Pgbench {
            script,
            mode,
            clients,
        },
        needs: None,
    }
}

const fn unavailable(
    name: &'static str,
    description: &'static str,
    protocol: Protocol,
    needs: &'static str,
) -> Workload {
    Workload {
        name,
        description,
        protocol,
        driver: Driver::Unavailable,
        needs: Some(needs),
    }
}

/// Every workload, in run and report order.
pub const WORKLOADS: &[Workload] = &[
    pgbench(
        "pg-select-simple",
        "pgbench point select (-S), simple protocol",
        Script::PointSelect,
        "simple",
        8,
    ),
    pgbench(
        "pg-select-prepared",
        "pgbench point select (-S), prepared statements",
        Script::PointSelect,
        "prepared",
        8,
    ),
    pgbench(
        "pg-read-write",
        "pgbench TPC-B-like read-write transaction (7 statements)",
        Script::ReadWrite,
        "simple",
        8,
    ),
    pgbench(
        "pg-bulk-select",
        "SELECT of 10,000 rows of pgbench_accounts",
        Script::BulkSelect,
        "prepared",
        4,
    ),
    pgbench(
        "pg-insert-batch",
        "INSERT of 100 rows in one statement",
        Script::InsertBatch,
        "simple",
        8,
    ),
    Workload {
        name: "pg-copy",
        description: "COPY FROM STDIN of 1,000 rows (tokio-postgres)",
        protocol: Protocol::Postgres,
        driver: Driver::Copy {
            rows: 1000,
            clients: 4,
        },
        needs: None,
    },
    Workload {
        name: "pg-connect-storm",
        description: "connect (SCRAM), SELECT 1, disconnect, in a loop (tokio-postgres)",
        protocol: Protocol::Postgres,
        driver: Driver::ConnectionStorm { clients: 8 },
        needs: None,
    },
    Workload {
        name: "pg-sessions-2000",
        description: "2,000 sessions open, 20 of them running point selects",
        protocol: Protocol::Postgres,
        driver: Driver::Sessions {
            sessions: 2000,
            active: 20,
        },
        needs: None,
    },
    Workload {
        name: "pg-sessions-10000",
        description: "10,000 sessions open, 100 of them running point selects",
        protocol: Protocol::Postgres,
        driver: Driver::Sessions {
            sessions: 10_000,
            active: 100,
        },
        needs: None,
    },
    pgbench(
        "enc-lookup",
        "point lookup by ID card (SM4 deterministic through warden-enc; plaintext copy direct)",
        Script::EncLookup,
        "prepared",
        8,
    ),
    pgbench(
        "enc-range",
        "salary range, ORDER BY, LIMIT 20 (SM4 ope through warden-enc; plaintext copy direct)",
        Script::EncRange,
        "prepared",
        8,
    ),
    unavailable(
        "mask-bulk-read",
        "bulk reads of masked columns",
        Protocol::Postgres,
        "issue 6 (masking and firewall)",
    ),
    unavailable(
        "mysql-point-select",
        "sysbench-style point select against MariaDB",
        Protocol::Mysql,
        "issue 4 (MySQL protocol)",
    ),
    unavailable(
        "mysql-read-write",
        "sysbench-style read-write transaction against MariaDB",
        Protocol::Mysql,
        "issue 4 (MySQL protocol)",
    ),
];

/// The workload named `name`.
pub fn workload(name: &str) -> Option<&'static Workload> {
    WORKLOADS.iter().find(|w| w.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_unavailable_ones_say_why() {
        let mut names: Vec<&str> = WORKLOADS.iter().map(|w| w.name).collect();
        names.extend(CONFIGURATIONS.iter().map(|c| c.name));
        let n = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), n);
        for w in WORKLOADS {
            assert_eq!(
                w.needs.is_some(),
                w.driver == Driver::Unavailable,
                "{}",
                w.name
            );
        }
        assert!(configuration(ConfigId::MaskingFirewall).needs.is_some());
        assert!(configuration(ConfigId::Encryption).needs.is_none());
    }

    #[test]
    fn encrypted_workloads_run_only_on_direct_and_warden_enc() {
        let lookup = workload("enc-lookup").unwrap();
        assert!(lookup.encrypted() && workload("enc-range").unwrap().encrypted());
        assert!(lookup.applies_to(ConfigId::Direct) && lookup.applies_to(ConfigId::Encryption));
        assert!(!lookup.applies_to(ConfigId::Audit) && !lookup.applies_to(ConfigId::PgBouncer));
        let select = workload("pg-select-simple").unwrap();
        assert!(!select.encrypted());
        assert!(select.applies_to(ConfigId::Audit) && !select.applies_to(ConfigId::Encryption));
        assert_eq!(lookup.statements_per_transaction(), 1);
    }

    #[test]
    fn statement_counts() {
        assert_eq!(
            workload("pg-read-write")
                .unwrap()
                .statements_per_transaction(),
            7
        );
        assert_eq!(
            workload("pg-select-simple")
                .unwrap()
                .statements_per_transaction(),
            1
        );
    }
}
