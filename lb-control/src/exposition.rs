//! The Prometheus text exposition format 0.0.4, written once for every producer of
//! metrics (the control plane, the XDP maps, the proxy's counters).
use std::fmt::{self, Display, Write};

/// The text being built. A family is written only when it has samples, so absent data
/// leaves no empty HELP/TYPE stubs behind.
#[derive(Default)]
pub struct Exposition(String);

impl Exposition {
    pub fn into_string(self) -> String {
        self.0
    }

    pub fn family(&mut self, name: &str, kind: &str, help: &str, lines: impl IntoIterator<Item = String>) {
        let mut lines = lines.into_iter().peekable();
        if lines.peek().is_none() {
            return;
        }
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for line in lines {
            self.0.push_str(&line);
            self.0.push('\n');
        }
    }
}

/// One sample line: `name{label="value",...} value`.
pub fn sample(name: &str, labels: &[(&str, &str)], value: impl Display) -> String {
    let mut line = name.to_string();
    if !labels.is_empty() {
        line.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = write!(line, "{sep}{k}=\"{}\"", escape(v));
        }
        line.push('}');
    }
    let _ = write!(line, " {value}");
    line
}

/// Label values may hold `\`, `"` and newlines, which the format escapes.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A float as the format spells it (`+Inf`, `NaN`; Rust would write `inf`).
pub struct Float(pub f64);

impl Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            v if v.is_nan() => f.write_str("NaN"),
            v if v == f64::INFINITY => f.write_str("+Inf"),
            v if v == f64::NEG_INFINITY => f.write_str("-Inf"),
            v => write!(f, "{v}"),
        }
    }
}
