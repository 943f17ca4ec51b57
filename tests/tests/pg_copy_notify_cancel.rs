//! COPY in and out, LISTEN/NOTIFY, CancelRequest, and the end of a session from either side.
//!
//! These are the parts of the protocol where messages flow outside the plain request/response
//! rhythm: CopyData streams in both directions, notifications arrive while the client is idle,
//! a cancel arrives on a separate connection and must find the right backend, and a backend
//! killed by the server sends a FATAL error unprompted.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use futures_util::{SinkExt, TryStreamExt};
use warden_tests::both_ways;
use warden_tests::equivalence::same_bytes;
use warden_tests::fixtures::{self, app_login};
use warden_tests::pg::wire::{RawConnection, Startup, frontend};
use warden_tests::pg::{ConnectOptions, Session, Target, sqlstate};
use warden_tests::poll::eventually;
use warden_tests::scratch::unique_name;

both_ways!(
    copy_in_then_out_round_trips,
    a_bad_row_fails_copy_in_cleanly,
    notifications_cross_sessions,
    cancel_reaches_the_right_backend,
    cancel_with_a_wrong_key_is_ignored,
    server_termination_reaches_the_client,
    client_disconnect_ends_the_backend,
);

/// Rows of COPY text format: `id<TAB>name<TAB>note`, about `megabytes` MB, deterministic.
fn copy_payload(megabytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(megabytes << 20);
    let mut id = 0u64;
    while out.len() < megabytes << 20 {
        id += 1;
        let note = if id.is_multiple_of(7) {
            "\\N".to_string()
        } else {
            format!("note {} with tab\\tand newline\\n ünïcode", id * 31 % 1000)
        };
        out.extend_from_slice(format!("{id}\tname-{id:08}\t{note}\n").as_bytes());
    }
    out
}

async fn copy_out(session: &Session, sql: &str) -> Result<Vec<u8>> {
    let stream = session.copy_out(sql).await?;
    let chunks: Vec<Bytes> = stream.try_collect().await?;
    Ok(chunks.concat())
}

/// Several MB in through COPY FROM STDIN (sent in uneven chunks), then out through COPY TO
/// STDOUT: the text format comes back byte for byte as it went in.
async fn copy_in_then_out_round_trips(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("c-copy"))
        .await?;
    let t = unique_name("copy");
    session
        .simple_query(&format!(
            "CREATE TABLE {t} (id bigint PRIMARY KEY, name text, note text)"
        ))
        .await?;
    let payload = copy_payload(4);
    let sink = session.copy_in(&format!("COPY {t} FROM STDIN")).await?;
    futures_util::pin_mut!(sink);
    for chunk in payload.chunks(100_003) {
        sink.send(Bytes::copy_from_slice(chunk)).await?;
    }
    let rows = sink.finish().await?;
    let lines = payload.iter().filter(|b| **b == b'\n').count() as u64;
    ensure!(rows == lines, "COPY reported {rows} rows for {lines} lines");

    let out = copy_out(
        &session,
        &format!("COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT"),
    )
    .await?;
    same_bytes(
        "COPY TO STDOUT against what COPY FROM STDIN sent",
        &payload,
        &out,
    )?;
    session.simple_query(&format!("DROP TABLE {t}")).await?;
    Ok(())
}

/// A malformed row in the middle of COPY IN fails it with 22P02, nothing is stored, and the
/// session goes on.
async fn a_bad_row_fails_copy_in_cleanly(target: &Target) -> Result<()> {
    let session = target
        .connect(&app_login(), &ConnectOptions::app("c-copy-bad"))
        .await?;
    let t = unique_name("copybad");
    session
        .simple_query(&format!("CREATE TABLE {t} (id int, name text)"))
        .await?;
    let mut data = Vec::new();
    for i in 0..5000 {
        data.extend_from_slice(format!("{i}\tok\n").as_bytes());
    }
    data.extend_from_slice(b"not-a-number\tbad\n");
    for i in 0..5000 {
        data.extend_from_slice(format!("{i}\tafter\n").as_bytes());
    }
    let sink = session.copy_in(&format!("COPY {t} FROM STDIN")).await?;
    futures_util::pin_mut!(sink);
    let mut failure = None;
    for chunk in data.chunks(8192) {
        if let Err(e) = sink.send(Bytes::copy_from_slice(chunk)).await {
            failure = Some(e);
            break;
        }
    }
    let failure = match failure {
        Some(e) => e,
        None => sink
            .finish()
            .await
            .err()
            .context("COPY with a bad row succeeded")?,
    };
    ensure!(sqlstate(&failure) == Some("22P02"), "error: {failure:?}");
    let count: i64 = session
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .await?
        .get(0);
    ensure!(count == 0, "a failed COPY stored {count} rows");
    session.simple_query(&format!("DROP TABLE {t}")).await?;
    Ok(())
}

/// LISTEN on one session, NOTIFY from another: the idle listener receives the channel, the
/// payload and the notifying backend's pid; UNLISTEN stops delivery.
async fn notifications_cross_sessions(target: &Target) -> Result<()> {
    let mut listener = target
        .connect(&app_login(), &ConnectOptions::app("c-listen"))
        .await?;
    let notifier = target
        .connect(&app_login(), &ConnectOptions::app("c-notify"))
        .await?;
    let channel = unique_name("chan");
    listener.simple_query(&format!("LISTEN {channel}")).await?;
    let notifier_pid = notifier.backend_pid().await?;
    notifier
        .simple_query(&format!("NOTIFY {channel}, 'first payload'"))
        .await?;
    notifier
        .execute(
            "SELECT pg_notify($1, $2)",
            &[&channel, &"second: ünïcode ☃"],
        )
        .await?;

    let first = listener.next_notification(Duration::from_secs(10)).await?;
    ensure!(first.channel() == channel && first.payload() == "first payload");
    ensure!(
        first.process_id() == notifier_pid,
        "notification from pid {} but the notifier is {notifier_pid}",
        first.process_id()
    );
    let second = listener.next_notification(Duration::from_secs(10)).await?;
    ensure!(second.payload() == "second: ünïcode ☃", "{second:?}");

    // A notification raised inside a transaction is delivered at COMMIT, not before.
    notifier
        .simple_query(&format!(
            "BEGIN; NOTIFY {channel}, 'in transaction'; COMMIT"
        ))
        .await?;
    let third = listener.next_notification(Duration::from_secs(10)).await?;
    ensure!(third.payload() == "in transaction");

    listener
        .simple_query(&format!("UNLISTEN {channel}"))
        .await?;
    notifier
        .simple_query(&format!("NOTIFY {channel}, 'after unlisten'"))
        .await?;
    // A round trip on the listener after the NOTIFY: anything delivered would be queued now.
    listener.simple_query("SELECT 1").await?;
    if let Ok(n) = listener.next_notification(Duration::from_millis(100)).await {
        bail!("a notification arrived after UNLISTEN: {n:?}");
    }
    Ok(())
}

/// Whether backend `pid` is currently running a statement (seen behind the target's back).
async fn backend_state(admin: &Session, pid: i32) -> Result<Option<String>> {
    let row = admin
        .query_opt("SELECT state FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .await?;
    Ok(row.and_then(|r| r.get::<_, Option<String>>(0)))
}

/// Two sessions sleep; cancelling the first (through the client's cancel token, on a new
/// connection) interrupts exactly that one with 57014, while the second keeps running.
async fn cancel_reaches_the_right_backend(target: &Target) -> Result<()> {
    let pg = fixtures::pg()?;
    let admin = pg.admin().await?;
    let first = target
        .connect(&app_login(), &ConnectOptions::app("c-cancel-1"))
        .await?;
    let second = target
        .connect(&app_login(), &ConnectOptions::app("c-cancel-2"))
        .await?;
    let first_pid = first.backend_pid().await?;
    let second_pid = second.backend_pid().await?;
    let first_token = first.cancel_token();
    let second_token = second.cancel_token();

    let first_sleep = tokio::spawn(async move {
        let result = first.simple_query("SELECT pg_sleep(30)").await;
        (first, result)
    });
    let second_sleep = tokio::spawn(async move {
        let result = second.simple_query("SELECT pg_sleep(30)").await;
        (second, result)
    });
    for pid in [first_pid, second_pid] {
        eventually("the sleep to start", Duration::from_secs(10), || async {
            Ok(match backend_state(&admin, pid).await?.as_deref() {
                Some("active") => Ok(()),
                other => Err(format!("backend {pid} is {other:?}")),
            })
        })
        .await?;
    }

    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(
        (*warden_tests::tls::client_config(
            &warden_tests::tls::ServerCheck::VerifyFull {
                ca: target.ca_cert.clone(),
            },
            None,
        )?)
        .clone(),
    );
    first_token
        .cancel_query(tls.clone())
        .await
        .context("sending the cancel request failed")?;
    let (first, result) = tokio::time::timeout(Duration::from_secs(10), first_sleep)
        .await
        .context("the cancelled query did not return within 10 s")??;
    let error = result
        .err()
        .context("the cancelled sleep completed normally")?;
    ensure!(sqlstate(&error) == Some("57014"), "cancel gave {error:?}");

    ensure!(
        !second_sleep.is_finished(),
        "the other session's statement ended too: the cancel reached the wrong backend"
    );
    ensure!(
        backend_state(&admin, second_pid).await?.as_deref() == Some("active"),
        "the other session's backend is no longer running its statement"
    );
    // The cancelled session is usable.
    ensure!(
        first
            .query_one("SELECT 7::int4", &[])
            .await?
            .get::<_, i32>(0)
            == 7
    );

    second_token.cancel_query(tls).await?;
    let (_, result) = tokio::time::timeout(Duration::from_secs(10), second_sleep).await??;
    ensure!(result.err().as_ref().and_then(sqlstate) == Some("57014"));
    Ok(())
}

/// A CancelRequest with the right process id but a wrong secret key cancels nothing; the right
/// key then does. (Raw protocol: the test needs the BackendKeyData itself.)
async fn cancel_with_a_wrong_key_is_ignored(target: &Target) -> Result<()> {
    let pg = fixtures::pg()?;
    let admin = pg.admin().await?;
    let addr = format!("{}:{}", target.host, target.port).parse()?;
    let mut sleeper = RawConnection::connect(addr).await?;
    let Startup::Ready {
        backend_key: Some((pid, key)),
        ..
    } = sleeper
        .login(&app_login(), &[("application_name", "c-cancel-key")])
        .await?
    else {
        bail!("no BackendKeyData");
    };
    let rows = sleeper.simple_query("SELECT pg_backend_pid()").await?;
    let backend_pid: i32 = RawConnection::rows_of(&rows)
        .first()
        .and_then(|r| r[0].clone())
        .context("no pid")?
        .parse()?;
    sleeper
        .send(&frontend::query("SELECT pg_sleep(30)"))
        .await?;
    eventually("the sleep to start", Duration::from_secs(10), || async {
        Ok(match backend_state(&admin, backend_pid).await?.as_deref() {
            Some("active") => Ok(()),
            other => Err(format!("backend is {other:?}")),
        })
    })
    .await?;

    let mut wrong = RawConnection::connect(addr).await?;
    wrong
        .send(&frontend::cancel_request(pid, key.wrapping_add(1)))
        .await?;
    let closed = wrong.read_until_closed(Duration::from_secs(10)).await?;
    ensure!(
        closed.messages.is_empty(),
        "a cancel request got an answer: {:?}",
        closed.messages
    );
    // A full round trip on another session after the bogus cancel was handled.
    let other = target
        .connect(&app_login(), &ConnectOptions::app("c-cancel-key-probe"))
        .await?;
    other.simple_query("SELECT 1").await?;
    ensure!(
        backend_state(&admin, backend_pid).await?.as_deref() == Some("active"),
        "a cancel request with a wrong key interrupted the statement"
    );

    let mut right = RawConnection::connect(addr).await?;
    right.send(&frontend::cancel_request(pid, key)).await?;
    right.read_until_closed(Duration::from_secs(10)).await?;
    let messages = sleeper.read_until(b'Z', Duration::from_secs(10)).await?;
    let error = messages
        .iter()
        .find(|m| m.is_error())
        .context("the sleep was not cancelled by the right key")?;
    ensure!(
        error.sqlstate().as_deref() == Some("57014"),
        "{}",
        error.describe()
    );
    Ok(())
}

/// `pg_terminate_backend` from another session: the client receives the FATAL 57P01 and its
/// connection ends; other sessions through the same target carry on.
async fn server_termination_reaches_the_client(target: &Target) -> Result<()> {
    let pg = fixtures::pg()?;
    let admin = pg.admin().await?;
    let victim = target
        .connect(&app_login(), &ConnectOptions::app("c-terminated"))
        .await?;
    let bystander = target
        .connect(&app_login(), &ConnectOptions::app("c-bystander"))
        .await?;
    let pid = victim.backend_pid().await?;
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await?
        .get(0);
    ensure!(terminated, "pg_terminate_backend found no backend {pid}");
    let ended = victim.ended(Duration::from_secs(10)).await?;
    let error = ended
        .err()
        .context("the connection ended without an error")?;
    ensure!(
        sqlstate(&error) == Some("57P01"),
        "the client saw {error:?}, not FATAL 57P01"
    );
    ensure!(
        error.as_db_error().map(|e| e.severity()) == Some("FATAL"),
        "severity {:?}",
        error.as_db_error().map(|e| e.severity())
    );
    ensure!(
        bystander
            .query_one("SELECT 1::int4", &[])
            .await?
            .get::<_, i32>(0)
            == 1
    );
    let fresh = target
        .connect(&app_login(), &ConnectOptions::app("c-after-terminate"))
        .await?;
    fresh.simple_query("SELECT 1").await?;
    Ok(())
}

/// When the client goes away (politely with Terminate, or by dropping the socket), its
/// backend ends within a bounded time.
async fn client_disconnect_ends_the_backend(target: &Target) -> Result<()> {
    let pg = fixtures::pg()?;
    let admin = pg.admin().await?;
    let gone = |pid: i32| {
        let admin = &admin;
        async move {
            eventually("the backend to end", Duration::from_secs(10), || async {
                Ok(match backend_state(admin, pid).await? {
                    None => Ok(()),
                    Some(state) => Err(format!("backend {pid} is still {state}")),
                })
            })
            .await
        }
    };

    let polite = target
        .connect(&app_login(), &ConnectOptions::app("c-polite"))
        .await?;
    let pid = polite.backend_pid().await?;
    drop(polite);
    gone(pid).await?;

    let addr = format!("{}:{}", target.host, target.port).parse()?;
    let mut abrupt = RawConnection::connect(addr).await?;
    abrupt
        .login(&app_login(), &[("application_name", "c-abrupt")])
        .await?;
    let rows = abrupt.simple_query("SELECT pg_backend_pid()").await?;
    let pid: i32 = RawConnection::rows_of(&rows)
        .first()
        .and_then(|r| r[0].clone())
        .context("no pid")?
        .parse()?;
    drop(abrupt);
    gone(pid).await?;

    // In the middle of a long statement, too.
    let mut busy = RawConnection::connect(addr).await?;
    busy.login(&app_login(), &[("application_name", "c-busy")])
        .await?;
    let rows = busy.simple_query("SELECT pg_backend_pid()").await?;
    let pid: i32 = RawConnection::rows_of(&rows)
        .first()
        .and_then(|r| r[0].clone())
        .context("no pid")?
        .parse()?;
    busy.send(&frontend::query("SELECT pg_sleep(2)")).await?;
    eventually(
        "the statement to start",
        Duration::from_secs(10),
        || async {
            Ok(match backend_state(&admin, pid).await?.as_deref() {
                Some("active") => Ok(()),
                other => Err(format!("backend is {other:?}")),
            })
        },
    )
    .await?;
    drop(busy);
    // PostgreSQL notices a vanished client when it next writes, at the end of the statement:
    // the backend must end then, not linger idle on a connection nobody will use again.
    eventually(
        "the busy backend to end",
        Duration::from_secs(30),
        || async {
            Ok(match backend_state(&admin, pid).await? {
                None => Ok(()),
                Some(state) => Err(format!("backend {pid} is still {state}")),
            })
        },
    )
    .await?;
    Ok(())
}

/// COPY TO STDOUT in binary format returns the same bytes through warden as directly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_out_equals_direct() -> Result<()> {
    let warden = fixtures::warden()?;
    warden
        .watch(async {
            let options = ConnectOptions::app("c-copy-binary");
            let direct = fixtures::direct()?.connect(&app_login(), &options).await?;
            let proxied = warden
                .target("main")?
                .connect(&app_login(), &options)
                .await?;
            let sql = "COPY (SELECT g, md5(g::text), g * 1.5, now()::date - g, ARRAY[g, -g] \
                       FROM generate_series(1, 50000) g) TO STDOUT (FORMAT binary)";
            let d = copy_out(&direct, sql).await?;
            let p = copy_out(&proxied, sql).await?;
            ensure!(d.len() > 1 << 20, "the binary COPY is suspiciously small");
            same_bytes("binary COPY TO STDOUT", &d, &p)
        })
        .await
}
