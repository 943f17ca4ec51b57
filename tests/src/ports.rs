//! Free TCP ports for servers the harness starts.
//!
//! A server configured with a port must be given one before it binds, so there is a window in
//! which someone else can take it. Ports handed out here are chosen below the kernel's ephemeral
//! range (where outgoing connections take their local ports from), are never handed out twice
//! by one process, and are checked free on the wildcard address; servers that still lose the
//! race report "address in use", and their starters retry with fresh ports.

use std::collections::HashSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use anyhow::{Result, bail};

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port that is free right now on every local address.
pub fn free_port() -> Result<u16> {
    let (low, high) = candidate_range();
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let span = u32::from(high - low);
    let mut seed = random_u32();
    for _ in 0..200 {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let port = low + ((seed >> 8) % span) as u16;
        if handed_out.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    bail!("no free TCP port found in {low}..{high} after 200 tries")
}

/// Ports between 15000 and the start of the ephemeral range (32768 by default).
fn candidate_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    if ephemeral_low > 20000 {
        (15000, ephemeral_low)
    } else {
        (ephemeral_low.saturating_sub(10000).max(1024), ephemeral_low)
    }
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).is_err() {
        return std::process::id();
    }
    u32::from_le_bytes(bytes)
}
