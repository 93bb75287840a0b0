//! The seed's backend (server/backend.py) on loopback: no root needed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

const NAME: &str = "TestServer";
const WAIT: Duration = Duration::from_secs(10);

/// A backend process on a free port; killed on drop.
struct Backend {
    child: Child,
    port: u16,
    /// Whether it listens on "::" (dual-stack) rather than one address.
    dual_stack: bool,
    /// Its stdout lines after the start-up line.
    log: Receiver<String>,
}

impl Backend {
    fn start(env: &[(&str, &str)]) -> Backend {
        let mut child = Command::new(testenv::python())
            .arg(testenv::backend_script())
            .env("SERVER_NAME", NAME)
            .env("SERVER_PORT", "0")
            .env_remove("SERVER_IP")
            .env_remove("SERVER_BIND")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start backend.py");
        let (lines, log) = channel();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        // First line: `[TestServer] listening on [::]:PORT` (port 0 = any free one).
        let first = log.recv_timeout(WAIT).expect("backend start-up line");
        assert!(first.starts_with(&format!("[{NAME}] listening on ")), "{first}");
        let port = first.rsplit(':').next().unwrap().parse().expect("port in start-up line");
        let dual_stack = first.contains("[::]");
        Backend { child, port, dual_stack, log }
    }

    fn connect(&self, host: &str) -> Connection {
        let stream = TcpStream::connect((host, self.port)).expect("connect to backend");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        Connection { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream }
    }

    fn next_log_line(&self) -> String {
        self.log.recv_timeout(WAIT).expect("a log line")
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client connection that can carry several requests (keep-alive).
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// A string field of the flat JSON body (`"key": "value"`).
    fn field(&self, key: &str) -> String {
        let marker = format!("\"{key}\": \"");
        let start = self.body.find(&marker).unwrap_or_else(|| panic!("no {key} in {}", self.body)) + marker.len();
        let end = self.body[start..].find('"').expect("closing quote") + start;
        self.body[start..end].to_string()
    }
}

impl Connection {
    fn request(&mut self, method: &str, path: &str) -> Response {
        write!(self.writer, "{method} {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
        self.read_response(method == "HEAD")
    }

    fn read_response(&mut self, head: bool) -> Response {
        let mut status_line = String::new();
        self.reader.read_line(&mut status_line).unwrap();
        let mut parts = status_line.split_whitespace();
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
        let status = parts.next().unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (key, value) = line.split_once(':').expect("header line");
            headers.push((key.trim().to_string(), value.trim().to_string()));
        }
        let mut response = Response { status, headers, body: String::new() };
        if !head {
            let length: usize = response.header("Content-Length").unwrap().parse().unwrap();
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body).unwrap();
            response.body = String::from_utf8(body).unwrap();
        }
        response
    }
}

fn assert_seed_response(response: &Response, path: &str, ip: &str) {
    assert_eq!(response.status, 200);
    assert_eq!(response.header("Content-Type"), Some("application/json"));
    assert_eq!(response.header("X-Server"), Some(NAME));
    assert_eq!(response.field("server"), NAME);
    assert!(!response.field("hostname").is_empty());
    assert_eq!(response.field("ip"), ip);
    assert_eq!(response.field("path"), path);
    assert_eq!(response.field("message"), format!("Hello from {NAME}!"));
    let time = response.field("time");
    // ISO 8601: 2026-01-31T12:34:56.789+00:00
    assert!(time.len() >= 19 && &time[4..5] == "-" && &time[10..11] == "T", "time {time}");
}

#[test]
fn get_answers_the_seed_json() {
    let backend = Backend::start(&[("SERVER_BIND", "127.0.0.1")]);
    let response = backend.connect("127.0.0.1").request("GET", "/hello?x=1");
    assert_seed_response(&response, "/hello?x=1", "127.0.0.1");
    assert_eq!(response.header("Content-Length").unwrap(), response.body.len().to_string());
}

#[test]
fn server_ip_overrides_the_ip_field() {
    let backend = Backend::start(&[("SERVER_BIND", "127.0.0.1"), ("SERVER_IP", "172.20.0.11")]);
    let response = backend.connect("127.0.0.1").request("GET", "/");
    assert_seed_response(&response, "/", "172.20.0.11");
}

#[test]
fn keep_alive_serves_two_requests_on_one_connection() {
    let backend = Backend::start(&[("SERVER_BIND", "127.0.0.1")]);
    let mut connection = backend.connect("127.0.0.1");
    let first = connection.request("GET", "/one");
    let second = connection.request("GET", "/two");
    assert_seed_response(&first, "/one", "127.0.0.1");
    assert_seed_response(&second, "/two", "127.0.0.1");
    assert_ne!(first.header("Connection"), Some("close"));
}

#[test]
fn head_has_the_headers_and_no_body() {
    let backend = Backend::start(&[("SERVER_BIND", "127.0.0.1")]);
    let mut connection = backend.connect("127.0.0.1");
    let head = connection.request("HEAD", "/");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("X-Server"), Some(NAME));
    assert_eq!(head.header("Content-Type"), Some("application/json"));
    assert!(head.header("Content-Length").unwrap().parse::<usize>().unwrap() > 0);
    // Had HEAD sent a body, this would read it instead of a status line.
    let get = connection.request("GET", "/after-head");
    assert_seed_response(&get, "/after-head", "127.0.0.1");
}

#[test]
fn logs_each_request_prefixed_with_the_server_name() {
    let backend = Backend::start(&[("SERVER_BIND", "127.0.0.1")]);
    backend.connect("127.0.0.1").request("GET", "/logged");
    let line = backend.next_log_line();
    assert!(line.starts_with(&format!("[{NAME}] ")), "{line}");
    assert!(line.contains("\"GET /logged HTTP/1.1\" 200"), "{line}");
}

#[test]
fn default_bind_is_dual_stack() {
    let backend = Backend::start(&[]);
    let v4 = backend.connect("127.0.0.1").request("GET", "/v4");
    // An IPv4 client of the dual-stack socket is reported without ::ffff:.
    assert_seed_response(&v4, "/v4", "127.0.0.1");
    if backend.dual_stack {
        let v6 = backend.connect("::1").request("GET", "/v6");
        assert_seed_response(&v6, "/v6", "::1");
    }
}

#[test]
fn sigterm_stops_it_cleanly() {
    let mut backend = Backend::start(&[("SERVER_BIND", "127.0.0.1")]);
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(backend.child.id() as libc::pid_t, libc::SIGTERM) };
    let status = backend.child.wait().unwrap();
    assert!(status.success(), "exit status {status}");
    assert_eq!(backend.next_log_line(), format!("[{NAME}] stopped"));
}
