//! What the keys do: a small state machine over the view's settings (sort, filter), kept
//! apart from the terminal so every key's effect is tested without one.
//!
//! Browsing: `q`, Esc or Ctrl-C quit; `s` steps the sort column, `n` `p` `b` `a` pick one
//! (new flows/s, packets/s, bytes/s, address), `r` reverses; `/` opens the filter prompt.
//! On the prompt the typed text filters as it is typed; Enter keeps it, Esc clears it, and
//! Ctrl-C still quits.
use super::order::SortKey;

/// A key press, as far as `lb top` cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Enter,
    Esc,
    Backspace,
    CtrlC,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    Browse,
    /// The filter prompt, with the text typed so far.
    Prompt(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Quit,
    /// The view changed: draw again.
    Redraw,
    Ignored,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub sort: SortKey,
    pub reverse: bool,
    /// The filter in force (set with Enter on the prompt).
    pub filter: String,
    pub mode: Mode,
}

impl Default for View {
    fn default() -> Self {
        View { sort: SortKey::NewFlows, reverse: false, filter: String::new(), mode: Mode::Browse }
    }
}

/// A prompt longer than this is no filter anyone types; it stops taking characters.
const MAX_FILTER_CHARS: usize = 200;

impl View {
    /// The filter the rows are shown with: the prompt's text while typing.
    pub fn shown_filter(&self) -> &str {
        match &self.mode {
            Mode::Prompt(text) => text,
            Mode::Browse => &self.filter,
        }
    }

    pub fn press(&mut self, key: Key) -> Outcome {
        if key == Key::CtrlC {
            return Outcome::Quit;
        }
        match &mut self.mode {
            Mode::Browse => self.browse(key),
            Mode::Prompt(text) => match key {
                Key::Char(c) if !c.is_control() && text.chars().count() < MAX_FILTER_CHARS => {
                    text.push(c);
                    Outcome::Redraw
                }
                Key::Backspace => {
                    text.pop();
                    Outcome::Redraw
                }
                Key::Enter => {
                    self.filter = text.trim().to_string();
                    self.mode = Mode::Browse;
                    Outcome::Redraw
                }
                Key::Esc => {
                    self.filter.clear();
                    self.mode = Mode::Browse;
                    Outcome::Redraw
                }
                _ => Outcome::Ignored,
            },
        }
    }

    fn browse(&mut self, key: Key) -> Outcome {
        match key {
            Key::Char('q') | Key::Esc => Outcome::Quit,
            Key::Char('s') => self.pick(self.sort.next()),
            Key::Char('n') => self.pick(SortKey::NewFlows),
            Key::Char('p') => self.pick(SortKey::Packets),
            Key::Char('b') => self.pick(SortKey::Bytes),
            Key::Char('a') => self.pick(SortKey::Address),
            Key::Char('r') => {
                self.reverse = !self.reverse;
                Outcome::Redraw
            }
            Key::Char('/') => {
                // Start from the filter in force, so it can be edited rather than retyped.
                self.mode = Mode::Prompt(self.filter.clone());
                Outcome::Redraw
            }
            _ => Outcome::Ignored,
        }
    }

    fn pick(&mut self, sort: SortKey) -> Outcome {
        self.sort = sort;
        Outcome::Redraw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(view: &mut View, text: &str) {
        for c in text.chars() {
            view.press(Key::Char(c));
        }
    }

    #[test]
    fn q_esc_and_ctrl_c_quit_while_browsing() {
        for key in [Key::Char('q'), Key::Esc, Key::CtrlC] {
            assert_eq!(View::default().press(key), Outcome::Quit, "{key:?}");
        }
    }

    #[test]
    fn sort_keys_pick_a_column_and_r_reverses() {
        let mut v = View::default();
        assert_eq!(v.press(Key::Char('p')), Outcome::Redraw);
        assert_eq!(v.sort, SortKey::Packets);
        v.press(Key::Char('b'));
        assert_eq!(v.sort, SortKey::Bytes);
        v.press(Key::Char('a'));
        assert_eq!(v.sort, SortKey::Address);
        v.press(Key::Char('n'));
        assert_eq!(v.sort, SortKey::NewFlows);
        v.press(Key::Char('s'));
        assert_eq!(v.sort, SortKey::Packets);
        assert!(!v.reverse);
        v.press(Key::Char('r'));
        assert!(v.reverse);
        v.press(Key::Char('r'));
        assert!(!v.reverse);
        assert_eq!(v.press(Key::Char('x')), Outcome::Ignored);
        assert_eq!(v.press(Key::Enter), Outcome::Ignored);
    }

    #[test]
    fn the_prompt_filters_as_typed_enter_keeps_it_esc_clears_it() {
        let mut v = View::default();
        v.press(Key::Char('/'));
        typed(&mut v, "webx");
        v.press(Key::Backspace);
        assert_eq!(v.mode, Mode::Prompt("web".into()));
        assert_eq!(v.shown_filter(), "web");
        assert_eq!(v.filter, "", "not in force before Enter");
        // Keys that sort or quit are text on the prompt.
        typed(&mut v, "qs");
        assert_eq!(v.shown_filter(), "webqs");
        v.press(Key::Backspace);
        v.press(Key::Backspace);
        v.press(Key::Enter);
        assert_eq!((v.mode.clone(), v.filter.as_str(), v.shown_filter()), (Mode::Browse, "web", "web"));
        // Editing starts from the filter in force; Esc drops it.
        v.press(Key::Char('/'));
        assert_eq!(v.mode, Mode::Prompt("web".into()));
        assert_eq!(v.press(Key::Esc), Outcome::Redraw);
        assert_eq!((v.mode.clone(), v.filter.as_str()), (Mode::Browse, ""));
    }

    #[test]
    fn ctrl_c_quits_from_the_prompt_and_the_prompt_is_bounded() {
        let mut v = View::default();
        v.press(Key::Char('/'));
        typed(&mut v, &"x".repeat(MAX_FILTER_CHARS + 50));
        assert_eq!(v.shown_filter().chars().count(), MAX_FILTER_CHARS);
        assert_eq!(v.press(Key::Char('\u{7}')), Outcome::Ignored, "control characters are not text");
        assert_eq!(v.press(Key::CtrlC), Outcome::Quit);
    }
}
