//! The client's MAC address, when the client is on warden's L2 segment (PROXY-3).
//!
//! The client is psql running in a network namespace joined to the root namespace by a veth
//! pair; warden listens on the root end's address. The kernel's neighbour table then holds the
//! client's MAC, and every audit record of the session must carry it. Needs root and iproute2
//! (.ci/run installs it).

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Result, ensure};
use warden_tests::fixtures::{self, app_login};
use warden_tests::netns::NetNamespace;
use warden_tests::pg::{bin_dir, clear_libpq_env};
use warden_tests::scratch::unique_name;
use warden_tests::tools;
use warden_tests::warden::{Warden, WardenConfig, summarize};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_the_segment_is_audited_with_its_mac() -> Result<()> {
    let namespace = NetNamespace::create()?;
    let mut spec = fixtures::main_upstream()?;
    spec.listen_ip = IpAddr::V4(namespace.host_ip);
    let warden = Warden::start(WardenConfig::new(spec))?;
    warden
        .watch(async {
            let program = unique_name("mac");
            let target = warden.target("main")?;
            let conninfo =
                target.conninfo(&app_login(), "require", &[("application_name", &program)]);
            let psql = bin_dir()?.join("psql");
            let mut command = namespace.command(
                &psql.to_string_lossy(),
                &[
                    "-X",
                    "-A",
                    "-t",
                    "-d",
                    &conninfo,
                    "-c",
                    "SELECT current_user",
                ],
                &[("LC_ALL", "C")],
            );
            clear_libpq_env(&mut command);
            let run = tools::run(command, Duration::from_secs(60))?.ensure_success()?;
            ensure!(
                run.stdout_text().trim() == fixtures::APP_ROLE,
                "{}",
                run.describe()
            );

            let mac = namespace.namespace_mac()?;
            let records =
                warden.wait_for_audit(&["--program", &program], Duration::from_secs(30), |r| {
                    r.iter().any(|r| r.event() == "session_end")
                })?;
            ensure!(records.len() >= 3, "{}", summarize(&records));
            for record in &records {
                ensure!(
                    record.str("client_ip") == Some(namespace.namespace_ip.to_string().as_str()),
                    "client_ip should be {}:\n{}",
                    namespace.namespace_ip,
                    record.pretty()
                );
                ensure!(
                    record.str("client_mac").map(str::to_ascii_lowercase) == Some(mac.clone()),
                    "client_mac should be {mac}:\n{}",
                    record.pretty()
                );
            }
            Ok(())
        })
        .await
}
