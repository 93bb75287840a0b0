//! The text of one frame, from the state: header lines, the table's titles, widths and
//! cells, and the footer. Everything but the drawing itself (`draw`), so what a person
//! sees is tested as plain strings.
use lb_config::format_duration;

use super::keys::Mode;
use super::order::{self, SortKey};
use super::rates::{self, Row};
use super::state::State;
use super::{filter, units};

pub const TITLES: [&str; 13] = [
    "SERVICE", "VIP", "BACKEND", "STATE", "HEALTH", "CIRCUIT", "WEIGHT", "NEW/s", "PKTS/s", "BYTES/s", "NEW", "PKTS",
    "BYTES",
];

/// The keys, always on screen.
const KEYS: &str = "q quit  s sort  n new/s  p pkts/s  b bytes/s  a address  r reverse  / filter";

#[derive(Debug, Clone, PartialEq)]
pub struct Screen {
    pub header: Vec<String>,
    /// Shown apart (in red): the last refresh failed.
    pub error: Option<String>,
    /// Which of `TITLES` the rows are sorted by.
    pub sorted_column: usize,
    pub widths: Vec<u16>,
    pub rows: Vec<Vec<String>>,
    /// Shown instead of rows when there are none.
    pub empty: Option<String>,
    pub footer: String,
}

pub fn column_of(key: SortKey) -> usize {
    match key {
        SortKey::Service => 0,
        SortKey::Address => 2,
        SortKey::NewFlows => 7,
        SortKey::Packets => 8,
        SortKey::Bytes => 9,
    }
}

/// Space between two columns.
pub const COLUMN_SPACING: u16 = 2;

/// The columns a narrow terminal leaves out, first to last (indexes into `TITLES`): the
/// totals, then what the rates do not need. BACKEND and NEW/s always stay.
const LEFT_OUT_FIRST: [usize; 11] = [12, 11, 10, 1, 5, 6, 3, 4, 9, 8, 0];

/// The columns that fit in `available` cells, in their order: all when they fit,
/// otherwise without the least needed ones (a squeezed column would be unreadable).
pub fn visible_columns(widths: &[u16], available: u16) -> Vec<usize> {
    let mut kept: Vec<usize> = (0..widths.len()).collect();
    let width = |kept: &[usize]| -> u32 {
        kept.iter().map(|&i| u32::from(widths[i])).sum::<u32>()
            + u32::from(COLUMN_SPACING) * kept.len().saturating_sub(1) as u32
    };
    for drop in LEFT_OUT_FIRST {
        if width(&kept) <= u32::from(available) {
            break;
        }
        kept.retain(|&i| i != drop);
    }
    kept
}

/// A row's cells, in the order of `TITLES`.
pub fn cells(row: &Row) -> Vec<String> {
    let b = &row.backend;
    let r = &row.rates;
    vec![
        b.service.clone(),
        b.vip.clone(),
        b.address.clone(),
        b.state.clone(),
        b.health.clone(),
        b.circuit.clone(),
        b.weight.to_string(),
        units::count(r.new_flows),
        units::count(r.packets),
        units::bytes(r.bytes),
        units::count(Some(b.new_flows as f64)),
        units::count(b.packets.map(|p| p as f64)),
        units::bytes(Some(b.bytes as f64)),
    ]
}

/// Each column as wide as its title or its widest cell.
fn widths(rows: &[Vec<String>]) -> Vec<u16> {
    TITLES
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let widest = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
            u16::try_from(widest.max(t.len())).unwrap_or(u16::MAX)
        })
        .collect()
}

pub fn screen(state: &State) -> Screen {
    let all = state.last.as_ref().map(|now| rates::rows(state.prev.as_ref(), now)).unwrap_or_default();
    let mut shown = filter::apply(all.clone(), state.view.shown_filter());
    order::sort(&mut shown, state.view.sort, state.view.reverse);
    let rows: Vec<Vec<String>> = shown.iter().map(cells).collect();
    let empty = match (&state.last, rows.is_empty(), all.is_empty()) {
        (None, _, _) => Some("waiting for the first sample".to_string()),
        (Some(_), true, true) => Some("no backends".to_string()),
        (Some(_), true, false) => Some(format!("no backend matches \"{}\"", state.view.shown_filter())),
        _ => None,
    };
    Screen {
        header: header(state, &all, shown.len()),
        error: state.error.as_ref().map(|e| error_line(state, e)),
        sorted_column: column_of(state.view.sort),
        widths: widths(&rows),
        rows,
        empty,
        footer: footer(state),
    }
}

fn header(state: &State, all: &[Row], shown: usize) -> Vec<String> {
    let every = format_duration(state.interval);
    let Some(last) = &state.last else {
        return vec![format!("lb top  every {every}")];
    };
    let t = rates::totals(all);
    vec![
        format!(
            "lb top  path {}  {}  every {every}  backends {} (shown {shown})",
            last.path,
            units::clock(last.wall),
            all.len()
        ),
        format!(
            "total/s  new flows {}  packets {}  bytes {}",
            units::count(t.new_flows),
            units::count(t.packets),
            units::bytes(t.bytes)
        ),
        drops_line(state, last),
    ]
}

/// Dropped packets per second, the busiest reasons first (the XDP path's counters).
fn drops_line(state: &State, last: &super::sample::Sample) -> String {
    let Some(drops) = rates::drops(state.prev.as_ref(), last) else {
        return if last.path == "proxy" {
            "drops/s  - (the proxy path counts no packet drops; its refusals are on /metrics)".into()
        } else {
            // The API answered for a daemon on the XDP path: its counters (the backends'
            // too) are only in the maps it pinned, elsewhere than --pin-path.
            format!("drops/s  - (path {}: the counters are in its pinned maps; is --pin-path its pin_path?)", last.path)
        };
    };
    if drops.values().all(Option::is_none) {
        return "drops/s  -".into();
    }
    let total: f64 = drops.values().flatten().sum();
    let mut busy: Vec<(&String, f64)> =
        drops.iter().filter_map(|(r, v)| v.filter(|v| *v > 0.0).map(|v| (r, v))).collect();
    busy.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    let reasons: Vec<String> = busy.iter().map(|(r, v)| format!("{r} {}", units::count(Some(*v)))).collect();
    if reasons.is_empty() {
        "drops/s  0".into()
    } else {
        format!("drops/s  {}: {}", units::count(Some(total)), reasons.join(", "))
    }
}

fn error_line(state: &State, error: &str) -> String {
    let since = state.last.as_ref().map_or(String::new(), |l| format!("; rows as of {}", units::clock(l.wall)));
    // What `lb top` does about it first: a long error is cut at its end.
    format!("error (retrying every {}{since}): {error}", format_duration(state.interval))
}

fn footer(state: &State) -> String {
    let view = &state.view;
    match &view.mode {
        Mode::Prompt(text) => format!("filter: {text}_   Enter keep  Esc clear"),
        Mode::Browse => {
            // Rates sort busiest first, names A to Z; `r` turns either around.
            let busiest_first = !matches!(view.sort, SortKey::Service | SortKey::Address);
            let direction = if busiest_first != view.reverse { "descending" } else { "ascending" };
            let filter = if view.filter.is_empty() { String::new() } else { format!("  filter \"{}\"", view.filter) };
            format!("{KEYS}   sort {} {direction}{filter}", view.sort.name())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::top::keys::Key;
    use crate::cli::top::rates::tests::{backend, sample};
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    /// Two samples a second apart: web's two backends busy, api's idle.
    fn state() -> State {
        let t0 = Instant::now();
        let mut s = State::new(Duration::from_secs(1));
        let mut first = sample(
            "xdp",
            t0,
            vec![
                backend("web", "172.20.0.11:80", 10, Some(100), 10_000),
                backend("web", "172.20.0.12:80", 10, Some(100), 10_000),
                backend("api", "[fd00:20::13]:80", 0, Some(0), 0),
            ],
        );
        first.drops = Some(BTreeMap::from([("no_backend".into(), 5), ("ratelimited".into(), 0)]));
        let mut second = sample(
            "xdp",
            t0 + Duration::from_secs(1),
            vec![
                backend("web", "172.20.0.11:80", 14, Some(140), 14_096),
                backend("web", "172.20.0.12:80", 30, Some(300), 2_110_000),
                backend("api", "[fd00:20::13]:80", 0, Some(0), 0),
            ],
        );
        second.drops = Some(BTreeMap::from([("no_backend".into(), 8), ("ratelimited".into(), 0)]));
        s.update(Ok(first));
        s.update(Ok(second));
        s
    }

    fn column(screen: &Screen, i: usize) -> Vec<&str> {
        screen.rows.iter().map(|r| r[i].as_str()).collect()
    }

    #[test]
    fn rows_carry_rates_and_totals_in_human_units() {
        let s = screen(&state());
        assert_eq!(column(&s, 2), ["172.20.0.12:80", "172.20.0.11:80", "[fd00:20::13]:80"], "busiest first");
        assert_eq!(
            s.rows[0],
            [
                "web",
                "10.0.0.1:80",
                "172.20.0.12:80",
                "ready",
                "up",
                "closed",
                "1",
                "20",
                "200",
                "2.0 MiB",
                "30",
                "300",
                "2.0 MiB"
            ]
        );
        assert_eq!(&s.rows[1][7..10], ["4", "40", "4.0 KiB"]);
        assert_eq!(&s.rows[2][7..10], ["0", "0", "0 B"]);
        assert_eq!(s.widths[2] as usize, "[fd00:20::13]:80".len());
        assert_eq!(s.widths[6] as usize, "WEIGHT".len());
        assert_eq!(s.sorted_column, 7);
        assert_eq!(s.empty, None);
    }

    #[test]
    fn a_narrow_terminal_leaves_out_the_totals_first_and_keeps_the_rates() {
        let widths = [7, 17, 16, 5, 6, 7, 6, 5, 6, 9, 5, 6, 9];
        let all: Vec<usize> = (0..13).collect();
        assert_eq!(visible_columns(&widths, 200), all);
        assert_eq!(visible_columns(&widths, 128), all, "exactly wide enough");
        assert_eq!(visible_columns(&widths, 127), (0..12).collect::<Vec<_>>());
        assert_eq!(visible_columns(&widths, 80), [0, 2, 3, 4, 6, 7, 8, 9]);
        assert_eq!(visible_columns(&widths, 10), [2, 7], "BACKEND and NEW/s stay, however narrow");
        assert_eq!(visible_columns(&widths, 0), [2, 7]);
    }

    #[test]
    fn the_header_names_the_path_totals_and_drops() {
        let s = screen(&state());
        assert!(
            s.header[0].starts_with("lb top  path xdp  ")
                && s.header[0].contains("UTC  every 1s  backends 3 (shown 3)"),
            "{:?}",
            s.header
        );
        assert_eq!(s.header[1], "total/s  new flows 24  packets 240  bytes 2.0 MiB");
        assert_eq!(s.header[2], "drops/s  3: no_backend 3");
        assert_eq!(s.error, None);
    }

    #[test]
    fn the_first_frame_shows_dashes_and_the_proxy_no_drops() {
        let mut st = State::new(Duration::from_millis(500));
        assert_eq!(screen(&st).empty.as_deref(), Some("waiting for the first sample"));
        assert_eq!(screen(&st).header, ["lb top  every 500ms"]);
        st.update(Ok(sample("proxy", Instant::now(), vec![backend("web", "10.0.1.1:80", 3, None, 10)])));
        let s = screen(&st);
        assert_eq!(&s.rows[0][7..], ["-", "-", "-", "3", "-", "10 B"]);
        assert_eq!(s.header[1], "total/s  new flows -  packets -  bytes -");
        assert!(s.header[2].starts_with("drops/s  - (the proxy path"), "{}", s.header[2]);
    }

    #[test]
    fn an_xdp_daemon_seen_through_its_api_points_to_the_pin_path() {
        let mut st = State::new(Duration::from_secs(1));
        st.update(Ok(sample("xdp", Instant::now(), vec![backend("web", "10.0.1.1:80", 0, None, 0)])));
        let s = screen(&st);
        assert!(s.header[2].contains("is --pin-path its pin_path?"), "{}", s.header[2]);
    }

    #[test]
    fn keys_sort_and_filter_the_rows() {
        let mut st = state();
        st.view.press(Key::Char('a'));
        assert_eq!(column(&screen(&st), 2), ["172.20.0.11:80", "172.20.0.12:80", "[fd00:20::13]:80"]);
        assert!(screen(&st).footer.ends_with("sort backend address ascending"), "{}", screen(&st).footer);
        st.view.press(Key::Char('r'));
        assert_eq!(column(&screen(&st), 2), ["[fd00:20::13]:80", "172.20.0.12:80", "172.20.0.11:80"]);
        assert!(screen(&st).footer.ends_with("sort backend address descending"), "{}", screen(&st).footer);
        for k in "/api".chars() {
            st.view.press(Key::Char(k));
        }
        let s = screen(&st);
        assert_eq!(column(&s, 0), ["api"], "filters as typed");
        assert_eq!(s.footer, "filter: api_   Enter keep  Esc clear");
        assert!(s.header[0].ends_with("backends 3 (shown 1)"), "{}", s.header[0]);
        st.view.press(Key::Enter);
        let s = screen(&st);
        assert_eq!(column(&s, 0), ["api"]);
        assert!(s.footer.starts_with(KEYS) && s.footer.ends_with("filter \"api\""), "{}", s.footer);
        for k in "/x".chars() {
            st.view.press(Key::Char(k));
        }
        assert_eq!(screen(&st).empty.as_deref(), Some("no backend matches \"apix\""));
        st.view.press(Key::Esc);
        assert_eq!(screen(&st).rows.len(), 3, "Esc clears the filter");
    }

    #[test]
    fn an_error_keeps_the_last_rows_and_says_it_retries() {
        let mut st = state();
        st.update(Err("nothing is pinned under /sys/fs/bpf/lb".into()));
        let s = screen(&st);
        assert_eq!(s.rows.len(), 3);
        let e = s.error.unwrap();
        assert!(e.starts_with("error (retrying every 1s; rows as of "), "{e}");
        assert!(e.ends_with(" UTC): nothing is pinned under /sys/fs/bpf/lb"), "{e}");
    }
}
