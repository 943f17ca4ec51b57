//! Bad protocol input closes only the offending session (PROXY-4, issue item 7).
//!
//! Each case sends something no well-behaved client sends (impossible lengths, truncated
//! frames, garbage, unknown message types, a disconnect mid-message or mid-COPY) on a raw
//! socket, while a bystander session queries continuously. The offending connection must be
//! closed promptly (with an ErrorResponse carrying a protocol-violation SQLSTATE once the
//! session is far enough to understand one), the bystander must never notice, the database
//! must not be left with a stray backend or a half-executed statement, and warden must stay
//! ready without a panic in its logs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::task::JoinHandle;
use warden_tests::both_ways;
use warden_tests::fixtures::{self, app_login};
use warden_tests::pg::wire::{Closed, RawConnection, frontend};
use warden_tests::pg::{ConnectOptions, Target, Via};
use warden_tests::poll::eventually;
use warden_tests::scratch::unique_name;
use warden_tests::warden::{Warden, WardenConfig};

both_ways!(
    startup_length_beyond_any_limit,
    startup_length_below_the_minimum,
    truncated_startup_then_end_of_input,
    garbage_instead_of_a_startup_packet,
    unsupported_protocol_version,
    garbage_instead_of_a_tls_handshake,
    unknown_message_type_after_login,
    message_length_below_four_after_login,
    oversized_message_after_login,
    truncated_query_then_disconnect,
    disconnect_in_the_middle_of_copy_in,
);

/// How long a misbehaving connection may stay open before the test fails.
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

/// A session that keeps querying while a case runs.
struct Bystander {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<u64>>,
}

impl Bystander {
    async fn start(target: &Target) -> Result<Bystander> {
        let session = target
            .connect(&app_login(), &ConnectOptions::app("r-bystander"))
            .await?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let mut done = 0u64;
            loop {
                let v: i32 = session
                    .query_one("SELECT $1::int4 + 1", &[&(done as i32)])
                    .await
                    .with_context(|| format!("the bystander failed after {done} queries"))?
                    .get(0);
                ensure!(v == done as i32 + 1, "the bystander got a wrong answer");
                done += 1;
                if flag.load(Ordering::SeqCst) {
                    return Ok(done);
                }
                // Pacing only: the bystander does not synchronise with anything.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        Ok(Bystander { stop, task })
    }

    /// Stops the bystander; it must have run queries throughout without an error.
    async fn finish(self) -> Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        let done = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .context("the bystander hung")???;
        ensure!(done > 0, "the bystander ran no query");
        Ok(())
    }
}

/// Runs a case with a bystander, then checks warden is still ready and has not panicked.
async fn guarded<F>(target: &Target, case: F) -> Result<()>
where
    F: std::future::Future<Output = Result<()>>,
{
    let bystander = Bystander::start(target).await?;
    let outcome = case.await;
    let bystander = bystander.finish().await;
    outcome?;
    bystander?;
    if target.via == Via::Warden {
        let warden = fixtures::warden()?;
        ensure!(warden.readyz()? == 200, "warden is no longer ready");
        ensure!(
            !warden.log().contains("panicked"),
            "warden panicked:\n{}",
            warden.log_tail(40)
        );
    }
    // A new session works.
    target
        .connect(&app_login(), &ConnectOptions::app("r-after"))
        .await?
        .simple_query("SELECT 1")
        .await?;
    Ok(())
}

fn addr_of(target: &Target) -> Result<SocketAddr> {
    Ok(format!("{}:{}", target.host, target.port).parse()?)
}

/// What the server may say before closing a connection that misbehaved.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Say {
    /// Nothing or an ErrorResponse with one of the codes.
    MayError(&'static [&'static str]),
    /// Exactly one ErrorResponse with one of the codes.
    MustError(&'static [&'static str]),
}

const PROTOCOL_VIOLATION: &[&str] = &["08P01"];

/// Reads until the connection closes and checks what came before the end.
async fn expect_closed(conn: &mut RawConnection, say: Say) -> Result<Closed> {
    let closed = conn.read_until_closed(CLOSE_WITHIN).await?;
    let others: Vec<_> = closed
        .messages
        .iter()
        .filter(|m| m.tag != b'E' && m.tag != b'N')
        .map(|m| m.describe())
        .collect();
    ensure!(
        others.is_empty(),
        "the server answered bad input with {others:?}"
    );
    let errors = closed.errors();
    let codes = match say {
        Say::MayError(codes) | Say::MustError(codes) => codes,
    };
    if let Say::MustError(_) = say {
        ensure!(
            errors.len() == 1,
            "expected one ErrorResponse before the close, got {:?}",
            closed.messages
        );
    }
    for error in errors {
        let code = error.sqlstate().unwrap_or_default();
        ensure!(
            codes.contains(&code.as_str()),
            "error {}: expected one of {codes:?}",
            error.describe()
        );
    }
    Ok(closed)
}

/// What a logged-in session must hear after a protocol violation: through warden an
/// ErrorResponse 08P01 (PostgreSQL itself sometimes just closes).
fn after_login(target: &Target) -> Say {
    match target.via {
        Via::Warden => Say::MustError(PROTOCOL_VIOLATION),
        Via::Direct => Say::MayError(PROTOCOL_VIOLATION),
    }
}

async fn logged_in(target: &Target, program: &str) -> Result<RawConnection> {
    let mut raw = RawConnection::connect(addr_of(target)?).await?;
    raw.login(&app_login(), &[("application_name", program)])
        .await?;
    Ok(raw)
}

/// Sends `bytes`, tolerating a peer that already closed (that is an acceptable reaction).
async fn send_lenient(conn: &mut RawConnection, bytes: &[u8]) {
    let _ = conn.send(bytes).await;
}

/// A startup packet declaring 0xFFFFFFF0 bytes.
async fn startup_length_beyond_any_limit(target: &Target) -> Result<()> {
    guarded(target, async {
        let mut raw = RawConnection::connect(addr_of(target)?).await?;
        let mut bytes = vec![0xFF, 0xFF, 0xFF, 0xF0];
        bytes.extend_from_slice(&frontend::PROTOCOL_3_0.to_be_bytes());
        bytes.extend_from_slice(&[b'x'; 64]);
        send_lenient(&mut raw, &bytes).await;
        expect_closed(&mut raw, Say::MayError(PROTOCOL_VIOLATION)).await?;
        Ok(())
    })
    .await
}

/// Startup packets declaring 0, 4 and 7 bytes (the minimum is 8).
async fn startup_length_below_the_minimum(target: &Target) -> Result<()> {
    guarded(target, async {
        for declared in [0i32, 4, 7] {
            let mut raw = RawConnection::connect(addr_of(target)?).await?;
            let mut bytes = declared.to_be_bytes().to_vec();
            bytes.extend_from_slice(&[0u8; 16]);
            send_lenient(&mut raw, &bytes).await;
            expect_closed(&mut raw, Say::MayError(PROTOCOL_VIOLATION))
                .await
                .with_context(|| format!("declared length {declared}"))?;
        }
        Ok(())
    })
    .await
}

/// A startup packet that stops after 20 of its 100 bytes, then end of input.
async fn truncated_startup_then_end_of_input(target: &Target) -> Result<()> {
    guarded(target, async {
        let mut raw = RawConnection::connect(addr_of(target)?).await?;
        let full = frontend::startup(&[("user", "someone"), ("database", &"d".repeat(80))]);
        raw.send(&full[..20]).await?;
        raw.shutdown_write().await?;
        expect_closed(&mut raw, Say::MayError(PROTOCOL_VIOLATION)).await?;
        Ok(())
    })
    .await
}

/// An HTTP request, and 4 KB of pseudo-random bytes, where a startup packet belongs.
async fn garbage_instead_of_a_startup_packet(target: &Target) -> Result<()> {
    guarded(target, async {
        let mut raw = RawConnection::connect(addr_of(target)?).await?;
        send_lenient(&mut raw, b"GET / HTTP/1.1\r\nHost: warden\r\n\r\n").await;
        expect_closed(&mut raw, Say::MayError(PROTOCOL_VIOLATION)).await?;

        let mut state = 0x2545_F491_u32;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state >> 24) as u8
            })
            .collect();
        let mut raw = RawConnection::connect(addr_of(target)?).await?;
        send_lenient(&mut raw, &noise).await;
        expect_closed(&mut raw, Say::MayError(PROTOCOL_VIOLATION)).await?;
        Ok(())
    })
    .await
}

/// A StartupMessage for protocol 9.0: refused with an error, then closed.
async fn unsupported_protocol_version(target: &Target) -> Result<()> {
    guarded(target, async {
        let mut raw = RawConnection::connect(addr_of(target)?).await?;
        let mut body = (9i32 << 16).to_be_bytes().to_vec();
        body.extend_from_slice(b"user\0warden_app\0\0");
        raw.send(&frontend::untagged(&body)).await?;
        expect_closed(&mut raw, Say::MustError(&["0A000", "08P01"])).await?;
        Ok(())
    })
    .await
}

/// SSLRequest answered 'S', then bytes that are not a TLS ClientHello.
async fn garbage_instead_of_a_tls_handshake(target: &Target) -> Result<()> {
    guarded(target, async {
        let mut raw = RawConnection::connect(addr_of(target)?).await?;
        raw.send(&frontend::ssl_request()).await?;
        ensure!(raw.read_byte(CLOSE_WITHIN).await? == Some(b'S'));
        send_lenient(&mut raw, &frontend::startup(&[("user", "warden_app")])).await;
        let closed = raw.read_until_closed(CLOSE_WITHIN).await?;
        // Whatever comes back is TLS (an alert), not protocol messages; the point is the close.
        drop(closed);
        Ok(())
    })
    .await
}

/// A logged-in session sends a message of type 0x01.
async fn unknown_message_type_after_login(target: &Target) -> Result<()> {
    guarded(target, async {
        let mut raw = logged_in(target, "r-bad-type").await?;
        raw.send(&frontend::message(0x01, &[])).await?;
        expect_closed(&mut raw, Say::MustError(PROTOCOL_VIOLATION)).await?;
        Ok(())
    })
    .await
}

/// A logged-in session sends a Query whose length field says 2 (less than the field itself).
async fn message_length_below_four_after_login(target: &Target) -> Result<()> {
    guarded(target, async {
        let mut raw = logged_in(target, "r-short-length").await?;
        raw.send(&[b'Q', 0, 0, 0, 2, b'x', b'y']).await?;
        expect_closed(&mut raw, after_login(target)).await?;
        Ok(())
    })
    .await
}

/// A logged-in session declares a 2 GB Query.
async fn oversized_message_after_login(target: &Target) -> Result<()> {
    guarded(target, async {
        let mut raw = logged_in(target, "r-oversized").await?;
        let mut bytes = vec![b'Q'];
        bytes.extend_from_slice(&0x7FFF_FFF0_i32.to_be_bytes());
        bytes.extend_from_slice(b"SELECT ");
        send_lenient(&mut raw, &bytes).await;
        expect_closed(&mut raw, after_login(target)).await?;
        Ok(())
    })
    .await
}

/// Waits until no backend serves application `program`.
async fn no_backend_for(program: &str) -> Result<()> {
    let admin = fixtures::pg()?.admin().await?;
    eventually(
        "the backend to go away",
        Duration::from_secs(20),
        || async {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                    &[&program],
                )
                .await?
                .get(0);
            Ok(if n == 0 {
                Ok(())
            } else {
                Err(format!("{n} backends left"))
            })
        },
    )
    .await
}

async fn count_rows(table: &str) -> Result<i64> {
    let admin = fixtures::pg()?.admin_in(fixtures::APP_DATABASE).await?;
    Ok(admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0))
}

/// A Query declaring 1000 bytes of which only part arrives before the client disconnects: the
/// partial statement never runs, and the backend goes away.
async fn truncated_query_then_disconnect(target: &Target) -> Result<()> {
    guarded(target, async {
        let program = unique_name("r-truncated");
        let t = unique_name("truncated");
        let mut raw = logged_in(target, &program).await?;
        raw.simple_query(&format!("CREATE TABLE {t} (id int)"))
            .await?;
        let sql = format!("INSERT INTO {t} VALUES (1)");
        let mut bytes = vec![b'Q'];
        bytes.extend_from_slice(&1000i32.to_be_bytes());
        bytes.extend_from_slice(sql.as_bytes());
        bytes.push(0);
        raw.send(&bytes).await?;
        drop(raw);
        no_backend_for(&program).await?;
        ensure!(count_rows(&t).await? == 0, "a partial Query was executed");
        Ok(())
    })
    .await
}

/// A client disconnects after sending part of a COPY FROM STDIN: nothing is stored and the
/// backend goes away.
async fn disconnect_in_the_middle_of_copy_in(target: &Target) -> Result<()> {
    guarded(target, async {
        let program = unique_name("r-copy-cut");
        let t = unique_name("copycut");
        let mut raw = logged_in(target, &program).await?;
        raw.simple_query(&format!("CREATE TABLE {t} (id int, name text)"))
            .await?;
        raw.send(&frontend::query(&format!("COPY {t} FROM STDIN")))
            .await?;
        let messages = raw.read_until(b'G', CLOSE_WITHIN).await?;
        if messages.iter().any(|m| m.is_error()) {
            bail!("COPY did not start: {messages:?}");
        }
        for i in 0..100 {
            raw.send(&frontend::copy_data(format!("{i}\trow {i}\n").as_bytes()))
                .await?;
        }
        // Half of a CopyData message, then gone.
        raw.send(&[b'd', 0, 0, 0, 100, b'1']).await?;
        drop(raw);
        no_backend_for(&program).await?;
        ensure!(
            count_rows(&t).await? == 0,
            "an interrupted COPY stored rows"
        );
        Ok(())
    })
    .await
}

/// A client that connects and never completes its startup is closed after the configured
/// startup timeout (one second here), without affecting anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_closed_after_the_startup_timeout() -> Result<()> {
    let warden = Warden::start(
        WardenConfig::new(fixtures::main_upstream()?).limit("startup_timeout_ms", 1000),
    )?;
    let target = warden.target("main")?;
    warden
        .watch(async {
            let bystander = Bystander::start(&target).await?;
            let mut silent = RawConnection::connect(addr_of(&target)?).await?;
            let mut partial = RawConnection::connect(addr_of(&target)?).await?;
            partial.send(&[0, 0]).await?;
            let mut after_ssl = RawConnection::connect(addr_of(&target)?).await?;
            after_ssl.send(&frontend::ssl_request()).await?;
            ensure!(after_ssl.read_byte(CLOSE_WITHIN).await? == Some(b'S'));
            for (what, conn) in [
                ("silent", &mut silent),
                ("partial", &mut partial),
                ("after SSLRequest", &mut after_ssl),
            ] {
                conn.read_until_closed(CLOSE_WITHIN)
                    .await
                    .with_context(|| format!("the {what} client was not closed"))?;
            }
            bystander.finish().await?;
            ensure!(warden.readyz()? == 200);
            Ok(())
        })
        .await
}
