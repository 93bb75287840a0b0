//! Writes what the Debian package ships beside `lb`, generated from its own clap command so
//! that they cannot drift from it: shell completions (`completions/lb.bash`, `_lb`,
//! `lb.fish`) and man pages (`man/lb.1`, and `lb-SUBCOMMAND.1` for each subcommand, nested
//! ones too). `cargo xtask package` runs it; usage: `package_assets OUT_DIR`.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: package_assets OUT_DIR");
        return ExitCode::from(2);
    };
    match write_all(&out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("package_assets: {e}");
            ExitCode::FAILURE
        }
    }
}

fn write_all(out: &Path) -> std::io::Result<()> {
    let completions = out.join("completions");
    let man = out.join("man");
    std::fs::create_dir_all(&completions)?;
    std::fs::create_dir_all(&man)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = lb_user::cli::Cli::command();
        let written = clap_complete::generate_to(shell, &mut cmd, "lb", &completions)?;
        println!("{}", written.display());
    }
    clap_mangen::generate_to(lb_user::cli::Cli::command(), &man)?;
    println!("{}", man.display());
    Ok(())
}
