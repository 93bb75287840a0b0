//! Port ranges (`snat_ports = "20000-32767"`).

use std::{fmt, str::FromStr};

/// An inclusive range of ports, never containing 0 and never empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    /// How many ports the range holds (at most 65535).
    pub fn len(&self) -> u32 {
        u32::from(self.end) - u32::from(self.start) + 1
    }

    /// Never true for a parsed range; here because `len` is.
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl Default for PortRange {
    /// 20000-32767: below the kernel's default ephemeral range (32768-60999), so the LB's own
    /// connections never pick a port that NAT flows use.
    fn default() -> Self {
        Self { start: 20_000, end: 32_767 }
    }
}

impl fmt::Display for PortRange {
    /// `"START-END"`, or one port when the range holds only one.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

/// Why a port range was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortRangeError {
    Syntax,
    ZeroPort,
    Reversed { start: u16, end: u16 },
}

impl fmt::Display for PortRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax => {
                write!(f, "expected \"START-END\" or one port, with ports 1-65535, e.g. \"20000-32767\"")
            }
            Self::ZeroPort => write!(f, "port 0 cannot be used; ranges start at 1 or above"),
            Self::Reversed { start, end } => write!(f, "start {start} is greater than end {end}"),
        }
    }
}

impl std::error::Error for PortRangeError {}

impl FromStr for PortRange {
    type Err = PortRangeError;

    /// `"A-B"` or a single port `"A"`; spaces around the numbers are allowed.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start, end) = match text.split_once('-') {
            Some((start, end)) => (parse_port(start)?, parse_port(end)?),
            None => {
                let port = parse_port(text)?;
                (port, port)
            }
        };
        if start == 0 {
            return Err(PortRangeError::ZeroPort);
        }
        if start > end {
            return Err(PortRangeError::Reversed { start, end });
        }
        Ok(Self { start, end })
    }
}

fn parse_port(text: &str) -> Result<u16, PortRangeError> {
    let text = text.trim();
    // `u16::from_str` accepts a leading '+'; a port range has no business with signs.
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PortRangeError::Syntax);
    }
    text.parse().map_err(|_| PortRangeError::Syntax)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_single_ports_parse() {
        assert_eq!("20000-32767".parse(), Ok(PortRange { start: 20_000, end: 32_767 }));
        assert_eq!(" 1 - 2 ".parse(), Ok(PortRange { start: 1, end: 2 }));
        assert_eq!("4000".parse(), Ok(PortRange { start: 4000, end: 4000 }));
        assert_eq!("1-65535".parse::<PortRange>().map(|r| r.len()), Ok(65_535));
    }

    #[test]
    fn zero_reversed_and_malformed_ranges_are_rejected() {
        assert_eq!("0-100".parse::<PortRange>(), Err(PortRangeError::ZeroPort));
        assert_eq!("0".parse::<PortRange>(), Err(PortRangeError::ZeroPort));
        assert_eq!("32767-20000".parse::<PortRange>(), Err(PortRangeError::Reversed { start: 32_767, end: 20_000 }));
        for text in ["", "-", "a-b", "1-", "-5", "1-2-3", "65536", "+1-2", "1..2"] {
            assert_eq!(text.parse::<PortRange>(), Err(PortRangeError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["20000-32767", "4000"] {
            assert_eq!(text.parse::<PortRange>().unwrap().to_string(), text);
        }
    }

    #[test]
    fn default_is_the_contract_range() {
        let range = PortRange::default();
        assert_eq!((range.start, range.end), (20_000, 32_767));
        assert!(range.contains(20_000) && range.contains(32_767) && !range.contains(32_768));
    }
}
