//! The table's order: by a rate (busiest first) or by name (alphabetical), either reversed.
//! Ties keep a fixed order (service, then backend address), so rows do not jump about
//! between refreshes.
use std::cmp::Ordering;
use std::net::SocketAddr;

use super::rates::Row;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    NewFlows,
    Packets,
    Bytes,
    Service,
    Address,
}

impl SortKey {
    /// The order `s` steps through.
    pub const CYCLE: [SortKey; 5] =
        [SortKey::NewFlows, SortKey::Packets, SortKey::Bytes, SortKey::Service, SortKey::Address];

    pub fn next(self) -> SortKey {
        let i = Self::CYCLE.iter().position(|k| *k == self).unwrap_or(0);
        Self::CYCLE[(i + 1) % Self::CYCLE.len()]
    }

    pub fn name(self) -> &'static str {
        match self {
            SortKey::NewFlows => "new flows/s",
            SortKey::Packets => "packets/s",
            SortKey::Bytes => "bytes/s",
            SortKey::Service => "service",
            SortKey::Address => "backend address",
        }
    }

    /// Rates sort busiest first; names from A to Z.
    fn descending(self) -> bool {
        matches!(self, SortKey::NewFlows | SortKey::Packets | SortKey::Bytes)
    }
}

/// An unknown rate (`-`) counts as less than any known one.
fn by_rate(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (a, b) => a.is_some().cmp(&b.is_some()),
    }
}

/// Addresses in numeric order (`10.0.0.9` before `10.0.0.10`, IPv4 before IPv6); any that
/// does not parse after those that do, by its text.
fn by_address(a: &str, b: &str) -> Ordering {
    match (a.parse::<SocketAddr>(), b.parse::<SocketAddr>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        (Err(_), Err(_)) => a.cmp(b),
    }
}

fn compare(key: SortKey, a: &Row, b: &Row) -> Ordering {
    let primary = match key {
        SortKey::NewFlows => by_rate(a.rates.new_flows, b.rates.new_flows),
        SortKey::Packets => by_rate(a.rates.packets, b.rates.packets),
        SortKey::Bytes => by_rate(a.rates.bytes, b.rates.bytes),
        SortKey::Service => a.backend.service.cmp(&b.backend.service),
        SortKey::Address => by_address(&a.backend.address, &b.backend.address),
    };
    let primary = if key.descending() { primary.reverse() } else { primary };
    primary
        .then_with(|| a.backend.service.cmp(&b.backend.service))
        .then_with(|| by_address(&a.backend.address, &b.backend.address))
}

pub fn sort(rows: &mut [Row], key: SortKey, reverse: bool) {
    rows.sort_by(|a, b| {
        let o = compare(key, a, b);
        if reverse {
            o.reverse()
        } else {
            o
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::top::rates::{tests::backend, Rates};

    fn row(service: &str, address: &str, new_flows: Option<f64>, packets: Option<f64>, bytes: Option<f64>) -> Row {
        Row { backend: backend(service, address, 0, Some(0), 0), rates: Rates { new_flows, packets, bytes } }
    }

    fn order(rows: &[Row]) -> Vec<String> {
        rows.iter().map(|r| format!("{}/{}", r.backend.service, r.backend.address)).collect()
    }

    fn rows() -> Vec<Row> {
        vec![
            row("web", "10.0.0.10:80", Some(5.0), Some(10.0), Some(900.0)),
            row("api", "[fd00::1]:80", None, None, None),
            row("web", "10.0.0.9:80", Some(20.0), Some(1.0), Some(100.0)),
            row("api", "10.0.0.9:80", Some(5.0), Some(30.0), Some(100.0)),
        ]
    }

    #[test]
    fn rates_sort_busiest_first_with_unknown_last_and_ties_by_name() {
        let mut r = rows();
        sort(&mut r, SortKey::NewFlows, false);
        assert_eq!(order(&r), ["web/10.0.0.9:80", "api/10.0.0.9:80", "web/10.0.0.10:80", "api/[fd00::1]:80"]);
        sort(&mut r, SortKey::Packets, false);
        assert_eq!(order(&r), ["api/10.0.0.9:80", "web/10.0.0.10:80", "web/10.0.0.9:80", "api/[fd00::1]:80"]);
        sort(&mut r, SortKey::Bytes, false);
        assert_eq!(order(&r), ["web/10.0.0.10:80", "api/10.0.0.9:80", "web/10.0.0.9:80", "api/[fd00::1]:80"]);
    }

    #[test]
    fn addresses_sort_as_numbers_and_names_alphabetically() {
        let mut r = rows();
        sort(&mut r, SortKey::Address, false);
        assert_eq!(order(&r), ["api/10.0.0.9:80", "web/10.0.0.9:80", "web/10.0.0.10:80", "api/[fd00::1]:80"]);
        sort(&mut r, SortKey::Service, false);
        assert_eq!(order(&r), ["api/10.0.0.9:80", "api/[fd00::1]:80", "web/10.0.0.9:80", "web/10.0.0.10:80"]);
    }

    #[test]
    fn reverse_turns_the_whole_order_around() {
        let mut forward = rows();
        sort(&mut forward, SortKey::Address, false);
        let mut backward = rows();
        sort(&mut backward, SortKey::Address, true);
        let mut expected = order(&forward);
        expected.reverse();
        assert_eq!(order(&backward), expected);
    }

    #[test]
    fn s_steps_through_every_key_and_back() {
        let mut k = SortKey::NewFlows;
        let mut seen = vec![k];
        for _ in 0..SortKey::CYCLE.len() {
            k = k.next();
            seen.push(k);
        }
        assert_eq!(&seen[..5], &SortKey::CYCLE);
        assert_eq!(seen[5], SortKey::NewFlows);
    }

    #[test]
    fn unparsable_addresses_go_after_real_ones() {
        assert_eq!(by_address("10.0.0.1:80", "zzz"), Ordering::Less);
        assert_eq!(by_address("b", "a"), Ordering::Greater);
    }
}
