//! `lb check`: the same validation `lb run` and every reload use, then a look at this host
//! for what validation cannot know (`segment.rs`: dsr backends on a connected subnet).
use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;
use lb_config::Config;

use super::{out, segment};

/// `ok` on stdout, after the warnings (`FILE:LINE:COL: warning: message`) on stderr; or the
/// errors on stderr and exit 1.
pub fn check(path: &Path) -> Result<ExitCode> {
    match Config::check_file(path) {
        Ok(checked) => {
            for w in &checked.warnings {
                out::note(w.warning());
            }
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let host = segment::Host::read(&checked.config.daemon.interfaces);
            let origin = path.display().to_string();
            let found = segment::dsr_backends(&checked.config, &origin, &Config::backend_positions(&text), &host);
            for w in &found.warnings {
                out::note(w.warning());
            }
            if !found.errors.is_empty() {
                for e in &found.errors {
                    out::note(e);
                }
                return Ok(ExitCode::FAILURE);
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
