//! The proxy against hostile or careless clients, on loopback with real backends: the HTTP
//! mode's header timeout (408, or a silent close), header size (431), requests whose
//! length is ambiguous or malformed (400), no second send of a POST that went out, the
//! connection caps per service and per source (l4, http, UDP), the source lists (`allow`,
//! `deny`) refusing at accept, and accept surviving the
//! process running out of descriptors. As in `proxy.rs`, every test ends by checking that
//! no proxy task and no descriptor is left (the harness's `finish`). No root.
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::proxy_harness::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::task::JoinSet;

/// Everything the proxy sends until it closes (or `limit` passes): the raw answer.
async fn read_all(s: &mut TcpStream, limit: Duration) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `raw` as one request and returns the status line of the answer.
async fn status_of(vip: SocketAddr, raw: &[u8]) -> String {
    let mut s = within(Duration::from_secs(5), "connect", TcpStream::connect(vip)).await.unwrap();
    s.write_all(raw).await.unwrap();
    let answer = read_all(&mut s, Duration::from_secs(5)).await;
    answer.lines().next().unwrap_or_default().to_string()
}

fn metric(dp: &lb_proxy::ProxyDataplane, line_start: &str) -> u64 {
    let text = dp.stats().render_metrics();
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {line_start}:\n{text}"))
}

/// `rejected` once it has reached `expected`, or after 2 s: a connection's rejection is
/// counted as its handler ends, which may be just after the client read the answer.
async fn rejected_once(dp: &lb_proxy::ProxyDataplane, reason: &str, expected: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while rejected(dp, reason) < expected && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    rejected(dp, reason)
}

fn rejected(dp: &lb_proxy::ProxyDataplane, reason: &str) -> u64 {
    metric(dp, &format!("lb_proxy_http_rejected_total{{service=\"web\",reason=\"{reason}\",path=\"proxy\"}}"))
}

fn refused(dp: &lb_proxy::ProxyDataplane, scope: &str) -> u64 {
    metric(dp, &format!("lb_proxy_connections_refused_total{{service=\"web\",scope=\"{scope}\",path=\"proxy\"}}"))
}

// ---------------------------------------------------------------------------------------
// HTTP: the request head

#[test]
fn http_head_cut_by_the_header_timeout_gets_408_and_a_silent_connection_is_closed() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("http_header_timeout = \"500ms\"", &http_service("web", vip, "", &[servers[0].addr])));
        let started = Instant::now();
        let mut partial = TcpStream::connect(vip).await.unwrap();
        partial.write_all(b"GET /slow HTTP/1.1\r\nHost: test\r\nX-Part").await.unwrap();
        let mut silent = TcpStream::connect(vip).await.unwrap();
        let answer = read_all(&mut partial, Duration::from_secs(5)).await;
        let waited = started.elapsed();
        assert!(answer.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{answer:?}");
        assert!(answer.to_ascii_lowercase().contains("connection: close"), "{answer:?}");
        assert!(waited >= Duration::from_millis(450) && waited < Duration::from_secs(3), "408 after {waited:?}");
        assert_eq!(read_all(&mut silent, Duration::from_secs(5)).await, "", "nothing read: closed without an answer");
        assert!(started.elapsed() < Duration::from_secs(3));
        // A keep-alive client is served, then closed once it sends nothing for the timeout.
        let mut c = HttpClient::connect(vip).await;
        assert_eq!(c.get("/ok").await.status, 200);
        assert!(closed_without_data(c.stream).await);
        assert_eq!(servers[0].requests.load(Ordering::SeqCst), 1, "the cut head never reached a backend");
        assert_eq!(rejected_once(&dp, "header_timeout", 1).await, 1, "only the cut head counts");
        drop((partial, silent));
        finish(dp, servers, fds).await;
    });
}

/// 200 clients each sending a head one byte every 250 ms are all cut at the 1 s header
/// timeout, while a normal client is served all along.
#[test]
fn slowloris_clients_are_cut_at_the_header_timeout_while_a_normal_client_is_served() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("http_header_timeout = \"1s\"", &http_service("web", vip, "", &[servers[0].addr])));
        let started = Instant::now();
        let mut slow = JoinSet::new();
        for i in 0..200 {
            slow.spawn(async move {
                let mut s = TcpStream::connect(vip).await.unwrap();
                let head = format!("GET /slow/{i} HTTP/1.1\r\nHost: test\r\nX-Slow: {}\r\n\r\n", "y".repeat(40));
                // At most 20 bytes (5 s): the head would take 18 s to finish.
                for b in head.bytes().take(20) {
                    if s.write_all(&[b]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                let answer = read_all(&mut s, Duration::from_secs(5)).await;
                (answer, started.elapsed())
            });
        }
        let mut normal = HttpClient::connect(vip).await;
        for i in 0..8 {
            let t = Instant::now();
            assert_eq!(normal.get(&format!("/normal/{i}")).await.status, 200);
            assert!(t.elapsed() < Duration::from_millis(500), "a normal request took {:?}", t.elapsed());
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let mut cut = 0;
        while let Some(r) = slow.join_next().await {
            let (answer, at) = r.unwrap();
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
            assert!(at < Duration::from_secs(4), "cut only after {at:?}");
            cut += 1;
        }
        assert_eq!(cut, 200);
        assert_eq!(rejected_once(&dp, "header_timeout", 200).await, 200);
        assert_eq!(servers[0].requests.load(Ordering::SeqCst), 8);
        drop(normal);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_head_larger_than_http_max_header_size_gets_431() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("http_max_header_size = 2048", &http_service("web", vip, "", &[servers[0].addr])));
        let big = format!("GET / HTTP/1.1\r\nHost: test\r\nCookie: {}\r\n\r\n", "c".repeat(4000));
        assert_eq!(status_of(vip, big.as_bytes()).await, "HTTP/1.1 431 Request Header Fields Too Large");
        let fits = format!("GET / HTTP/1.1\r\nHost: test\r\nCookie: {}\r\n\r\n", "c".repeat(1500));
        let mut c = HttpClient::connect(vip).await;
        c.stream.write_all(fits.as_bytes()).await.unwrap();
        let answer = read_all(&mut c.stream, Duration::from_millis(500)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        assert_eq!(servers[0].requests.load(Ordering::SeqCst), 1);
        assert_eq!(rejected_once(&dp, "header_too_large", 1).await, 1);
        drop(c);
        finish(dp, servers, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// HTTP: request smuggling basics

#[test]
fn http_request_with_content_length_and_transfer_encoding_gets_400_in_either_order() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        for head in [
            "POST /a HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /b HTTP/1.1\r\nHost: test\r\ntransfer-encoding: chunked\r\ncontent-length: 30\r\n\r\n",
        ] {
            let raw = format!("{head}4\r\nwxyz\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: test\r\n\r\n");
            let mut s = TcpStream::connect(vip).await.unwrap();
            s.write_all(raw.as_bytes()).await.unwrap();
            let answer = read_all(&mut s, Duration::from_secs(5)).await;
            assert!(answer.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer:?}");
            assert_eq!(answer.matches("HTTP/1.1").count(), 1, "nothing after the 400: {answer:?}");
        }
        assert_eq!(servers[0].requests.load(Ordering::SeqCst), 0, "a refused request reached a backend");
        // A request with a chunked body alone, and one with a length alone, go through.
        let mut chunked = HttpClient::connect(vip).await;
        chunked
            .stream
            .write_all(b"POST /c HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\n\r\n")
            .await
            .unwrap();
        let answer = read_all(&mut chunked.stream, Duration::from_millis(500)).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        let mut c = HttpClient::connect(vip).await;
        assert_eq!(c.send("POST", "/d", &[], "body").await.unwrap().status, 200);
        drop(chunked);
        assert_eq!(rejected_once(&dp, "conflicting_length", 2).await, 2);
        drop(c);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_differing_content_lengths_obs_fold_and_bad_header_names_get_400() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let bad: [&[u8]; 4] = [
            b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            b"GET / HTTP/1.1\r\nHost: test\r\nX-Folded: a\r\n  b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: test\r\nBad Name: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: test\r\nX-Ctl\x01: a\r\n\r\n",
        ];
        for raw in bad {
            assert_eq!(status_of(vip, raw).await, "HTTP/1.1 400 Bad Request", "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(servers[0].requests.load(Ordering::SeqCst), 0);
        assert_eq!(rejected_once(&dp, "malformed", 4).await, 4);
        finish(dp, servers, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// HTTP: retries

/// The backend reads each pooled connection's second request and closes without an
/// answer: the request went out, so a POST must not be sent again (the backend may have
/// acted on it), while a GET may. A POST whose connect is refused (nothing sent) moves on.
#[test]
fn http_post_is_never_sent_twice_once_its_bytes_went_out() {
    run(async {
        let fds = fd_count();
        let opts = HttpOpts { drop_second_request: true, ..Default::default() };
        let servers = vec![http_backend("h1", opts).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[servers[0].addr])));
        let mut c = HttpClient::connect(vip).await;
        assert_eq!(c.send("POST", "/1", &[], "data").await.unwrap().status, 200);
        // On the pooled connection, which the backend drops after reading the request.
        let r = c.send("POST", "/2", &[], "data").await.unwrap();
        assert_eq!(r.status, 502, "{r:?}");
        assert_eq!(servers[0].accepted.load(Ordering::SeqCst), 1, "the POST was sent again");
        // A GET in the same spot is sent again, on a fresh connection.
        assert_eq!(c.send("GET", "/3", &[], "").await.unwrap().status, 200);
        assert_eq!(c.send("GET", "/4", &[], "").await.unwrap().status, 200);
        assert_eq!(servers[0].accepted.load(Ordering::SeqCst), 3);
        drop(c);
        let stats = finish(dp, servers, fds).await;
        drop(stats);

        // Nothing sent (the connect is refused): the POST goes to the next backend.
        let fds = fd_count();
        let ok = http_backend("ok", HttpOpts::default()).await;
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "", &[refused_addr(), ok.addr])));
        let mut c = HttpClient::connect(vip).await;
        for i in 0..4 {
            let r = c.send("POST", &format!("/p/{i}"), &[], "data").await.unwrap();
            assert_eq!((r.status, server_of(&r).as_str()), (200, "ok"), "{r:?}");
        }
        drop(c);
        finish(dp, vec![ok], fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// Connection caps

async fn connect_from_ip(ip: Ipv4Addr, vip: SocketAddr) -> TcpStream {
    connect_from(SocketAddr::new(IpAddr::V4(ip), 0), vip).await
}

/// A connection from `ip` is closed by the proxy with nothing sent: refused at accept (the
/// reset may even come before the connect returns).
async fn refused_at_accept(ip: Ipv4Addr, vip: SocketAddr) -> bool {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::V4(ip), 0)).unwrap();
    let Ok(mut s) = within(Duration::from_secs(5), "connect", s.connect(vip)).await else { return true };
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n").await;
    read_all(&mut s, Duration::from_secs(3)).await.is_empty()
}

#[test]
fn l4_connections_past_the_per_source_cap_are_reset_and_other_sources_are_served() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "max_connections_per_source = 3", &w1(&[servers[0].addr]))));
        let greedy = Ipv4Addr::new(127, 0, 0, 2);
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut s = connect_from_ip(greedy, vip).await;
            let mut name = [0u8; 2];
            within(Duration::from_secs(3), "name", s.read_exact(&mut name)).await.unwrap();
            echoes(&mut s, "hi\n").await;
            held.push(s);
        }
        for _ in 0..5 {
            assert!(refused_at_accept(greedy, vip).await, "a 4th connection was served");
        }
        assert_eq!(read_name(connect_from_ip(Ipv4Addr::new(127, 0, 0, 3), vip).await).await, "a");
        assert_eq!(refused(&dp, "source"), 5);
        // One of the three ends: the source may open one more.
        drop(held.pop());
        within(Duration::from_secs(3), "a slot given back", async {
            loop {
                let s = TcpSocket::new_v4().unwrap();
                s.bind(SocketAddr::new(IpAddr::V4(greedy), 0)).unwrap();
                let mut b = [0u8; 2];
                if let Ok(mut s) = s.connect(vip).await {
                    if s.read_exact(&mut b).await.is_ok() {
                        assert_eq!(&b, b"a\n");
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        drop(held);
        finish(dp, servers, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// Source lists

#[test]
fn l4_sources_the_service_denies_or_does_not_allow_are_refused_at_accept_and_counted() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let vip = vip_tcp();
        let lists = "allow = [\"127.0.0.0/24\"]\ndeny = [\"127.0.0.2\"]";
        let dp = start(&config("", &service("web", vip, lists, &w1(&[servers[0].addr]))));
        assert_eq!(read_name(connect_from_ip(Ipv4Addr::new(127, 0, 0, 1), vip).await).await, "a", "allowed");
        for _ in 0..3 {
            assert!(refused_at_accept(Ipv4Addr::new(127, 0, 0, 2), vip).await, "denied, although inside allow");
        }
        assert!(refused_at_accept(Ipv4Addr::new(127, 0, 1, 1), vip).await, "outside allow");
        assert_eq!(read_name(connect_from_ip(Ipv4Addr::new(127, 0, 0, 3), vip).await).await, "a", "allowed");
        assert_eq!(metric(&dp, "lb_acl_denied_total{service=\"web\",path=\"proxy\"}"), 4);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn http_client_connections_past_the_service_cap_are_refused_at_accept() {
    run(async {
        let fds = fd_count();
        let servers = vec![http_backend("h1", HttpOpts::default()).await];
        let vip = vip_tcp();
        let dp = start(&config("", &http_service("web", vip, "max_client_connections = 2", &[servers[0].addr])));
        // Two keep-alive clients from two sources hold the service's two places.
        let mut a = HttpClient::over(connect_from_ip(Ipv4Addr::new(127, 0, 0, 2), vip).await);
        let mut b = HttpClient::over(connect_from_ip(Ipv4Addr::new(127, 0, 0, 3), vip).await);
        assert_eq!(a.get("/a").await.status, 200);
        assert_eq!(b.get("/b").await.status, 200);
        assert!(refused_at_accept(Ipv4Addr::new(127, 0, 0, 4), vip).await, "a third connection was served");
        assert_eq!(refused(&dp, "service"), 1);
        assert_eq!(a.get("/a2").await.status, 200, "the connections held are served on");
        drop(b);
        within(Duration::from_secs(3), "a place given back", async {
            loop {
                if let Ok(s) = TcpStream::connect(vip).await {
                    if let Ok(r) = HttpClient::over(s).send("GET", "/c", &[], "").await {
                        assert_eq!(r.status, 200);
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        drop(a);
        finish(dp, servers, fds).await;
    });
}

#[test]
fn udp_sessions_past_the_per_source_cap_are_not_opened() {
    run(async {
        let fds = fd_count();
        let servers = vec![udp_echo("u").await];
        let vip = SocketAddr::from((Ipv4Addr::LOCALHOST, free_udp_port()));
        let keys = "protocol = \"udp\"\nmax_connections_per_source = 2";
        let dp = start(&config("", &service("web", vip, keys, &w1(&[servers[0].addr]))));
        let mut answered = 0;
        let mut clients = Vec::new();
        for _ in 0..4 {
            let c = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            c.send_to(b"ping", vip).await.unwrap();
            let mut buf = [0u8; 64];
            if let Ok(Ok((n, _))) = tokio::time::timeout(Duration::from_millis(500), c.recv_from(&mut buf)).await {
                assert_eq!(&buf[..n], b"u:ping");
                answered += 1;
            }
            clients.push(c);
        }
        assert_eq!(answered, 2, "two sessions from one source, no more");
        assert_eq!(dp.udp_sessions("web"), 2);
        assert_eq!(refused(&dp, "source"), 2);
        // Another source is not affected.
        let other = UdpSocket::bind("127.0.0.5:0").await.unwrap();
        other.send_to(b"ping", vip).await.unwrap();
        let mut buf = [0u8; 64];
        within(Duration::from_secs(2), "reply", other.recv_from(&mut buf)).await.unwrap();
        drop((clients, other));
        finish(dp, servers, fds).await;
    });
}

// ---------------------------------------------------------------------------------------
// Out of descriptors

/// The process's descriptor limit, lowered for a while: `fill` takes every free descriptor
/// below it, so the next accept or socket fails with EMFILE. Dropped: all back as it was.
struct Starved {
    old: libc::rlimit,
    fillers: Vec<std::fs::File>,
}

impl Starved {
    fn new() -> Self {
        let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit write and read only the struct passed.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
        let highest =
            fd_list().iter().filter_map(|l| l.split(' ').next().and_then(|n| n.parse::<u64>().ok())).max().unwrap_or(0);
        let low = libc::rlimit { rlim_cur: highest + 8, rlim_max: old.rlim_max };
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);
        let mut fillers = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            fillers.push(f);
            assert!(fillers.len() < 100_000);
        }
        Starved { old, fillers }
    }

    /// Gives `n` descriptors back.
    fn release(&mut self, n: usize) {
        for _ in 0..n {
            self.fillers.pop();
        }
    }
}

impl Drop for Starved {
    fn drop(&mut self) {
        self.fillers.clear();
        // SAFETY: as above.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.old) };
    }
}

/// Waits until the proxy has no connection left and the process no more descriptors than
/// `fds` (sockets of connections just ended close a moment later); returns the count.
async fn settle(dp: &lb_proxy::ProxyDataplane, fds: usize) -> usize {
    within(Duration::from_secs(5), "connections closed", async {
        while dp.stats().tasks().live_of(lb_proxy::TaskKind::Connection) > 0 || fd_count() > fds {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    fd_count()
}

/// CPU time the process has used (user + system), from /proc/self/stat, opened ahead so
/// that it can be read while no descriptor is free.
struct CpuClock(std::fs::File);

impl CpuClock {
    fn new() -> Self {
        CpuClock(std::fs::File::open("/proc/self/stat").unwrap())
    }

    fn now(&mut self) -> Duration {
        use std::io::{Read, Seek};
        let mut stat = String::new();
        self.0.seek(std::io::SeekFrom::Start(0)).unwrap();
        self.0.read_to_string(&mut stat).unwrap();
        cpu_time(&stat)
    }
}

fn cpu_time(stat: &str) -> Duration {
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = after.split(' ').map(|x| x.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 (utime, stime), in clock ticks; `after` starts at field 3.
    let ticks = f[11] + f[12];
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// EMFILE on accept: the listener backs off instead of spinning or ending, and serves the
/// clients that queued meanwhile once descriptors are free. A connect that fails for want
/// of a descriptor is the proxy's failure, not the backend's: no failed outcome for it.
#[test]
fn accept_survives_the_process_running_out_of_descriptors() {
    run(async {
        let fds = fd_count();
        let servers = vec![tagged_echo("a").await];
        let vip = vip_tcp();
        let dp = start(&config("", &service("web", vip, "", &w1(&[servers[0].addr]))));
        // The clients' sockets exist before the starvation: only the proxy runs short.
        let sockets: Vec<TcpSocket> = (0..4).map(|_| TcpSocket::new_v4().unwrap()).collect();
        let mut sockets = sockets.into_iter();
        let mut clock = CpuClock::new();
        let settled = fd_count();
        assert_eq!(ask_name(vip).await, "a");
        settle(&dp, settled).await;
        let cpu_before = clock.now();
        let starved = Starved::new();
        let mut queued = Vec::new();
        for s in sockets.by_ref().take(3) {
            // The kernel completes the handshake; the proxy cannot accept.
            queued.push(within(Duration::from_secs(2), "connect", s.connect(vip)).await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        let spent = clock.now().saturating_sub(cpu_before);
        assert!(spent < Duration::from_millis(300), "the accept loop spun: {spent:?} of CPU in 600 ms");
        assert_eq!(dp.stats().tasks().live_of(lb_proxy::TaskKind::Listener), 2, "a listener gave up");
        drop(starved);
        // Descriptors back: the clients that queued are served.
        for c in queued {
            assert_eq!(read_name(c).await, "a");
        }

        // One descriptor free: the connection is accepted, but its connect to the backend
        // finds none; the client is closed, and the backend is not blamed.
        settle(&dp, settled).await;
        let mut starved = Starved::new();
        let last = sockets.next().unwrap();
        let mut client = within(Duration::from_secs(2), "connect", last.connect(vip)).await.unwrap();
        starved.release(1);
        let mut b = [0u8; 2];
        let got = within(Duration::from_secs(3), "closed", client.read(&mut b)).await;
        assert!(matches!(got, Ok(0) | Err(_)), "{got:?}");
        let c = dp.stats().backend("web", servers[0].addr).unwrap();
        assert_eq!((c.failed_total, c.connect_failures_total), (0, 0), "a local EMFILE counted against the backend");
        drop(starved);
        assert_eq!(ask_name(vip).await, "a");
        drop((client, clock));
        finish(dp, servers, fds).await;
    });
}
