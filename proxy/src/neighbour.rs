//! The client's MAC address, from the kernel's neighbour (ARP) table.
//!
//! A client on the same L2 segment as warden has an entry in the neighbour table: the kernel
//! resolved it to answer the TCP handshake. A client behind a router has none (the table holds
//! the router), so the lookup honestly returns nothing. Only IPv4 (and IPv4-mapped IPv6)
//! addresses are looked up, through `/proc/net/arp`; native IPv6 neighbours would need a
//! netlink query, which warden does not make yet.

use std::net::{IpAddr, Ipv4Addr};

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddress(pub [u8; 6]);

impl std::fmt::Display for MacAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl std::str::FromStr for MacAddress {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or(())?;
            if part.len() != 2 {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        if parts.next().is_some() {
            return Err(());
        }
        Ok(MacAddress(out))
    }
}

/// The MAC address of `ip` if the kernel has a complete neighbour entry for it.
pub fn lookup(ip: IpAddr) -> Option<MacAddress> {
    let v4 = match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(v6) => v6.to_ipv4_mapped()?,
    };
    if v4.is_loopback() {
        return None;
    }
    let table = std::fs::read_to_string("/proc/net/arp").ok()?;
    find_in_arp_table(&table, v4)
}

/// Finds `ip` in the text of `/proc/net/arp`:
/// `IP address  HW type  Flags  HW address  Mask  Device`.
fn find_in_arp_table(table: &str, ip: Ipv4Addr) -> Option<MacAddress> {
    const ATF_COM: u32 = 0x2; // the entry is complete
    table.lines().skip(1).find_map(|line| {
        let mut cols = line.split_whitespace();
        let addr: Ipv4Addr = cols.next()?.parse().ok()?;
        let _hw_type = cols.next()?;
        let flags = u32::from_str_radix(cols.next()?.trim_start_matches("0x"), 16).ok()?;
        let mac: MacAddress = cols.next()?.parse().ok()?;
        (addr == ip && flags & ATF_COM != 0 && mac.0 != [0; 6]).then_some(mac)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str =
        "IP address       HW type     Flags       HW address            Mask     Device
10.0.0.2         0x1         0x2         52:54:00:ab:cd:ef     *        eth0
10.0.0.3         0x1         0x0         00:00:00:00:00:00     *        eth0
10.0.0.4         0x1         0x2         00:00:00:00:00:00     *        eth0
";

    #[test]
    fn complete_entries_are_found() {
        let mac = find_in_arp_table(TABLE, "10.0.0.2".parse().unwrap()).unwrap();
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:ef");
        assert_eq!(find_in_arp_table(TABLE, "10.0.0.3".parse().unwrap()), None);
        assert_eq!(find_in_arp_table(TABLE, "10.0.0.4".parse().unwrap()), None);
        assert_eq!(find_in_arp_table(TABLE, "10.0.0.9".parse().unwrap()), None);
    }

    #[test]
    fn loopback_has_no_mac() {
        assert_eq!(lookup("127.0.0.1".parse().unwrap()), None);
        assert_eq!(lookup("::1".parse().unwrap()), None);
    }
}
