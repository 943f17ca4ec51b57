//! The harness's own load generator, on tokio-postgres, for what pgbench cannot do: COPY, a
//! storm of short connections, and thousands of sessions held open.
//!
//! Every operation is timed on its own; the latencies are real per-operation measurements,
//! exactly like pgbench's `-l` log.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio::sync::Semaphore;
use tokio_postgres::{Client, NoTls};
use warden_tests::pg::{Login, Target};

/// What a timed loop measured.
#[derive(Debug, Clone, Default)]
pub struct DriverRun {
    /// Operations completed.
    pub operations: u64,
    pub failed: u64,
    pub latencies_us: Vec<u64>,
    pub elapsed: Duration,
}

impl DriverRun {
    pub fn tps(&self) -> f64 {
        self.operations as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn merge(&mut self, other: DriverRun) {
        self.operations += other.operations;
        self.failed += other.failed;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// A plain-TCP session to `target` as `login`; the connection runs on its own task.
pub async fn connect(target: &Target, login: &Login, app: &str) -> Result<Client> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&login.user)
        .password(&login.password)
        .dbname(&login.database)
        .application_name(app)
        .connect_timeout(Duration::from_secs(30));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("cannot connect to {}:{}", target.host, target.port))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `clients` loops, each on its own session, running COPY FROM STDIN of `rows` rows into
/// `bench_copy` until `duration` has passed.
pub async fn copy_in(
    target: &Target,
    login: &Login,
    clients: u32,
    rows: u32,
    duration: Duration,
) -> Result<DriverRun> {
    let payload = copy_payload(rows);
    let mut sessions = Vec::new();
    for _ in 0..clients {
        sessions.push(connect(target, login, "warden-bench-copy").await?);
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for client in sessions {
        let payload = payload.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = DriverRun::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                let done: Result<()> = async {
                    let sink = client
                        .copy_in("COPY bench_copy (id, bid, delta, note) FROM STDIN")
                        .await?;
                    futures_util::pin_mut!(sink);
                    sink.send(payload.clone()).await?;
                    sink.finish().await?;
                    Ok(())
                }
                .await;
                match done {
                    Ok(()) => {
                        run.operations += 1;
                        run.latencies_us.push(t.elapsed().as_micros() as u64);
                    }
                    Err(_) => run.failed += 1,
                }
            }
            run
        }));
    }
    collect(tasks, started).await
}

/// The text-format COPY data for `rows` rows.
pub fn copy_payload(rows: u32) -> Bytes {
    let mut text = String::with_capacity(rows as usize * 32);
    for i in 0..rows {
        text.push_str(&format!(
            "{i}\t{}\t{}\twarden bench row\n",
            i % 10,
            i % 1000
        ));
    }
    Bytes::from(text)
}

/// `clients` loops of connect, `SELECT 1`, disconnect until `duration` has passed; each
/// operation's latency covers all three.
pub async fn connection_storm(
    target: &Target,
    login: &Login,
    clients: u32,
    duration: Duration,
) -> Result<DriverRun> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let target = target.clone();
        let login = login.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = DriverRun::default();
            while Instant::now() < deadline {
                let t = Instant::now();
                match storm_once(&target, &login).await {
                    Ok(()) => {
                        run.operations += 1;
                        run.latencies_us.push(t.elapsed().as_micros() as u64);
                    }
                    Err(_) => run.failed += 1,
                }
            }
            run
        }));
    }
    collect(tasks, started).await
}

async fn storm_once(target: &Target, login: &Login) -> Result<()> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&target.host)
        .port(target.port)
        .user(&login.user)
        .password(&login.password)
        .dbname(&login.database)
        .application_name("warden-bench-storm");
    let (client, connection) = config.connect(NoTls).await?;
    let conn = tokio::spawn(connection);
    client.simple_query("SELECT 1").await?;
    drop(client);
    // The disconnect is part of the operation: wait for the connection to close.
    let _ = conn.await;
    Ok(())
}

/// Opens `n` sessions, at most `parallel` logins at a time.
pub async fn open_sessions(
    target: &Target,
    login: &Login,
    n: u32,
    parallel: usize,
) -> Result<Vec<Arc<Client>>> {
    let gate = Arc::new(Semaphore::new(parallel));
    let mut tasks = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let gate = gate.clone();
        let target = target.clone();
        let login = login.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await?;
            connect(&target, &login, "warden-bench-idle").await
        }));
    }
    let mut clients = Vec::with_capacity(n as usize);
    let mut first_error = None;
    for task in tasks {
        match task.await? {
            Ok(c) => clients.push(Arc::new(c)),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        bail!(
            "{} of {n} sessions could not be opened: {e:#}",
            n as usize - clients.len()
        );
    }
    Ok(clients)
}

/// On each of `clients`, point selects on `pgbench_accounts` (`accounts` rows) back to back
/// until `duration` has passed. Simple protocol with the key as a literal: a
/// transaction-mode pooler (which the 10,000-session runs put behind warden) cannot keep a
/// named prepared statement on the server connection the next query lands on.
pub async fn point_selects(
    clients: &[Arc<Client>],
    accounts: u64,
    duration: Duration,
) -> Result<DriverRun> {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut run = DriverRun::default();
            let mut aid = (i as u64 * 7919) % accounts;
            while Instant::now() < deadline {
                aid = (aid * 48271 + 11) % accounts;
                let sql = format!(
                    "SELECT abalance FROM pgbench_accounts WHERE aid = {}",
                    aid + 1
                );
                let t = Instant::now();
                match client.simple_query(&sql).await {
                    Ok(_) => {
                        run.operations += 1;
                        run.latencies_us.push(t.elapsed().as_micros() as u64);
                    }
                    Err(_) => run.failed += 1,
                }
            }
            run
        }));
    }
    collect(tasks, started).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<DriverRun>>,
    started: Instant,
) -> Result<DriverRun> {
    let mut total = DriverRun::default();
    for task in tasks {
        total.merge(task.await?);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_payload_has_one_line_per_row() {
        let p = copy_payload(3);
        assert_eq!(
            std::str::from_utf8(&p).unwrap(),
            "0\t0\t0\twarden bench row\n1\t1\t1\twarden bench row\n2\t2\t2\twarden bench row\n"
        );
    }
}
