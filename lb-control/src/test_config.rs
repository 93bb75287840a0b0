//! The unit tests' config: one service, `web` on 10.0.0.100:80, and the backends a test
//! gives it, each with its own settings. The tests of the sources and of the agents'
//! overlay read the desired state of the same shape of config, so they build it here.
use std::fmt::Write as _;

use lb_config::Config;

/// The service's name and VIP.
pub const SERVICE: &str = "web";
pub const VIP: &str = "10.0.0.100:80";

/// A `[[service]]` named `web` on [`VIP`], built up setting by setting.
#[derive(Default)]
pub struct WebService {
    settings: String,
    backends: String,
}

impl WebService {
    pub fn new() -> Self {
        Self::default()
    }

    /// A service setting, as a TOML line (`forwarding = "dsr"`).
    pub fn setting(mut self, line: &str) -> Self {
        let _ = writeln!(self.settings, "{line}");
        self
    }

    /// A backend at `address`, with its settings as TOML lines (`weight = 10`).
    pub fn backend(mut self, address: &str, settings: &[&str]) -> Self {
        let _ = writeln!(self.backends, "[[service.backend]]\naddress = \"{address}\"");
        for line in settings {
            let _ = writeln!(self.backends, "{line}");
        }
        self
    }

    pub fn toml(&self) -> String {
        format!("[[service]]\nname = \"{SERVICE}\"\nvip = \"{VIP}\"\n{}{}", self.settings, self.backends)
    }

    /// The config, parsed as the daemon parses a file.
    pub fn config(&self) -> Config {
        Config::from_str(&self.toml(), "t.toml").unwrap_or_else(|e| panic!("test config: {e}\n{}", self.toml()))
    }
}
