//! The admin API's bearer tokens. `token_file` holds one token per line: usually one,
//! two while a token is being replaced (the old and the new are both accepted, so agents
//! can move over one by one). Surrounding whitespace and blank lines are ignored, so a
//! file written with one token and a newline is one token, as it always was.
use std::path::Path;

/// The tokens the daemon accepts; empty when none is configured (then every mutating call
/// is refused).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tokens(Vec<String>);

impl Tokens {
    /// Every non-blank line of `text`, trimmed.
    pub fn parse(text: &str) -> Tokens {
        Tokens(text.lines().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect())
    }

    /// The tokens in `path`; none when it is missing, unreadable or blank.
    pub fn load(path: &Path) -> Tokens {
        std::fs::read_to_string(path).map(|t| Tokens::parse(&t)).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The first token: what a client holding this file sends.
    pub fn first(&self) -> Option<&str> {
        self.0.first().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_token_per_line_blank_lines_and_whitespace_ignored() {
        assert_eq!(Tokens::parse("abc\n"), Tokens(vec!["abc".into()]));
        assert_eq!(Tokens::parse("  old \n\n new\r\n"), Tokens(vec!["old".into(), "new".into()]));
        assert!(Tokens::parse(" \n\t\n").is_empty());
        assert_eq!(Tokens::parse("a b\n").first(), Some("a b"), "a line is one token, spaces and all");
    }
}
