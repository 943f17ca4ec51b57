//! MySQL / MariaDB: throwaway servers, connection targets, real clients (mysql_async, the
//! mariadb CLI, sysbench), and the shared fixtures of the MySQL tests.

pub mod fixtures;
pub mod instance;
mod target;

pub use instance::{MariaDbInstance, find};
pub use target::{MyLogin, MyOptions, MyTarget, MyTls};

/// Defines two tests for the scenario `async fn NAME(target: &MyTarget) -> anyhow::Result<()>`:
/// `NAME::direct` against the shared MariaDB server (the control), `NAME::through_warden`
/// against the shared warden in front of it.
#[macro_export]
macro_rules! both_ways_mysql {
    ($($scenario:ident),+ $(,)?) => {
        $(
            mod $scenario {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn direct() -> anyhow::Result<()> {
                    let target = $crate::mysql::fixtures::direct()?;
                    target.watch(super::$scenario(&target)).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn through_warden() -> anyhow::Result<()> {
                    let target = $crate::mysql::fixtures::through_warden()?;
                    target.watch(super::$scenario(&target)).await
                }
            }
        )+
    };
}
