//! `lb check`: the same validation `lb run` and every reload use.
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use lb_config::Config;

use super::out;

/// `ok` on stdout, after the warnings (`FILE:LINE:COL: warning: message`) on stderr; or the
/// errors on stderr and exit 1.
pub fn check(path: &Path) -> Result<ExitCode> {
    match Config::check_file(path) {
        Ok(checked) => {
            for w in &checked.warnings {
                out::note(w.warning());
            }
            out::line("ok")?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            out::note(e);
            Ok(ExitCode::FAILURE)
        }
    }
}
