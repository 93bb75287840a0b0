//! The config parser and validator: any bytes give a config or diagnostics, never a panic,
//! and every diagnostic (and warning) reads `FILE:LINE:COL: message` with a position that
//! exists in the text.
#![no_main]

use lb_config::desired::Desired;
use lb_config::{Config, Diagnostic};
use libfuzzer_sys::fuzz_target;

const ORIGIN: &str = "fuzz.toml";

fuzz_target!(|data: &[u8]| {
    // The daemon reads a file as UTF-8; anything else is refused before parsing.
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::check_str(text, ORIGIN) {
        Ok(checked) => {
            checked.warnings.iter().for_each(|w| placed(w, text));
            // What the daemon does next with a valid config.
            let _ = Desired::from_config(&checked.config);
        }
        Err(e) => {
            assert!(!e.diagnostics().is_empty(), "an error without a diagnostic");
            e.diagnostics().iter().for_each(|d| placed(d, text));
        }
    }
});

/// `d` points at a line and column of `text` (1-based, columns in characters, one past the
/// end of a line allowed) and prints as `fuzz.toml:LINE:COL: message` on one line.
fn placed(d: &Diagnostic, text: &str) {
    let p = d.position.unwrap_or_else(|| panic!("diagnostic without a position: {d}"));
    let lines: Vec<&str> = text.split('\n').collect();
    assert!(p.line >= 1 && p.line <= lines.len(), "line {} of {}: {d}", p.line, lines.len());
    let width = lines[p.line - 1].chars().count();
    assert!(p.column >= 1 && p.column <= width + 1, "column {} of a {width}-character line: {d}", p.column);
    let shown = d.to_string();
    let prefix = format!("{ORIGIN}:{}:{}: ", p.line, p.column);
    assert!(shown.starts_with(&prefix), "{shown:?} does not start with {prefix:?}");
    assert!(!d.message.trim().is_empty(), "empty message at {prefix}");
    assert!(!d.message.contains('\n'), "a message on more than one line: {shown:?}");
}
