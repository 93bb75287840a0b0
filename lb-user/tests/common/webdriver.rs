//! Headless Chromium driven over WebDriver (Debian's `chromedriver`), inside a namespace of
//! the test network: every WebDriver call is a `curl` run in that namespace, so the browser
//! sees the network exactly as a host there would. Bounded: each call times out, and the
//! driver is killed when this is dropped.
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const PORT: u16 = 9515;

pub struct Browser {
    ns: String,
    driver: Child,
    session: String,
}

impl Browser {
    /// chromedriver and a headless Chromium session in `ns`, its window `width`×`height`.
    pub fn start(ns: &str, width: u32, height: u32) -> Self {
        let log = Path::new(testenv::RUN_DIR).join("chromedriver.log");
        let port = format!("--port={PORT}");
        let driver = testenv::spawn_logged(ns, &["chromedriver", &port], &log).expect("start chromedriver");
        let mut browser = Browser { ns: ns.to_string(), driver, session: String::new() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while browser.call("GET", "/status", None).get("value").and_then(|v| v.get("ready")) != Some(&json!(true)) {
            assert!(Instant::now() < deadline, "chromedriver did not come up: see {}", log.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        let profile = Path::new(testenv::RUN_DIR).join("chromium-profile");
        let _ = std::fs::remove_dir_all(&profile);
        let capabilities = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            // Root has no sandbox; no GPU in a namespace; a profile of our own, thrown away.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     format!("--window-size={width},{height}"), format!("--user-data-dir={}", profile.display())]
        }}}});
        let answer = browser.call("POST", "/session", Some(&capabilities));
        browser.session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {answer}"))
            .to_string();
        browser
    }

    pub fn open(&self, url: &str) {
        self.session_call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> Value {
        self.session_call("POST", "/execute/sync", Some(&json!({ "script": script, "args": [] })))
    }

    /// Polls `script` until it returns something `accept`s, for at most `within`: the last
    /// value, and whether it was accepted.
    pub fn wait_for(&self, script: &str, within: Duration, accept: impl Fn(&Value) -> bool) -> (Value, bool) {
        let deadline = Instant::now() + within;
        loop {
            let value = self.eval(script);
            if accept(&value) {
                return (value, true);
            }
            if Instant::now() >= deadline {
                return (value, false);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn resize(&self, width: u32, height: u32) {
        self.session_call("POST", "/window/rect", Some(&json!({ "width": width, "height": height })));
    }

    /// A PNG of the viewport, written to `path`.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let value = self.session_call("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(value.as_str().expect("a base64 screenshot"))
            .expect("base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write the screenshot");
    }

    fn session_call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let answer = self.call(method, &format!("/session/{}{path}", self.session), body);
        // A WebDriver error is {"value": {"error": "...", "message": "...", ...}}.
        if answer["value"]["error"].as_str().is_some_and(|e| !e.is_empty()) && answer["value"].get("message").is_some()
        {
            panic!("WebDriver {method} {path}: {answer}");
        }
        answer["value"].clone()
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let url = format!("http://127.0.0.1:{PORT}{path}");
        let data = body.map(Value::to_string).unwrap_or_default();
        let mut args =
            vec!["curl", "-s", "--noproxy", "*", "-m", "30", "-X", method, "-H", "Content-Type: application/json"];
        if body.is_some() {
            args.extend(["--data-binary", data.as_str()]);
        }
        args.push(&url);
        let out = testenv::exec(&self.ns, &args).expect("run curl");
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
