//! The terminal while `lb top` runs: raw mode and the alternate screen, given back however
//! `lb top` ends (quit, error, panic), so the shell is left as it was found.
use std::io::IsTerminal;

use anyhow::{bail, Context, Result};
use ratatui::DefaultTerminal;

pub struct Tty {
    terminal: DefaultTerminal,
}

impl Tty {
    /// Takes over the terminal. `ratatui::try_init` also sets a panic hook that restores
    /// it before the panic's message is printed.
    pub fn enter() -> Result<Self> {
        if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
            bail!("lb top draws on a terminal and reads keys from it; for scripts, `lb list backends --json`");
        }
        match ratatui::try_init() {
            Ok(terminal) => Ok(Tty { terminal }),
            Err(e) => {
                // Raw mode may be on already when the alternate screen failed.
                let _ = ratatui::try_restore();
                Err(e).context("cannot set up the terminal")
            }
        }
    }

    pub fn terminal(&mut self) -> &mut DefaultTerminal {
        &mut self.terminal
    }
}

impl Drop for Tty {
    fn drop(&mut self) {
        let _ = self.terminal.show_cursor();
        let _ = ratatui::try_restore();
    }
}
