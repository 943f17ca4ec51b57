//! Startup, TLS and authentication: sslmode disable/require/verify-full from the client,
//! GSSENCRequest refused with 'N', SCRAM-SHA-256 (with channel binding) and md5 with TLS on
//! both legs, failed logins that close the connection, warden's upstream TLS verification
//! modes, client TLS policies, and client certificates (mTLS).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio_postgres::config::ChannelBinding;
use warden_tests::both_ways;
use warden_tests::fixtures::{self, app_login, md5_login};
use warden_tests::pg::wire::{RawConnection, Startup, frontend};
use warden_tests::pg::{ClientTls, ConnectOptions, Target, psql, sqlstate};
use warden_tests::scratch::unique_name;
use warden_tests::tls::{ServerCheck, client_config};
use warden_tests::upstream::UpstreamDatabase;
use warden_tests::warden::{UpstreamSpec, Warden, WardenConfig};

both_ways!(
    client_tls_modes_work,
    scram_with_channel_binding_over_tls,
    each_user_is_asked_for_its_mechanism,
    a_wrong_password_is_refused_and_the_connection_closed,
    an_unknown_user_is_refused_cleanly,
);

fn addr_of(target: &Target) -> Result<SocketAddr> {
    Ok(format!("{}:{}", target.host, target.port).parse()?)
}

/// Whether the session's own backend connection is encrypted (for a direct target that is
/// the client's connection; through warden, warden's connection to the database).
async fn upstream_ssl(session: &tokio_postgres::Client) -> Result<bool> {
    Ok(session
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?
        .get(0))
}

/// sslmode disable, require and verify-full all connect; the certificate verifies under both
/// names it is issued for; verify-full against a CA that did not sign it fails in the TLS
/// layer (not with a server error).
async fn client_tls_modes_work(target: &Target) -> Result<()> {
    for tls in [
        ClientTls::Disable,
        ClientTls::Require,
        ClientTls::VerifyFull,
    ] {
        let session = target
            .connect(&app_login(), &ConnectOptions::app("t-modes").tls(tls))
            .await?;
        session.simple_query("SELECT 1").await?;
    }
    for name in ["127.0.0.1", "localhost"] {
        let config = client_config(
            &ServerCheck::VerifyFull {
                ca: target.ca_cert.clone(),
            },
            None,
        )?;
        let mut raw = RawConnection::connect(addr_of(target)?)
            .await?
            .start_tls(config, name)
            .await
            .with_context(|| format!("verify-full as {name}"))?;
        raw.login(&app_login(), &[]).await?;
    }
    let mut stranger = target.clone();
    stranger.ca_cert = fixtures::pki()?.stranger_ca_file();
    let refused = stranger
        .try_connect(&app_login(), &ConnectOptions::app("t-stranger"))
        .await?;
    let error = refused
        .err()
        .context("verify-full accepted a certificate from another CA")?;
    ensure!(
        error.as_db_error().is_none(),
        "expected a TLS failure, got a server error: {error:?}"
    );
    Ok(())
}

/// SCRAM-SHA-256-PLUS (channel binding required) over verify-full TLS, from tokio-postgres and
/// from psql; the database connection behind the session is encrypted too.
async fn scram_with_channel_binding_over_tls(target: &Target) -> Result<()> {
    let options = ConnectOptions {
        channel_binding: ChannelBinding::Require,
        ..ConnectOptions::app("t-scram-plus")
    };
    let session = target.connect(&app_login(), &options).await?;
    ensure!(
        upstream_ssl(&session).await?,
        "the database connection is not encrypted"
    );
    let who: String = session.query_one("SELECT current_user", &[]).await?.get(0);
    ensure!(who == fixtures::APP_ROLE);

    let run = psql(
        target,
        &app_login(),
        "verify-full",
        &[
            "-A",
            "-t",
            "-d",
            &target.conninfo(
                &app_login(),
                "verify-full",
                &[("channel_binding", "require")],
            ),
            "-c",
            "SELECT current_user, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
        ],
        &std::env::temp_dir(),
        None,
    )?
    .ensure_success()?;
    ensure!(
        run.stdout_text().trim() == format!("{}|t", fixtures::APP_ROLE),
        "psql printed {:?}",
        run.stdout_text()
    );
    Ok(())
}

/// A SCRAM user is offered SCRAM-SHA-256 (and -PLUS only over TLS, as libpq demands); an md5
/// user is asked for md5. The raw client verifies the server's SCRAM signature.
async fn each_user_is_asked_for_its_mechanism(target: &Target) -> Result<()> {
    let addr = addr_of(target)?;
    let mut plain = RawConnection::connect(addr).await?;
    match plain.login(&app_login(), &[]).await? {
        Startup::Ready {
            sasl_mechanisms, ..
        } => ensure!(
            sasl_mechanisms == ["SCRAM-SHA-256"],
            "over plain TCP the offer must be exactly SCRAM-SHA-256: {sasl_mechanisms:?}"
        ),
        Startup::Refused(e) => bail!("refused: {}", e.describe()),
    }

    let config = client_config(&ServerCheck::None, None)?;
    let mut tls = RawConnection::connect(addr)
        .await?
        .start_tls(config, "localhost")
        .await?;
    match tls.login(&app_login(), &[]).await? {
        Startup::Ready {
            sasl_mechanisms, ..
        } => ensure!(
            sasl_mechanisms.contains(&"SCRAM-SHA-256-PLUS".to_string())
                && sasl_mechanisms.contains(&"SCRAM-SHA-256".to_string()),
            "over TLS both SCRAM mechanisms must be offered: {sasl_mechanisms:?}"
        ),
        Startup::Refused(e) => bail!("refused: {}", e.describe()),
    }

    let mut md5 = RawConnection::connect(addr).await?;
    let login = md5_login();
    md5.send(&frontend::startup(&[
        ("user", &login.user),
        ("database", &login.database),
    ]))
    .await?;
    let request = md5
        .read_message(Duration::from_secs(10))
        .await?
        .context("closed")?;
    ensure!(
        request.auth_code() == Some(5),
        "an md5 user must be asked for md5, got {}",
        request.describe()
    );
    let salt = request.body.get(4..8).context("no salt")?;
    md5.send(&frontend::password(&warden_tests::pg::md5_response(
        &login.user,
        &login.password,
        salt,
    )))
    .await?;
    let messages = md5.read_until(b'Z', Duration::from_secs(10)).await?;
    ensure!(
        messages.iter().any(|m| m.auth_code() == Some(0)),
        "no AuthenticationOk after the md5 response"
    );
    let session = target
        .connect(&md5_login(), &ConnectOptions::app("t-md5"))
        .await?;
    ensure!(upstream_ssl(&session).await?);
    Ok(())
}

/// A wrong password: ErrorResponse 28P01, and then the connection is closed with nothing
/// more (for SCRAM and md5 users, and as tokio-postgres sees it).
async fn a_wrong_password_is_refused_and_the_connection_closed(target: &Target) -> Result<()> {
    let addr = addr_of(target)?;
    for login in [app_login(), md5_login()] {
        let wrong = login.with_password("definitely not it");
        let mut raw = RawConnection::connect(addr).await?;
        match raw.startup(&wrong, &[]).await? {
            Startup::Refused(error) => ensure!(
                error.sqlstate().as_deref() == Some("28P01"),
                "{}: {}",
                login.user,
                error.describe()
            ),
            Startup::Ready { .. } => bail!("{} logged in with a wrong password", login.user),
        }
        let closed = raw.read_until_closed(Duration::from_secs(10)).await?;
        ensure!(
            closed.messages.is_empty() && closed.trailing.is_empty(),
            "after the failed login the server sent {:?}",
            closed.messages
        );
    }
    let refused = target
        .try_connect(
            &app_login().with_password("nope"),
            &ConnectOptions::app("t-wrong"),
        )
        .await?;
    ensure!(refused.err().as_ref().and_then(sqlstate) == Some("28P01"));
    Ok(())
}

/// A user that does not exist gets an authentication error (class 28), then the connection
/// closes.
async fn an_unknown_user_is_refused_cleanly(target: &Target) -> Result<()> {
    let ghost = warden_tests::pg::Login {
        user: unique_name("ghost"),
        password: "whatever".into(),
        database: fixtures::APP_DATABASE.into(),
    };
    let mut raw = RawConnection::connect(addr_of(target)?).await?;
    match raw.startup(&ghost, &[]).await? {
        Startup::Refused(error) => {
            let code = error.sqlstate().unwrap_or_default();
            ensure!(
                code == "28P01" || code == "28000",
                "unknown user: {}",
                error.describe()
            );
        }
        Startup::Ready { .. } => bail!("an unknown user logged in"),
    }
    raw.read_until_closed(Duration::from_secs(10)).await?;
    Ok(())
}

/// GSSENCRequest is answered with the single byte 'N', after which the same connection goes
/// on with a plain startup, or with SSLRequest and TLS (libpq's gssencmode=prefer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gssenc_request_is_refused_with_n() -> Result<()> {
    let warden = fixtures::warden()?;
    let target = warden.target("main")?;
    warden
        .watch(async {
            let addr = addr_of(&target)?;
            let mut raw = RawConnection::connect(addr).await?;
            raw.send(&frontend::gssenc_request()).await?;
            ensure!(
                raw.read_byte(Duration::from_secs(10)).await? == Some(b'N'),
                "GSSENCRequest was not answered with 'N'"
            );
            raw.login(&app_login(), &[]).await?;
            let rows = raw.simple_query("SELECT 'after gss'").await?;
            ensure!(RawConnection::rows_of(&rows) == [[Some("after gss".to_string())]]);

            let mut raw = RawConnection::connect(addr).await?;
            raw.send(&frontend::gssenc_request()).await?;
            ensure!(raw.read_byte(Duration::from_secs(10)).await? == Some(b'N'));
            let config = client_config(
                &ServerCheck::VerifyFull {
                    ca: target.ca_cert.clone(),
                },
                None,
            )?;
            let mut tls = raw.start_tls(config, "127.0.0.1").await?;
            tls.login(&app_login(), &[]).await?;
            tls.simple_query("SELECT 1").await?;
            Ok(())
        })
        .await
}

/// An upstream in front of the shared cluster with the given TLS settings.
fn upstream(
    name: &str,
    server_mode: &str,
    ca: Option<std::path::PathBuf>,
    server_name: Option<&str>,
) -> Result<UpstreamSpec> {
    let mut spec = fixtures::main_upstream()?;
    spec.name = name.to_string();
    spec.server_tls.mode = server_mode.to_string();
    spec.server_tls.ca = ca;
    spec.server_tls.server_name = server_name.map(str::to_string);
    Ok(spec)
}

/// Warden's TLS to the database: disable, require, verify-ca (which ignores the name) and
/// verify-full (by name and by IP) connect, and the database sees TLS exactly when asked for;
/// verify-full with a wrong name or an untrusted CA fails that session with a clear error
/// while warden stays up. Client-side policies: `require` refuses plaintext, `disable`
/// answers SSLRequest with 'N'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_tls_modes_and_client_tls_policies() -> Result<()> {
    let pg = fixtures::pg()?;
    let pki = fixtures::pki()?;
    let right_ca = Some(pg.ca_cert().to_path_buf());
    let mut config = WardenConfig::new(upstream(
        "vfull_db",
        "verify-full",
        right_ca.clone(),
        Some("localhost"),
    )?);
    config
        .upstreams
        .push(upstream("plain_db", "disable", None, None)?);
    config
        .upstreams
        .push(upstream("req_db", "require", None, None)?);
    config.upstreams.push(upstream(
        "vca_db",
        "verify-ca",
        right_ca.clone(),
        Some("wrong.example"),
    )?);
    config.upstreams.push(upstream(
        "vfull_ip",
        "verify-full",
        right_ca.clone(),
        Some("127.0.0.1"),
    )?);
    config.upstreams.push(upstream(
        "bad_name",
        "verify-full",
        right_ca.clone(),
        Some("wrong.example"),
    )?);
    config.upstreams.push(upstream(
        "bad_ca",
        "verify-full",
        Some(pki.stranger_ca_file()),
        Some("localhost"),
    )?);
    let mut client_require = upstream(
        "client_req",
        "verify-full",
        right_ca.clone(),
        Some("localhost"),
    )?;
    client_require.client_tls.mode = "require".into();
    config.upstreams.push(client_require);
    let mut client_disable = upstream("client_off", "verify-full", right_ca, Some("localhost"))?;
    client_disable.client_tls.mode = "disable".into();
    config.upstreams.push(client_disable);
    let warden = Warden::start(config)?;
    warden
        .watch(async {
            for (name, encrypted) in [
                ("vfull_db", true),
                ("plain_db", false),
                ("req_db", true),
                ("vca_db", true),
                ("vfull_ip", true),
            ] {
                let session = warden
                    .target(name)?
                    .connect(&app_login(), &ConnectOptions::app("t-upstream-tls"))
                    .await
                    .with_context(|| format!("upstream {name}"))?;
                ensure!(
                    upstream_ssl(&session).await? == encrypted,
                    "upstream {name}: database connection encrypted should be {encrypted}"
                );
            }
            for name in ["bad_name", "bad_ca"] {
                let refused = warden
                    .target(name)?
                    .try_connect(&app_login(), &ConnectOptions::app("t-upstream-bad"))
                    .await?;
                let error = refused.err().with_context(|| {
                    format!("upstream {name}: an unverifiable database was used")
                })?;
                let db = error.as_db_error().with_context(|| {
                    format!("upstream {name}: the client got no ErrorResponse, only {error:?}")
                })?;
                let message = db.message().to_lowercase();
                ensure!(
                    db.code().code().starts_with("08")
                        && (message.contains("certificate") || message.contains("tls")),
                    "upstream {name}: the error should be a connection error (08xxx) naming the \
                     certificate problem, got {} {:?}",
                    db.code().code(),
                    db.message()
                );
            }
            ensure!(warden.is_running() && warden.healthz()? == 200);
            warden
                .target("vfull_db")?
                .connect(&app_login(), &ConnectOptions::app("t-after-bad"))
                .await?;

            // client_tls = require: plaintext is refused, TLS works.
            let required = warden.target("client_req")?;
            let plain = required
                .try_connect(
                    &app_login(),
                    &ConnectOptions::app("t-req").tls(ClientTls::Disable),
                )
                .await?;
            let error = plain
                .err()
                .context("plaintext accepted where TLS is required")?;
            ensure!(
                error.as_db_error().is_some(),
                "no ErrorResponse for plaintext: {error:?}"
            );
            required
                .connect(&app_login(), &ConnectOptions::app("t-req"))
                .await?;

            // client_tls = disable: SSLRequest gets 'N', then plaintext goes on.
            let mut raw = RawConnection::connect(addr_of(&warden.target("client_off")?)?).await?;
            raw.send(&frontend::ssl_request()).await?;
            ensure!(raw.read_byte(Duration::from_secs(10)).await? == Some(b'N'));
            raw.login(&app_login(), &[]).await?;
            Ok(())
        })
        .await
}

/// With a client CA configured, a certificate it signed is accepted and its subject is in the
/// session's audit records; a certificate from another CA is refused in the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_checked_and_audited() -> Result<()> {
    let pki = fixtures::pki()?;
    let mut spec = fixtures::main_upstream()?;
    spec.client_tls.client_ca = true;
    let warden = Warden::start(WardenConfig::new(spec))?;
    let target = warden.target("main")?;
    warden
        .watch(async {
            let common_name = unique_name("client-cert");
            let app = unique_name("t-mtls");
            let good = ConnectOptions {
                client_cert: Some(pki.client_cert(&common_name, false)?),
                ..ConnectOptions::app(&app)
            };
            let session = target.connect(&app_login(), &good).await?;
            session.simple_query("SELECT 'with a certificate'").await?;
            drop(session);
            let records = warden.wait_for_audit(
                &["--program", &app],
                Duration::from_secs(20),
                |records| records.iter().any(|r| r.event() == "statement"),
            )?;
            for record in &records {
                let subject = record.str("tls_subject").unwrap_or_default();
                ensure!(
                    subject.contains(&common_name),
                    "the audit record does not carry the certificate subject: {}",
                    record.pretty()
                );
            }

            let stranger = ConnectOptions {
                client_cert: Some(pki.client_cert(&unique_name("stranger"), true)?),
                ..ConnectOptions::app("t-mtls-stranger")
            };
            let refused = target.try_connect(&app_login(), &stranger).await?;
            let error = refused
                .err()
                .context("a certificate from an untrusted CA was accepted")?;
            ensure!(
                error.as_db_error().is_none(),
                "the stranger certificate should fail the TLS handshake, not the login: {error:?}"
            );
            ensure!(warden.readyz()? == 200);
            Ok(())
        })
        .await
}

/// Verifiers fetched from the database (`[upstream.auth.query]`), for users the users file does
/// not list: warden logs in as a dedicated auth user whose password comes from an environment
/// variable (never a file), reads the SCRAM verifier from `pg_authid`, and authenticates the
/// client against it. A wrong password is still refused, a user the database does not know
/// still fails like an unknown user, and a user added to the database after warden started
/// can log in without touching warden's configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifiers_come_from_the_auth_query() -> Result<()> {
    let pg = fixtures::pg()?;
    let auth = pg.create_role("auth", warden_tests::pg::PasswordAuth::Scram, "SUPERUSER")?;
    let mut spec = fixtures::main_upstream()?;
    spec.name = "by_query".into();
    // Only the auth user is in the file: every other verifier must come from the query.
    spec.users = pg.users_file(&[&auth.name])?;
    let mut config = WardenConfig::new(spec);
    config.extra_toml = format!(
        "[upstream.auth.query]\nuser = {}\npassword_env = \"WARDEN_TEST_AUTH_PASSWORD\"\ndatabase = \"postgres\"\n",
        warden_tests::warden::toml_string(&auth.name)
    );
    config.env = vec![("WARDEN_TEST_AUTH_PASSWORD".into(), auth.password.clone())];
    let warden = Warden::start(config)?;
    warden
        .watch(async {
            let target = warden.target("by_query")?;
            let session = target
                .connect(&app_login(), &ConnectOptions::app("t-authq"))
                .await
                .context("a user known only to the database could not log in")?;
            let one: i32 = session.query_one("SELECT 1", &[]).await?.get(0);
            ensure!(one == 1);
            drop(session);

            let refused = target
                .try_connect(
                    &app_login().with_password("wrong"),
                    &ConnectOptions::app("t-authq"),
                )
                .await?;
            ensure!(
                refused.err().as_ref().and_then(sqlstate) == Some("28P01"),
                "a wrong password was not refused with 28P01"
            );

            let late = pg.create_role("late", warden_tests::pg::PasswordAuth::Scram, "")?;
            let session = target
                .connect(
                    &late.login(fixtures::APP_DATABASE),
                    &ConnectOptions::app("t-authq"),
                )
                .await
                .context("a user created after warden started could not log in")?;
            let who: String = session
                .query_one("SELECT current_user::text", &[])
                .await?
                .get(0);
            ensure!(who == late.name, "logged in as {who}");

            let ghost = warden_tests::pg::Login {
                user: unique_name("ghost"),
                password: "whatever".into(),
                database: fixtures::APP_DATABASE.into(),
            };
            let refused = target
                .try_connect(&ghost, &ConnectOptions::app("t-authq"))
                .await?;
            let error = refused.err();
            let code = error.as_ref().and_then(sqlstate).unwrap_or_default();
            ensure!(code.starts_with("28"), "an unknown user got {code:?}");
            Ok(())
        })
        .await
}
