//! `lb check`: the same validation `lb run` and every reload use.
use std::path::Path;
use std::process::ExitCode;

use lb_config::Config;

pub fn check(path: &Path) -> ExitCode {
    match Config::from_file(path) {
        Ok(_) => {
            println!("ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
