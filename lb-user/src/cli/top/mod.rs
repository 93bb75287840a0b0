//! `lb top`: services and backends with their rates, refreshed in the terminal, for a
//! look during an incident. The counters are those of `lb list backends` (the pinned maps,
//! or the admin API on the proxy path); the rates are their differences between two
//! refreshes. Pure parts (rates, order, filter, keys, the frame's text) live in their own
//! files with their tests; this one only wires them to the terminal.
mod draw;
mod filter;
mod keys;
mod order;
mod rates;
mod sample;
mod sampler;
mod screen;
mod state;
mod terminal;
mod units;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use lb_config::{format_duration, parse_duration};

use crate::agent::Shutdown;
use keys::{Key, Outcome};
use state::State;

/// Faster than this, the maps' walk (every backend slot) would be most of the work.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Slower than this, a rate says little about now.
const MAX_INTERVAL: Duration = Duration::from_secs(600);
/// How long to wait for a key before looking for a new sample.
const KEY_WAIT: Duration = Duration::from_millis(100);

#[derive(Args, Debug)]
pub struct TopArgs {
    /// Where the daemon pinned its maps (daemon.pin_path)
    #[arg(long, default_value = super::DEFAULT_PIN_PATH)]
    pub pin_path: PathBuf,
    /// The daemon's admin API, asked when nothing is pinned (the proxy path)
    #[arg(long, default_value = "http://127.0.0.1:9100")]
    pub api: String,
    /// Time between refreshes, with a unit (e.g. 1s, 500ms), from 100ms to 10m
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = interval)]
    pub interval: Duration,
}

fn interval(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text).map_err(|e| e.to_string())?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        return Err(format!(
            "interval must be between {} and {}",
            format_duration(MIN_INTERVAL),
            format_duration(MAX_INTERVAL)
        ));
    }
    Ok(d)
}

pub fn top(args: TopArgs) -> Result<ExitCode> {
    // SIGTERM or SIGINT (from `kill`: in raw mode Ctrl-C is a key) ends it like `q`, so the
    // terminal is given back rather than left raw.
    let stop = Shutdown::on_signals().context("installing the SIGTERM and SIGINT handlers")?;
    let mut tty = terminal::Tty::enter()?;
    let samples = sampler::spawn(sample::Source { pin_path: args.pin_path, api: args.api }, args.interval);
    run(&mut tty, &samples, &stop, State::new(args.interval))?;
    Ok(ExitCode::SUCCESS)
}

/// Draws, takes keys and samples until a key or a signal quits.
fn run(tty: &mut terminal::Tty, samples: &Receiver<sampler::Refresh>, stop: &Shutdown, mut state: State) -> Result<()> {
    let mut dirty = true;
    loop {
        if stop.requested() {
            return Ok(());
        }
        loop {
            match samples.try_recv() {
                Ok(refresh) => {
                    state.update(refresh);
                    dirty = true;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => bail!("the sampling thread stopped"),
            }
        }
        if dirty {
            let frame = screen::screen(&state);
            tty.terminal().draw(|f| draw::draw(f, &frame)).context("drawing")?;
            dirty = false;
        }
        if !event::poll(KEY_WAIT).context("reading the terminal")? {
            continue;
        }
        match event::read().context("reading the terminal")? {
            Event::Key(k) if k.kind == KeyEventKind::Press => match key_of(k).map(|key| state.view.press(key)) {
                Some(Outcome::Quit) => return Ok(()),
                Some(Outcome::Redraw) => dirty = true,
                Some(Outcome::Ignored) | None => {}
            },
            Event::Resize(..) => dirty = true,
            _ => {}
        }
    }
}

/// The keys `lb top` knows; in raw mode Ctrl-C arrives as a key, not as SIGINT.
fn key_of(k: KeyEvent) -> Option<Key> {
    Some(match k.code {
        KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::CtrlC,
        KeyCode::Char(_) if k.modifiers.intersects(KeyModifiers::CONTROL | KeyModifiers::ALT) => return None,
        KeyCode::Char(c) => Key::Char(c),
        KeyCode::Enter => Key::Enter,
        KeyCode::Esc => Key::Esc,
        KeyCode::Backspace => Key::Backspace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_needs_a_unit_and_a_sensible_size() {
        assert_eq!(interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(interval("10m"), Ok(Duration::from_secs(600)));
        for bad in ["0s", "0", "50ms", "11m", "1000h"] {
            let e = interval(bad).unwrap_err();
            assert!(!e.is_empty(), "{bad}");
        }
        assert!(interval("0s").unwrap_err().contains("between 100ms and 10m"), "{:?}", interval("0s"));
        assert!(interval("fast").is_err());
    }

    #[test]
    fn keys_map_to_what_the_view_knows() {
        let press = |code, modifiers| key_of(KeyEvent::new(code, modifiers));
        assert_eq!(press(KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Key::CtrlC));
        assert_eq!(press(KeyCode::Char('c'), KeyModifiers::NONE), Some(Key::Char('c')));
        assert_eq!(press(KeyCode::Char('W'), KeyModifiers::SHIFT), Some(Key::Char('W')));
        assert_eq!(press(KeyCode::Char('x'), KeyModifiers::ALT), None);
        assert_eq!(press(KeyCode::Esc, KeyModifiers::NONE), Some(Key::Esc));
        assert_eq!(press(KeyCode::Enter, KeyModifiers::NONE), Some(Key::Enter));
        assert_eq!(press(KeyCode::Backspace, KeyModifiers::NONE), Some(Key::Backspace));
        assert_eq!(press(KeyCode::F(1), KeyModifiers::NONE), None);
    }
}
