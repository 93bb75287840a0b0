//! A small blocking client for the registration part of the admin API (docs/api.md,
//! "The contract"): register, heartbeat, set state, deregister.
//!
//! Blocking on purpose: the agent does one request at a time and sleeps in between, so a
//! thread and `ureq` are simpler than an async runtime, and signal handling stays a flag.
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde_json::{json, Value};

use super::failover::Balancers;
use lb_config::{format_duration, AdminState};

/// Every request gives up after this long; a hung LB must not hold the agent (or its
/// shutdown) hostage.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Error bodies are short JSON; anything longer is cut in messages.
const MAX_ERROR_TEXT: usize = 512;

/// The admin API's base URL, e.g. `http://127.0.0.1:9100`, without a trailing slash.
///
/// Only `http://`: the admin API listens on loopback by default and this build has no TLS.
/// A URL without a scheme (`127.0.0.1:9100`) gets `http://`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiUrl(String);

impl ApiUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ApiUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let rest = match text.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(format!("{text:?}: https is not supported; the admin API speaks plain HTTP (use http://)"))
            }
            Some((scheme, _)) => return Err(format!("{text:?}: unsupported scheme {scheme:?}; use http://HOST:PORT")),
            None => text,
        };
        let rest = rest.trim_end_matches('/');
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(format!("{text:?}: no host; write e.g. http://127.0.0.1:9100"));
        }
        if rest.contains(['?', '#']) || rest.contains(char::is_whitespace) {
            return Err(format!("{text:?}: expected http://HOST:PORT[/PREFIX], without query, fragment or spaces"));
        }
        Ok(ApiUrl(format!("http://{rest}")))
    }
}

/// Percent-encodes one path segment: everything but RFC 3986's unreserved characters, so
/// `[fd00::1]:80` becomes `%5Bfd00%3A%3A1%5D%3A80` and `10.0.0.1:80` becomes `10.0.0.1%3A80`.
pub fn encode_path_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() * 3);
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// How requests authenticate: the bearer token, or why there is none (said in 401 errors).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    Bearer(String),
    None { reason: String },
}

impl Auth {
    /// Reads a token file: its first non-blank line, trimmed (the daemon's `token_file` may
    /// list several accepted tokens, one per line; a client sends the first). A missing or
    /// empty file is not an error here: requests go out without a token and the server's
    /// 401, if it wants one, says so, with this reason attached. Any other read error is
    /// (permissions, a directory).
    pub fn from_token_file(path: &Path) -> Result<Auth, TokenFileError> {
        match std::fs::read_to_string(path) {
            Ok(text) => match lb_config::Tokens::parse(&text).first() {
                Some(token) => Ok(Auth::Bearer(token.to_string())),
                None => Ok(Auth::None { reason: format!("token file {} is empty", path.display()) }),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Ok(Auth::None { reason: format!("token file {} does not exist", path.display()) })
            }
            Err(source) => Err(TokenFileError { path: path.to_path_buf(), source }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read token file {}: {source}", path.display())]
pub struct TokenFileError {
    pub path: PathBuf,
    pub source: io::Error,
}

/// What the caller should do about a failed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The LB is unreachable or momentarily unable (connect error, timeout, 5xx, 408, 429,
    /// or 409: no room for another backend now): try again later.
    Transient,
    /// 404: the service or the registration does not exist (for a heartbeat: the lease
    /// expired or the daemon restarted without it).
    NotFound,
    /// 401: the token was refused (rotated on the LB, or not there yet): re-read the token
    /// file and try again later.
    Unauthorized,
    /// Anything else (400, 403, 413, 422, a bad URL): the request itself is wrong and
    /// repeating it cannot help.
    Fatal,
}

/// A request that did not succeed. `Display` is the message shown to people.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No HTTP answer: connection refused, timeout, reset, DNS.
    #[error("{method} {url}: LB admin API unreachable: {detail}")]
    Unreachable { method: &'static str, url: String, detail: String },
    /// The request could not even be sent (a URL the HTTP library refuses).
    #[error("{method} {url}: {detail}")]
    Invalid { method: &'static str, url: String, detail: String },
    /// The server answered with an error status; `message` is its `{"error": ...}` text
    /// (or the body, or the reason phrase).
    #[error("{method} {url}: HTTP {status} {reason}: {message}{hint}")]
    Status {
        method: &'static str,
        url: String,
        status: u16,
        reason: String,
        message: String,
        /// For a 401 sent without a token: why there was none.
        hint: String,
    },
}

impl ApiError {
    pub fn failure(&self) -> Failure {
        match self {
            ApiError::Unreachable { .. } => Failure::Transient,
            ApiError::Invalid { .. } => Failure::Fatal,
            ApiError::Status { status, .. } => match status {
                404 => Failure::NotFound,
                401 => Failure::Unauthorized,
                408 | 409 | 429 => Failure::Transient,
                500.. => Failure::Transient,
                _ => Failure::Fatal,
            },
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ApiError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's own error text, when it answered.
    pub fn server_message(&self) -> Option<&str> {
        match self {
            ApiError::Status { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// The blocking admin API client. One request at a time, [`REQUEST_TIMEOUT`] each.
#[derive(Debug)]
pub struct ApiClient {
    /// One balancer, or several of a fleet (see `failover`).
    balancers: Balancers,
    /// Replaced when the token file is read again (after a 401).
    auth: std::sync::Mutex<Auth>,
    /// Where the token came from, if from a file.
    token_file: Option<PathBuf>,
    http: ureq::Agent,
}

impl ApiClient {
    pub fn new(balancers: impl Into<Balancers>, auth: Auth) -> ApiClient {
        let http = ureq::AgentBuilder::new()
            .timeout(REQUEST_TIMEOUT)
            .timeout_connect(REQUEST_TIMEOUT)
            // The API never redirects; following one could send the token elsewhere.
            .redirects(0)
            .user_agent(concat!("lb-agent/", env!("CARGO_PKG_VERSION")))
            .build();
        ApiClient { balancers: balancers.into(), auth: std::sync::Mutex::new(auth), token_file: None, http }
    }

    /// A client whose token is `path`'s, read again by [`reload_token`](Self::reload_token).
    pub fn with_token_file(balancers: impl Into<Balancers>, path: &Path) -> Result<ApiClient, TokenFileError> {
        let mut client = ApiClient::new(balancers, Auth::from_token_file(path)?);
        client.token_file = Some(path.to_path_buf());
        Ok(client)
    }

    pub fn auth(&self) -> Auth {
        self.auth.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the token file again (after a 401: the token may have been rotated). True
    /// when the token changed. An unreadable file keeps the token there was.
    pub fn reload_token(&self) -> Result<bool, TokenFileError> {
        let Some(path) = &self.token_file else { return Ok(false) };
        let fresh = Auth::from_token_file(path)?;
        let mut auth = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        let changed = *auth != fresh;
        *auth = fresh;
        Ok(changed)
    }

    /// The balancer requests go to first (the one that answered last).
    pub fn base(&self) -> &ApiUrl {
        self.balancers.current()
    }

    /// `POST /v1/services/{service}/backends` `{"address","weight","ttl"}` -> 201.
    pub fn register(&self, service: &str, address: SocketAddr, weight: u32, ttl: Duration) -> Result<(), ApiError> {
        let body = json!({
            "address": address.to_string(),
            "weight": weight,
            "ttl": format_duration(ttl),
        });
        self.call("POST", &backends_path(service), Some(body)).map(drop)
    }

    /// `PUT .../backends/{address}/heartbeat` -> 200: renews the lease.
    pub fn heartbeat(&self, service: &str, address: SocketAddr) -> Result<(), ApiError> {
        let url = format!("{}/heartbeat", backend_path(service, address));
        self.call("PUT", &url, None).map(drop)
    }

    /// `PUT .../backends/{address}/state` `{"state"}` -> 200. Returns the state the server
    /// reports in its answer (`{"state": ...}` at the top level), else the one requested.
    pub fn set_state(&self, service: &str, address: SocketAddr, state: AdminState) -> Result<String, ApiError> {
        let url = format!("{}/state", backend_path(service, address));
        let answer = self.call("PUT", &url, Some(json!({ "state": state.as_str() })))?;
        let reported = serde_json::from_str::<Value>(&answer)
            .ok()
            .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_string));
        Ok(reported.unwrap_or_else(|| state.as_str().to_string()))
    }

    /// `PUT .../backends/{address}/weight` `{"weight": N | null}` -> 200. Returns the weight
    /// the server reports (`None`: cleared).
    pub fn set_weight(&self, service: &str, address: SocketAddr, weight: Option<u32>) -> Result<Option<u32>, ApiError> {
        let url = format!("{}/weight", backend_path(service, address));
        let answer = self.call("PUT", &url, Some(json!({ "weight": weight })))?;
        let reported = serde_json::from_str::<Value>(&answer).ok().and_then(|v| v.get("weight").cloned());
        Ok(match reported {
            Some(Value::Number(n)) => n.as_u64().map(|n| n as u32),
            Some(_) => None,
            None => weight,
        })
    }

    /// `POST /v1/drain` `{"drain"}` -> 200: withdraw this node's BGP announcements (or,
    /// with `false`, announce again). Returns whether the node was draining before.
    pub fn drain(&self, drain: bool) -> Result<bool, ApiError> {
        let answer = self.call("POST", "/v1/drain", Some(json!({ "drain": drain })))?;
        let was = serde_json::from_str::<Value>(&answer).ok().and_then(|v| v.get("was_draining")?.as_bool());
        Ok(was.unwrap_or(false))
    }

    /// `DELETE .../backends/{address}` -> 204.
    pub fn deregister(&self, service: &str, address: SocketAddr) -> Result<(), ApiError> {
        self.call("DELETE", &backend_path(service, address), None).map(drop)
    }

    /// Sends one request to the balancers in turn (see `failover`); a 2xx answer's body is
    /// returned.
    fn call(&self, method: &'static str, path: &str, body: Option<Value>) -> Result<String, ApiError> {
        self.balancers.try_in_turn(|base| self.call_one(method, &format!("{base}{path}"), body.clone()))
    }

    fn call_one(&self, method: &'static str, url: &str, body: Option<Value>) -> Result<String, ApiError> {
        let mut request = self.http.request(method, url);
        let auth = self.auth();
        if let Auth::Bearer(token) = &auth {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        match result {
            // A body cut short after a 2xx still means the server acted on the request.
            Ok(response) => Ok(response.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(status, response)) => {
                let reason = response.status_text().to_string();
                let text = response.into_string().unwrap_or_default();
                let hint = match (&auth, status) {
                    (Auth::None { reason }, 401) => {
                        format!(" (no bearer token was sent: {reason}; pass --token-file)")
                    }
                    _ => String::new(),
                };
                Err(ApiError::Status {
                    method,
                    url: url.to_string(),
                    status,
                    message: error_message(&text, &reason),
                    reason,
                    hint,
                })
            }
            Err(ureq::Error::Transport(transport)) => {
                let detail = transport_detail(&transport);
                let url = url.to_string();
                match transport.kind() {
                    ureq::ErrorKind::InvalidUrl | ureq::ErrorKind::UnknownScheme => {
                        Err(ApiError::Invalid { method, url, detail })
                    }
                    _ => Err(ApiError::Unreachable { method, url, detail }),
                }
            }
        }
    }
}

fn backends_path(service: &str) -> String {
    format!("/v1/services/{}/backends", encode_path_segment(service))
}

fn backend_path(service: &str, address: SocketAddr) -> String {
    format!("{}/{}", backends_path(service), encode_path_segment(&address.to_string()))
}

/// The server's `{"error": "..."}` text; else the body itself; else the reason phrase.
fn error_message(body: &str, reason: &str) -> String {
    if let Ok(Value::Object(object)) = serde_json::from_str::<Value>(body) {
        match object.get("error") {
            Some(Value::String(message)) => return message.clone(),
            Some(other) if !other.is_null() => return other.to_string(),
            _ => {}
        }
    }
    let body = body.trim();
    if body.is_empty() {
        return reason.to_string();
    }
    match body.char_indices().nth(MAX_ERROR_TEXT) {
        Some((cut, _)) => format!("{}...", &body[..cut]),
        None => body.to_string(),
    }
}

/// "Connection Failed: Connection refused (os error 111)", without ureq's repeated URL.
fn transport_detail(transport: &ureq::Transport) -> String {
    let mut detail = transport.kind().to_string();
    if let Some(message) = transport.message() {
        detail.push_str(": ");
        detail.push_str(message);
    }
    if let Some(source) = std::error::Error::source(transport) {
        detail.push_str(": ");
        detail.push_str(&source.to_string());
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_percent_encoded_as_one_segment() {
        assert_eq!(encode_path_segment("10.0.0.1:80"), "10.0.0.1%3A80");
        assert_eq!(encode_path_segment("[fd00:20::11]:80"), "%5Bfd00%3A20%3A%3A11%5D%3A80");
        assert_eq!(encode_path_segment("web-1_a.b~"), "web-1_a.b~");
        assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn api_urls_are_normalised_and_https_is_refused() {
        let url = |s: &str| s.parse::<ApiUrl>().map(|u| u.to_string());
        assert_eq!(url("http://127.0.0.1:9100/"), Ok("http://127.0.0.1:9100".into()));
        assert_eq!(url("127.0.0.1:9100"), Ok("http://127.0.0.1:9100".into()));
        assert_eq!(url("HTTP://[::1]:9100/lb/"), Ok("http://[::1]:9100/lb".into()));
        assert!(url("https://lb:9100").unwrap_err().contains("https is not supported"));
        assert!(url("ftp://lb").is_err());
        assert!(url("http://").is_err());
        assert!(url("http://lb:9100/?x=1").is_err());
    }

    #[test]
    fn error_text_comes_from_the_json_error_field() {
        assert_eq!(error_message(r#"{"error":"no such service"}"#, "Not Found"), "no such service");
        assert_eq!(error_message("plain text\n", "Bad Request"), "plain text");
        assert_eq!(error_message("", "Unauthorized"), "Unauthorized");
    }

    #[test]
    fn failures_are_classified_by_status() {
        let status = |status| ApiError::Status {
            method: "PUT",
            url: String::new(),
            status,
            reason: String::new(),
            message: String::new(),
            hint: String::new(),
        };
        assert_eq!(status(404).failure(), Failure::NotFound);
        assert_eq!(status(503).failure(), Failure::Transient);
        assert_eq!(status(429).failure(), Failure::Transient);
        assert_eq!(status(401).failure(), Failure::Unauthorized);
        assert_eq!(status(409).failure(), Failure::Transient);
        assert_eq!(status(400).failure(), Failure::Fatal);
        let unreachable = ApiError::Unreachable { method: "PUT", url: String::new(), detail: String::new() };
        assert_eq!(unreachable.failure(), Failure::Transient);
    }

    #[test]
    fn the_first_line_of_a_token_file_is_sent_and_a_reload_picks_up_a_new_one() {
        let path = std::env::temp_dir().join(format!("lb-client-token-{}", std::process::id()));
        std::fs::write(&path, "\n  new \nold\n").unwrap();
        let client = ApiClient::with_token_file("http://127.0.0.1:9".parse::<ApiUrl>().unwrap(), &path).unwrap();
        assert_eq!(client.auth(), Auth::Bearer("new".into()));
        assert!(!client.reload_token().unwrap(), "unchanged");
        std::fs::write(&path, "newer\n").unwrap();
        assert!(client.reload_token().unwrap());
        assert_eq!(client.auth(), Auth::Bearer("newer".into()));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_missing_token_file_means_no_token_with_a_reason() {
        let auth = Auth::from_token_file(Path::new("/nonexistent/lb/token")).unwrap();
        assert!(matches!(auth, Auth::None { reason } if reason.contains("does not exist")));
        assert!(Auth::from_token_file(Path::new("/")).is_err(), "a directory is an error");
    }
}
