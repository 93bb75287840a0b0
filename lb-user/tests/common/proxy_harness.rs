//! The proxy tests' harness: each test alone on its own runtime with a leak check at the
//! end (tasks, fds), config text for services, real tokio backends (echo, HTTP, UDP,
//! resetting, never-accepting) and clients (names, HTTP/1.1).
#![allow(dead_code)]
use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lb_config::desired::Desired;
use lb_config::Config;
use lb_proxy::{ProxyDataplane, ProxyStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

// ---------------------------------------------------------------------------------------
// Running a test

static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs a test alone, on its own multi-threaded runtime: the lock is taken before the
/// runtime exists, so no other test's runtime or sockets come and go during its fd counts.
pub fn run(test: impl std::future::Future<Output = ()>) {
    let _serial = serial();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    rt.block_on(test);
}

pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

pub fn fd_list() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    dir.flatten()
        .map(|e| {
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path()).map(|p| p.display().to_string()).unwrap_or_default()
            )
        })
        .collect()
}

/// Panics if `f` takes longer than `limit`: no test can hang.
pub async fn within<T>(limit: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(limit, f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: not done within {limit:?}"),
    }
}

/// Shuts the proxy down, drops the test's servers, then checks nothing leaked: no task
/// left in the proxy's tracker, no more fds than at the start.
pub async fn finish(dp: ProxyDataplane, servers: Vec<Server>, fds_before: usize) -> Arc<ProxyStats> {
    let stats = dp.stats();
    within(Duration::from_secs(10), "shutdown", dp.shutdown(Duration::from_secs(2))).await;
    drop(servers);
    assert_clean(&stats, fds_before).await;
    stats
}

pub async fn assert_clean(stats: &ProxyStats, fds_before: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (tasks, fds) = (stats.live_tasks(), fd_count());
        if tasks == 0 && fds <= fds_before {
            return;
        }
        if Instant::now() > deadline {
            panic!(
                "leak: {tasks} proxy tasks alive, {fds} fds open (started with {fds_before}):\n{}",
                fd_list().join("\n")
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A port free on every address, for a VIP. Taken below the kernel's ephemeral range, so no
/// client socket (of this or a concurrently running test process) is handed it meanwhile.
pub fn free_port(udp: bool) -> u16 {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next().and_then(|p| p.parse::<u16>().ok()))
        .unwrap_or(32768);
    let (from, to) = if low > 12_000 { (10_000, low) } else { (61_000, 65_535) };
    for _ in 0..1000 {
        let port = from + rand::random::<u16>() % (to - from);
        let free = |addr: &str| {
            let addr: SocketAddr = format!("{addr}:{port}").parse().unwrap();
            if udp {
                std::net::UdpSocket::bind(addr).is_ok()
            } else {
                std::net::TcpListener::bind(addr).is_ok()
            }
        };
        if free("0.0.0.0") && free("[::]") {
            return port;
        }
    }
    panic!("no free port between {from} and {to}");
}

pub fn free_tcp_port() -> u16 {
    free_port(false)
}

pub fn free_udp_port() -> u16 {
    free_port(true)
}

pub fn vip_tcp() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()))
}

/// A loopback port nothing listens on (connects are refused).
pub fn refused_addr() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, free_tcp_port()))
}

pub fn config(daemon_extra: &str, services: &str) -> Config {
    let text =
        format!("[daemon]\nmode = \"proxy\"\nworkers = 2\nconnect_timeout = \"300ms\"\n{daemon_extra}\n{services}");
    Config::from_str(&text, "test.toml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// One `[[service]]`: `keys` go right after the VIP, `tables` after the backends' list
/// would be ambiguous, so sub-tables (`[service.pool]`) come through `keys` as inline tables.
pub fn service(name: &str, vip: SocketAddr, keys: &str, backends: &[(SocketAddr, u32)]) -> String {
    let mut s =
        format!("[[service]]\nname = \"{name}\"\nvip = \"{vip}\"\n{keys}\nhealth_check = {{ type = \"none\" }}\n");
    for (a, w) in backends {
        s += &format!("[[service.backend]]\naddress = \"{a}\"\nweight = {w}\n");
    }
    s
}

pub fn w1(addrs: &[SocketAddr]) -> Vec<(SocketAddr, u32)> {
    addrs.iter().map(|a| (*a, 1)).collect()
}

/// An HTTP-mode service, round robin.
pub fn http_service(name: &str, vip: SocketAddr, extra: &str, backends: &[SocketAddr]) -> String {
    service(name, vip, &format!("proxy_mode = \"http\"\nalgorithm = \"round_robin\"\n{extra}"), &w1(backends))
}

pub fn start(cfg: &Config) -> ProxyDataplane {
    ProxyDataplane::start(&Desired::from_config(cfg)).unwrap_or_else(|e| panic!("proxy start: {e:#}"))
}

/// A backend's (succeeded, failed) outcomes; a backend with nothing new is not listed.
pub fn outcome_of(outcomes: &[lb_control::Outcome], service: &str, backend: SocketAddr) -> (u64, u64) {
    outcomes
        .iter()
        .find(|o| o.backend.service == service && o.backend.address == backend)
        .map_or((0, 0), |o| (o.succeeded, o.failed))
}

// ---------------------------------------------------------------------------------------
// Backends

/// A test server; dropping it stops it and closes all its sockets.
pub struct Server {
    pub addr: SocketAddr,
    pub name: String,
    /// Connections accepted.
    pub accepted: Arc<AtomicUsize>,
    /// Requests (or datagrams) served.
    pub requests: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves each accepted connection with `handler`, counting connections.
pub async fn tcp_server<F, Fut>(name: &str, handler: F) -> Server
where
    F: Fn(TcpStream, String, Arc<AtomicUsize>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    tcp_server_on("127.0.0.1:0", name, handler).await
}

pub async fn tcp_server_on<F, Fut>(bind: &str, name: &str, handler: F) -> Server
where
    F: Fn(TcpStream, String, Arc<AtomicUsize>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, r, n) = (accepted.clone(), requests.clone(), name.to_string());
    let task = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                Ok((s, _)) = listener.accept() => {
                    a.fetch_add(1, Ordering::SeqCst);
                    conns.spawn(handler(s, n.clone(), r.clone()));
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
    });
    Server { addr, name: name.to_string(), accepted, requests, task }
}

/// Writes its name and a newline, then echoes until EOF, then closes its side.
pub async fn tagged_echo(name: &str) -> Server {
    tagged_echo_on("127.0.0.1:0", name).await
}

pub async fn tagged_echo_on(bind: &str, name: &str) -> Server {
    tcp_server_on(bind, name, |mut s, name, _| async move {
        if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
            return;
        }
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
}

/// Reads a little, answers "partial", then resets the connection.
pub async fn resetting_backend() -> Server {
    tcp_server("reset", |mut s, _, _| async move {
        let mut buf = [0u8; 64];
        let _ = s.read(&mut buf).await;
        let _ = s.write_all(b"partial").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    })
    .await
}

#[derive(Clone, Copy, Default)]
pub struct HttpOpts {
    /// Close a keep-alive connection that stays idle this long.
    pub idle_close: Option<Duration>,
    /// Answer one request per connection; on the next one, close without a response (the
    /// race of a backend closing an idle connection just as the proxy reuses it).
    pub drop_second_request: bool,
    /// Wait this long before answering.
    pub delay: Option<Duration>,
}

/// A tiny HTTP/1.1 server: keep-alive, Content-Length bodies, answers 200 with
/// `server=NAME` and every request header it received (lowercased) in the body, plus some
/// hop-by-hop headers the proxy must not pass on.
pub async fn http_backend(name: &str, opts: HttpOpts) -> Server {
    tcp_server(name, move |mut s, name, requests| async move {
        let mut buf = Vec::new();
        let mut served = 0usize;
        loop {
            let wait =
                if served > 0 { opts.idle_close.unwrap_or(Duration::from_secs(30)) } else { Duration::from_secs(30) };
            let Ok(Some((head, body_start))) = tokio::time::timeout(wait, read_head(&mut s, &mut buf)).await else {
                return;
            };
            if opts.drop_second_request && served >= 1 {
                return;
            }
            let (_, headers) = parse_head(&head);
            let len: usize = header(&headers, "content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            buf.drain(..body_start);
            while buf.len() < len {
                let mut chunk = [0u8; 8192];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            buf.drain(..len);
            if let Some(d) = opts.delay {
                tokio::time::sleep(d).await;
            }
            requests.fetch_add(1, Ordering::SeqCst);
            let mut body = format!("server={name}\n");
            for (k, v) in &headers {
                body += &format!("{k}: {v}\n");
            }
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Server: {name}\r\nKeep-Alive: timeout=60\r\n\
                 Connection: keep-alive, X-Resp-Hop\r\nX-Resp-Hop: secret\r\nProxy-Connection: keep-alive\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            );
            if s.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
            served += 1;
        }
    })
    .await
}

/// A backend that switches protocols: to a request asking for `Upgrade: echo` (with
/// `Connection: upgrade`) it answers `101 Switching Protocols`, sends `hello from NAME\n`
/// right behind the head, then echoes every byte until the client is done (its FIN passed
/// on as ours). Any other request gets a 400 and the connection is closed.
pub async fn upgrade_backend(name: &str) -> Server {
    tcp_server(name, |mut s, name, requests| async move {
        let mut buf = Vec::new();
        let Some((head, start)) = read_head(&mut s, &mut buf).await else { return };
        let (_, headers) = parse_head(&head);
        let asks = header(&headers, "upgrade") == Some("echo")
            && header(&headers, "connection").is_some_and(|c| c.to_ascii_lowercase().contains("upgrade"));
        if !asks {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").await;
            return;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let hello = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello from {name}\n"
        );
        if s.write_all(hello.as_bytes()).await.is_err() || s.write_all(&buf[start..]).await.is_err() {
            return;
        }
        let (mut r, mut w) = s.split();
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    })
    .await
}

/// Reads until the end of a message head; returns it and where the body starts in `buf`.
pub async fn read_head(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, usize)> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((String::from_utf8_lossy(&buf[..i]).into_owned(), i + 4));
        }
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

pub fn parse_head(head: &str) -> (String, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default().to_string();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (first, headers)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Replies `NAME:` + each datagram to its sender.
pub async fn udp_echo(name: &str) -> Server {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let (r, n) = (requests.clone(), name.to_string());
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 65536];
        while let Ok((len, from)) = socket.recv_from(&mut buf).await {
            r.fetch_add(1, Ordering::SeqCst);
            let mut reply = format!("{n}:").into_bytes();
            reply.extend_from_slice(&buf[..len]);
            let _ = socket.send_to(&reply, from).await;
        }
    });
    Server { addr, name: name.to_string(), accepted: Arc::new(AtomicUsize::new(0)), requests, task }
}

/// A listener that never accepts, its one-slot accept queue already full: further SYNs are
/// dropped by the kernel, so connects to it time out.
pub struct Hanging {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _queued: Vec<std::net::TcpStream>,
}

pub fn hanging_backend() -> Hanging {
    use socket2::{Domain, Socket, Type};
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into()).unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut queued = Vec::new();
    for _ in 0..8 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => queued.push(s),
            Err(_) => return Hanging { addr, _listener: l, _queued: queued },
        }
    }
    panic!("the accept queue of {addr} never filled");
}

/// Answers every request with `500` (keep-alive).
pub async fn failing_http_backend() -> Server {
    tcp_server("fail", |mut s, _, requests| async move {
        let mut buf = Vec::new();
        while let Some((_, start)) = read_head(&mut s, &mut buf).await {
            buf.drain(..start);
            requests.fetch_add(1, Ordering::SeqCst);
            if s.write_all(b"HTTP/1.1 500 Internal Server Error\r\nX-Server: fail\r\nContent-Length: 4\r\n\r\nfail")
                .await
                .is_err()
            {
                return;
            }
        }
    })
    .await
}

/// Accepts, then resets at once: the connect works, the flow does not.
pub async fn accept_and_reset_backend() -> Server {
    tcp_server("rst", |s, _, _| async move {
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
    .await
}

// ---------------------------------------------------------------------------------------
// Clients

/// Connects through the proxy and reads the backend's name.
pub async fn ask_name(vip: SocketAddr) -> String {
    let s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
    read_name(s).await
}

pub async fn read_name(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    within(Duration::from_secs(5), "read the backend's name", async {
        while s.read(&mut b).await.unwrap_or(0) == 1 && b[0] != b'\n' {
            out.push(b[0]);
        }
    })
    .await;
    String::from_utf8(out).unwrap()
}

/// Connects from a given local address.
pub async fn connect_from(local: SocketAddr, vip: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(local).unwrap();
    within(Duration::from_secs(5), "connect", s.connect(vip)).await.unwrap()
}

pub fn count(names: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for n in names {
        *m.entry(n).or_insert(0) += 1;
    }
    m
}

/// A minimal HTTP/1.1 client over one connection (Content-Length responses only).
pub struct HttpClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpClient {
    pub async fn connect(vip: SocketAddr) -> Self {
        Self::over(within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap())
    }

    /// A client over a connection already open.
    pub fn over(stream: TcpStream) -> Self {
        HttpClient { stream, buf: Vec::new() }
    }

    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> io::Result<HttpResponse> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n");
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        if !body.is_empty() {
            req += &format!("Content-Length: {}\r\n", body.len());
        }
        req += "\r\n";
        req += body;
        within(Duration::from_secs(10), "http request", async {
            self.stream.write_all(req.as_bytes()).await?;
            let (head, start) = read_head(&mut self.stream, &mut self.buf)
                .await
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no response"))?;
            let (status_line, headers) = parse_head(&head);
            let status: u16 = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
            let len: usize = header(&headers, "content-length")
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| io::Error::other(format!("no content-length: {head}")))?;
            self.buf.drain(..start);
            while self.buf.len() < len {
                let mut chunk = [0u8; 8192];
                match self.stream.read(&mut chunk).await? {
                    0 => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "body cut short")),
                    n => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = String::from_utf8_lossy(&self.buf[..len]).into_owned();
            self.buf.drain(..len);
            Ok(HttpResponse { status, headers, body })
        })
        .await
    }

    pub async fn get(&mut self, path: &str) -> HttpResponse {
        self.send("GET", path, &[], "").await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
}

pub fn server_of(r: &HttpResponse) -> String {
    header(&r.headers, "x-server").unwrap_or_default().to_string()
}

/// Reads until EOF or error: true if the proxy closed (or reset) the connection without
/// sending anything.
pub async fn closed_without_data(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(within(Duration::from_secs(3), "client closed", s.read(&mut buf)).await, Ok(0) | Err(_))
}

/// Writes a line and expects the echo back (the connection is alive and served).
pub async fn echoes(s: &mut TcpStream, line: &str) {
    s.write_all(line.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; line.len()];
    within(Duration::from_secs(3), "echo", s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(buf, line.as_bytes());
}

/// Keep-alive clients sending GETs as fast as they can for `for_`: requests per second.
pub async fn hammer(vip: SocketAddr, clients: usize, for_: Duration) -> f64 {
    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + for_;
    let mut set = JoinSet::new();
    for _ in 0..clients {
        let done = done.clone();
        set.spawn(async move {
            let mut c = HttpClient::connect(vip).await;
            while Instant::now() < deadline {
                if !matches!(c.send("GET", "/bench", &[], "").await.map(|r| r.status), Ok(200)) {
                    break;
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    within(for_ + Duration::from_secs(20), "bench clients", async { while set.join_next().await.is_some() {} }).await;
    done.load(Ordering::Relaxed) as f64 / for_.as_secs_f64()
}
