//! The integration-test harness of Warden: throwaway databases, the warden process, real
//! clients, and the raw protocol.
//!
//! Tests in `tests/` use it like this:
//!
//! - [`fixtures`] gives each test binary one shared PostgreSQL cluster ([`pg::PgInstance`]) with
//!   standard roles, and one shared [`warden::Warden`] in front of it; tests that need their own
//!   proxy configuration start a `Warden` from a [`warden::WardenConfig`].
//! - A [`pg::Target`] is where a client connects: PostgreSQL directly or warden. Scenarios are
//!   written against a target, and [`both_ways!`] runs one directly (proving the scenario and
//!   the harness) and through warden (testing the proxy).
//! - Clients are real: tokio-postgres ([`pg::Session`]), psql, pgbench and psycopg
//!   ([`pg::psql`], [`pg::pgbench`], [`pg::python`]), and hand-built protocol frames
//!   ([`pg::wire`]) for what no driver would send.
//! - [`equivalence`] states what must be byte-for-byte the same through warden as directly;
//!   [`poll`] waits for asynchronous effects with a deadline instead of sleeping.
//! - MySQL tests use [`mysql`]: a throwaway MariaDB server ([`mysql::MariaDbInstance`]), a
//!   [`mysql::MyTarget`] for mysql_async, the mariadb CLI and sysbench, and
//!   [`both_ways_mysql!`] for direct-versus-warden scenarios.
//! - Every server is a child that dies with the test process ([`process`]), and every failure
//!   carries the servers' log tails ([`watch`]).

pub mod equivalence;
pub mod fixtures;
pub mod http;
pub mod mysql;
pub mod netns;
pub mod pg;
pub mod pki;
pub mod poll;
pub mod ports;
pub mod process;
pub mod scratch;
pub mod tls;
pub mod tools;
pub mod upstream;
pub mod warden;
pub mod watch;

/// Defines two tests for the scenario `async fn NAME(target: &Target) -> anyhow::Result<()>`:
/// `NAME::direct` runs it against the shared PostgreSQL cluster, `NAME::through_warden`
/// against the shared warden. The direct run is the control: if it fails, the scenario or the
/// environment is wrong, not the proxy.
#[macro_export]
macro_rules! both_ways {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn direct() -> anyhow::Result<()> {
                    let target = $crate::fixtures::direct()?;
                    target.watch(super::$scenario(&target)).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn through_warden() -> anyhow::Result<()> {
                    let target = $crate::fixtures::through_warden()?;
                    target.watch(super::$scenario(&target)).await
                }
            }
        )+
    };
}
