//! Diagnostics: what went wrong and where, printed as `FILE:LINE:COL: message`.

use std::{fmt, ops::Range};

/// A 1-based line and column in the configuration text. Columns count characters, not bytes,
/// so they match what an editor shows on lines with non-ASCII text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One problem in a configuration file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file name the text came from (the `origin` given to `Config::from_str`).
    pub file: String,
    /// Where in the file; `None` when the problem is the file as a whole (it cannot be read).
    pub position: Option<Position>,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(Position { line, column }) => {
                write!(f, "{}:{line}:{column}: {}", self.file, self.message)
            }
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl Diagnostic {
    /// As a warning: `FILE:LINE:COL: warning: message`.
    pub fn warning(&self) -> String {
        match self.position {
            Some(Position { line, column }) => format!("{}:{line}:{column}: warning: {}", self.file, self.message),
            None => format!("{}: warning: {}", self.file, self.message),
        }
    }
}

/// Everything wrong with a configuration: syntax and type errors stop parsing at the first
/// one (the TOML parser cannot go on), semantic errors are all collected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    diagnostics: Vec<Diagnostic>,
}

impl ConfigError {
    /// Sorts by position so the output reads top to bottom, whatever order the checks ran in.
    pub(super) fn new(mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| d.position);
        Self { diagnostics }
    }

    /// The diagnostics, in file order (those without a position first). Never empty.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }
}

impl fmt::Display for ConfigError {
    /// One diagnostic per line, no trailing newline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The text being parsed and its name: turns byte offsets from `toml` into diagnostics.
pub(super) struct Source<'a> {
    origin: &'a str,
    text: &'a str,
}

impl<'a> Source<'a> {
    pub(super) fn new(origin: &'a str, text: &'a str) -> Self {
        Self { origin, text }
    }

    /// A diagnostic at the start of `span`.
    pub(super) fn at(&self, span: &Range<usize>, message: impl Into<String>) -> Diagnostic {
        Diagnostic { file: self.origin.to_string(), position: Some(self.position(span.start)), message: message.into() }
    }

    /// A diagnostic about the file as a whole.
    pub(super) fn unplaced(&self, message: impl Into<String>) -> Diagnostic {
        Diagnostic { file: self.origin.to_string(), position: None, message: message.into() }
    }

    /// A diagnostic from the TOML parser or from serde (syntax, type, unknown or missing key).
    pub(super) fn parse_error(&self, error: &toml::de::Error) -> Diagnostic {
        let message = plain_words(error.message());
        match error.span() {
            Some(span) => {
                let hint = message.ends_with("expected a sequence").then(|| self.single_brackets_hint(&span));
                let message = hint.flatten().unwrap_or(message);
                let message = if message.is_empty() { self.unexpected_character(&span) } else { message };
                self.at(&span, message)
            }
            None if message.is_empty() => self.unplaced("invalid TOML"),
            None => self.unplaced(message),
        }
    }

    /// The parser says nothing about a control character in a comment (found by the config
    /// fuzz target): name the character it stopped at.
    fn unexpected_character(&self, span: &Range<usize>) -> String {
        match self.text.get(span.start..).and_then(|rest| rest.chars().next()) {
            Some(c) => {
                format!("invalid character {:?} (U+{:04X}): TOML allows no control characters here", c, c as u32)
            }
            None => "invalid TOML".to_string(),
        }
    }

    /// `[service]` instead of `[[service]]` is an easy slip, and serde's "invalid type: map,
    /// expected a sequence" does not say what to write. Only array-of-tables keys (`service`,
    /// `service.backend`) produce a sequence error at a `[header]`.
    fn single_brackets_hint(&self, span: &Range<usize>) -> Option<String> {
        let (header, _) = self.text.get(span.clone())?.strip_prefix('[')?.split_once(']')?;
        if header.starts_with('[') {
            return None;
        }
        let header = header.trim();
        let entry = header.rsplit('.').next().unwrap_or(header);
        Some(format!("[{header}] must be written [[{header}]], once per {entry}"))
    }

    /// 1-based line and column of a byte offset. Offsets past the end (or inside a character,
    /// which `toml` never produces) land on the next character boundary rather than panicking.
    pub(super) fn position(&self, offset: usize) -> Position {
        let mut line = 1;
        let mut column = 1;
        for (i, c) in self.text.char_indices() {
            if i >= offset {
                break;
            }
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        Position { line, column }
    }

    /// The 1-based line of a byte offset, for messages that refer to an earlier definition.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        self.position(offset).line
    }
}

/// serde speaks of fields and variants; people editing a TOML file see keys and values.
/// Multi-line parser messages are joined so every diagnostic stays on one line.
fn plain_words(message: &str) -> String {
    let one_line = message.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>();
    let joined = one_line.join(": ");
    for (serde_words, toml_words) in
        [("unknown field", "unknown key"), ("missing field", "missing key"), ("unknown variant", "unknown value")]
    {
        if let Some(rest) = joined.strip_prefix(serde_words) {
            return format!("{toml_words}{rest}");
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let source = Source::new("lb.toml", "a = 1\nné = \"x\"\n");
        assert_eq!(source.position(0), Position { line: 1, column: 1 });
        assert_eq!(source.position(4), Position { line: 1, column: 5 });
        assert_eq!(source.position(6), Position { line: 2, column: 1 });
        // "né" is three bytes but two characters: the '=' is in column 4.
        assert_eq!(source.position(10), Position { line: 2, column: 4 });
        assert_eq!(source.position(1000), Position { line: 3, column: 1 });
    }

    #[test]
    fn display_prints_one_diagnostic_per_line_in_file_order() {
        let source = Source::new("lb.toml", "a\nb\nc\n");
        let error = ConfigError::new(vec![
            source.at(&(4..5), "third"),
            source.at(&(0..1), "first"),
            source.unplaced("whole file"),
        ]);
        assert_eq!(error.to_string(), "lb.toml: whole file\nlb.toml:1:1: first\nlb.toml:3:1: third");
    }

    #[test]
    fn a_control_character_in_a_comment_is_named() {
        let text = "# a comment\n# with a \u{0} in it\n";
        let e = crate::Config::from_str(text, "lb.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "lb.toml:2:10: invalid character '\\0' (U+0000): TOML allows no control characters here"
        );
    }

    #[test]
    fn serde_wording_becomes_toml_wording_on_one_line() {
        assert_eq!(plain_words("unknown field `x`, expected `y`"), "unknown key `x`, expected `y`");
        assert_eq!(plain_words("missing field `name`"), "missing key `name`");
        assert_eq!(
            plain_words("invalid table header\nduplicate key `daemon`\n"),
            "invalid table header: duplicate key `daemon`"
        );
    }
}
