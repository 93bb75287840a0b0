//! `lb`: a thin entry point; everything lives in the library so tests run the same code.
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = lb_user::cli::Cli::parse();
    match lb_user::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            lb_user::cli::report_error(&e);
            ExitCode::FAILURE
        }
    }
}
