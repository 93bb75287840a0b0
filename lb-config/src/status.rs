//! HTTP status code sets for health checks (`expected_status = "200-399"`).

use std::{fmt, str::FromStr};

/// Valid HTTP status codes; anything outside is a typo.
const STATUS_CODES: std::ops::RangeInclusive<u16> = 100..=599;

/// A set of HTTP status codes written as a comma-separated list of codes and inclusive
/// ranges: `"200-399"`, `"200"`, `"200,204,300-399"`. Never empty.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StatusRanges {
    /// Inclusive (first, last) pairs, in the order written.
    ranges: Vec<(u16, u16)>,
}

impl StatusRanges {
    pub fn contains(&self, code: u16) -> bool {
        self.ranges.iter().any(|&(first, last)| (first..=last).contains(&code))
    }

    /// The inclusive ranges, in the order written (a single code is `(code, code)`).
    pub fn ranges(&self) -> &[(u16, u16)] {
        &self.ranges
    }
}

impl Default for StatusRanges {
    /// 200-399: success and redirects, as most load balancers do.
    fn default() -> Self {
        Self { ranges: vec![(200, 399)] }
    }
}

impl fmt::Display for StatusRanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(first, last)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if first == last {
                write!(f, "{first}")?;
            } else {
                write!(f, "{first}-{last}")?;
            }
        }
        Ok(())
    }
}

/// Why a status list was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StatusRangesError {
    Syntax,
    OutOfRange(u16),
    Reversed { first: u16, last: u16 },
}

impl fmt::Display for StatusRangesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Syntax => write!(
                f,
                "expected status codes or ranges separated by commas, e.g. \"200-399\" or \"200,204,300-399\""
            ),
            Self::OutOfRange(code) => write!(f, "{code} is not an HTTP status code (100-599)"),
            Self::Reversed { first, last } => write!(f, "range {first}-{last} is reversed"),
        }
    }
}

impl std::error::Error for StatusRangesError {}

impl FromStr for StatusRanges {
    type Err = StatusRangesError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let ranges = text.split(',').map(parse_range).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { ranges })
    }
}

/// One item of the list: `"204"` or `"300-399"`.
fn parse_range(item: &str) -> Result<(u16, u16), StatusRangesError> {
    let (first, last) = match item.split_once('-') {
        Some((first, last)) => (parse_code(first)?, parse_code(last)?),
        None => {
            let code = parse_code(item)?;
            (code, code)
        }
    };
    if first > last {
        return Err(StatusRangesError::Reversed { first, last });
    }
    Ok((first, last))
}

fn parse_code(text: &str) -> Result<u16, StatusRangesError> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StatusRangesError::Syntax);
    }
    let code: u16 = text.parse().map_err(|_| StatusRangesError::Syntax)?;
    if !STATUS_CODES.contains(&code) {
        return Err(StatusRangesError::OutOfRange(code));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> StatusRanges {
        text.parse().unwrap()
    }

    #[test]
    fn a_range_contains_its_ends_and_nothing_outside() {
        let ranges = parse("200-399");
        assert!(ranges.contains(200) && ranges.contains(302) && ranges.contains(399));
        assert!(!ranges.contains(199) && !ranges.contains(400));
    }

    #[test]
    fn a_single_code_contains_only_itself() {
        let ranges = parse("200");
        assert!(ranges.contains(200));
        assert!(!ranges.contains(201));
    }

    #[test]
    fn a_list_mixes_codes_and_ranges() {
        let ranges = parse("200, 204 ,300-399");
        assert_eq!(ranges.ranges(), &[(200, 200), (204, 204), (300, 399)]);
        assert!(ranges.contains(204) && ranges.contains(301));
        assert!(!ranges.contains(201) && !ranges.contains(404));
        assert_eq!(ranges.to_string(), "200,204,300-399");
    }

    #[test]
    fn default_is_200_to_399() {
        assert_eq!(StatusRanges::default(), parse("200-399"));
    }

    #[test]
    fn malformed_lists_are_rejected() {
        for text in ["", "ok", "200,", ",200", "200-", "2xx", "200;204", "+200"] {
            assert_eq!(text.parse::<StatusRanges>(), Err(StatusRangesError::Syntax), "{text:?}");
        }
        assert_eq!("99".parse::<StatusRanges>(), Err(StatusRangesError::OutOfRange(99)));
        assert_eq!("200-600".parse::<StatusRanges>(), Err(StatusRangesError::OutOfRange(600)));
        assert_eq!("399-200".parse::<StatusRanges>(), Err(StatusRangesError::Reversed { first: 399, last: 200 }));
    }
}
