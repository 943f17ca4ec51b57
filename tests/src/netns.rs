//! A client host on the proxy's L2 segment: a network namespace joined by a veth pair.
//!
//! Warden reads a client's MAC address from the kernel's neighbour table, which only has entries
//! for hosts on the same segment, never for loopback clients. A [`NetNamespace`] is such a host:
//! the root namespace gets `10.x.y.1/30` on one end of a veth pair, the namespace `10.x.y.2/30`
//! on the other, and programs run inside it with `ip netns exec`. Everything is removed when the
//! value is dropped (also while a failing test unwinds); namespaces left by a killed test
//! process are removed by the next one. Needs root and iproute2.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Once;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::tools::{self, ToolRun};

/// The prefix of every namespace the harness creates; the owner's pid follows.
const PREFIX: &str = "wardentest-";

/// A network namespace with a veth link to the root namespace.
#[derive(Debug)]
pub struct NetNamespace {
    /// The namespace's name.
    pub name: String,
    /// The veth end in the root namespace.
    pub host_interface: String,
    /// The veth end inside the namespace.
    pub namespace_interface: String,
    /// The root namespace's address on the link.
    pub host_ip: Ipv4Addr,
    /// The namespace's address on the link.
    pub namespace_ip: Ipv4Addr,
}

impl NetNamespace {
    /// Creates the namespace and the link, with addresses unique to this process and call.
    pub fn create() -> Result<NetNamespace> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale);
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        // A /30 inside 10.64.0.0/10, chosen by pid and counter.
        let block = ((pid.wrapping_mul(16).wrapping_add(n)) % (1 << 20)) * 4;
        let base = u32::from(Ipv4Addr::new(10, 64, 0, 0)) + block;
        let short = format!("{:x}", (pid % 0xFFFFF) * 16 + (n % 16));
        let ns = NetNamespace {
            name: format!("{PREFIX}{pid}-{n}"),
            host_interface: format!("wth{short}"),
            namespace_interface: format!("wtn{short}"),
            host_ip: Ipv4Addr::from(base + 1),
            namespace_ip: Ipv4Addr::from(base + 2),
        };
        // From here on, Drop cleans up whatever was created.
        ns.ip(&["netns", "add", &ns.name])?;
        ns.ip(&[
            "link",
            "add",
            &ns.host_interface,
            "type",
            "veth",
            "peer",
            "name",
            &ns.namespace_interface,
        ])?;
        ns.ip(&["link", "set", &ns.namespace_interface, "netns", &ns.name])?;
        ns.ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_ip),
            "dev",
            &ns.host_interface,
        ])?;
        ns.ip(&["link", "set", &ns.host_interface, "up"])?;
        ns.ip(&[
            "netns",
            "exec",
            &ns.name,
            "ip",
            "addr",
            "add",
            &format!("{}/30", ns.namespace_ip),
            "dev",
            &ns.namespace_interface,
        ])?;
        ns.ip(&[
            "netns",
            "exec",
            &ns.name,
            "ip",
            "link",
            "set",
            &ns.namespace_interface,
            "up",
        ])?;
        ns.ip(&["netns", "exec", &ns.name, "ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The MAC address of the namespace's interface (`aa:bb:cc:dd:ee:ff`).
    pub fn namespace_mac(&self) -> Result<String> {
        let run = self.run(
            "cat",
            &[&format!(
                "/sys/class/net/{}/address",
                self.namespace_interface
            )],
            &[],
        )?;
        let run = run.ensure_success()?;
        Ok(run.stdout_text().trim().to_ascii_lowercase())
    }

    /// A command that runs `program ARGS...` inside the namespace with `env`.
    pub fn command(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.name, program])
            .args(args);
        for (k, v) in env {
            command.env(k, v);
        }
        command
    }

    /// Runs `program ARGS...` inside the namespace.
    pub fn run(&self, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<ToolRun> {
        tools::run(self.command(program, args, env), Duration::from_secs(120))
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        ip(args)
    }
}

impl Drop for NetNamespace {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both; deleting the namespace would too.
        let _ = ip(&["link", "del", &self.host_interface]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let mut command = Command::new("ip");
    command.args(args);
    let run = tools::run(command, Duration::from_secs(30))
        .context("cannot run `ip` (install iproute2; network namespaces also need root)")?;
    if !run.success() {
        bail!("ip {} failed\n{}", args.join(" "), run.describe());
    }
    Ok(())
}

/// Deletes namespaces whose owning process is gone.
fn sweep_stale() {
    let mut command = Command::new("ip");
    command.args(["netns", "list"]);
    let Ok(run) = tools::run(command, Duration::from_secs(30)) else {
        return;
    };
    for line in run.stdout_text().lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
