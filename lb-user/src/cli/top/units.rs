//! Numbers as a person reads them at a glance in a narrow column: `1.2k`, `3.4M`,
//! `12.5 KiB`. A value that is not known yet (the first frame's rates, the proxy's packets)
//! is `-`.
use std::time::SystemTime;

const NOT_KNOWN: &str = "-";

/// A count or a count per second: `0`, `7.5`, `312`, `1.2k`, `45.0M`.
pub fn count(value: Option<f64>) -> String {
    let Some(v) = value else { return NOT_KNOWN.into() };
    if v == 0.0 {
        return "0".into();
    }
    let (scaled, suffix) = scale(v, 1000.0, &["", "k", "M", "G", "T", "P"]);
    if suffix.is_empty() {
        // Whole counts print whole; small rates keep a decimal, so 0.5/s is not `0`.
        if v.fract() == 0.0 || v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    } else {
        format!("{scaled:.1}{suffix}")
    }
}

/// Bytes or bytes per second, in binary units: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn bytes(value: Option<f64>) -> String {
    let Some(v) = value else { return NOT_KNOWN.into() };
    let (scaled, suffix) = scale(v, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"]);
    if suffix == "B" {
        format!("{v:.0} B")
    } else {
        format!("{scaled:.1} {suffix}")
    }
}

/// `value` divided by `step` until it is under `step` (or the units run out).
fn scale<'a>(value: f64, step: f64, units: &[&'a str]) -> (f64, &'a str) {
    let mut v = value;
    let mut i = 0;
    // Round first, so 999.96 shows as `1.0k`, not `1000.0`.
    while (v * 10.0).round() / 10.0 >= step && i + 1 < units.len() {
        v /= step;
        i += 1;
    }
    (v, units[i])
}

/// The wall-clock time of day in UTC, `HH:MM:SS UTC` (the header's clock: no time zone
/// database needed, and an incident's timeline is usually kept in UTC anyway).
pub fn clock(at: SystemTime) -> String {
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02} UTC", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_scale_by_thousands() {
        let cases = [
            (None, "-"),
            (Some(0.0), "0"),
            (Some(0.5), "0.5"),
            (Some(7.0), "7"),
            (Some(12.34), "12.3"),
            (Some(312.4), "312"),
            (Some(999.0), "999"),
            (Some(999.96), "1.0k"),
            (Some(1_250.0), "1.2k"),
            (Some(45_000_000.0), "45.0M"),
            (Some(3.2e12), "3.2T"),
            (Some(5e18), "5000.0P"),
        ];
        for (v, want) in cases {
            assert_eq!(count(v), want, "{v:?}");
        }
    }

    #[test]
    fn bytes_scale_by_1024() {
        let cases = [
            (None, "-"),
            (Some(0.0), "0 B"),
            (Some(512.0), "512 B"),
            (Some(1536.0), "1.5 KiB"),
            (Some(1023.99), "1.0 KiB"),
            (Some(3.0 * 1024.0 * 1024.0 * 1024.0), "3.0 GiB"),
        ];
        for (v, want) in cases {
            assert_eq!(bytes(v), want, "{v:?}");
        }
    }

    #[test]
    fn the_clock_is_the_time_of_day_in_utc() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(20_000 * 86_400 + 16 * 3600 + 5 * 60 + 9);
        assert_eq!(clock(at), "16:05:09 UTC");
        assert_eq!(clock(SystemTime::UNIX_EPOCH), "00:00:00 UTC");
    }
}
