//! The admin API's connections (`api/listener.rs`): at most `max_connections` at once (one
//! more is closed at once and counted), a connection that sends no request head within
//! `header_read` is closed, whether new or idle after a response, and the API keeps
//! answering throughout. Against a controller that is never asked anything: `/healthz`
//! needs none.
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use lb_control::{ControlHandle, Telemetry};
use lb_user::api::{serve_with, ApiState, ConnectionLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

struct Api {
    addr: std::net::SocketAddr,
    telemetry: Arc<Telemetry>,
    _stop: oneshot::Sender<()>,
    _commands: mpsc::Receiver<lb_control::Request>,
}

async fn start(limits: ConnectionLimits) -> Api {
    let (tx, commands) = mpsc::channel(16);
    let telemetry = Arc::new(Telemetry::default());
    let state = ApiState {
        control: ControlHandle::new(tx),
        token: Arc::new(RwLock::new(lb_config::Tokens::default())),
        admin_listen: "127.0.0.1:9100".parse().unwrap(),
        flow_walks: lb_user::api::FlowWalks::default(),
        telemetry: telemetry.clone(),
        pin_path: PathBuf::from("/nonexistent/lb-api-connections-test"),
        ready: lb_control::ReadyFlag::new(true),
        proxy: None,
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop) = oneshot::channel::<()>();
    tokio::spawn(serve_with(listener, state, limits, async move {
        let _ = stop.await;
    }));
    Api { addr, telemetry, _stop: stop_tx, _commands: commands }
}

/// One keep-alive request on `s`; the status code.
async fn healthz(s: &mut TcpStream) -> u16 {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.expect("an answer").unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Waits (bounded) for the server to close `s`; how long that took.
async fn closed_within(s: &mut TcpStream, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 64];
    match tokio::time::timeout(bound, s.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Some(start.elapsed()),
        _ => None,
    }
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_and_the_api_still_answers_when_one_frees() {
    let api =
        start(ConnectionLimits { max_connections: 8, header_read: Duration::from_secs(30), ..Default::default() })
            .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        let mut s = TcpStream::connect(api.addr).await.unwrap();
        assert_eq!(healthz(&mut s).await, 200, "within the cap");
        held.push(s);
    }
    let mut extra = TcpStream::connect(api.addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_secs(2)).await.is_some(), "the ninth is closed at once");
    assert_eq!(api.telemetry.snapshot().admin_connections_refused_total, 1);
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut s = TcpStream::connect(api.addr).await.unwrap();
    assert_eq!(healthz(&mut s).await, 200, "a freed slot serves again");
}

#[tokio::test]
async fn a_connection_that_sends_nothing_or_stops_after_a_response_is_closed_after_the_header_timeout() {
    let limits = ConnectionLimits { header_read: Duration::from_millis(500), ..Default::default() };
    let api = start(limits).await;
    let mut silent = TcpStream::connect(api.addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5)).await.expect("a silent connection is closed");
    assert!(took >= Duration::from_millis(400), "not before the timeout: {took:?}");

    let mut idle = TcpStream::connect(api.addr).await.unwrap();
    assert_eq!(healthz(&mut idle).await, 200);
    assert_eq!(healthz(&mut idle).await, 200, "keep-alive works");
    assert!(closed_within(&mut idle, Duration::from_secs(5)).await.is_some(), "idle after a response: closed");

    let mut slow = TcpStream::connect(api.addr).await.unwrap();
    let start = Instant::now();
    for b in b"GET /healthz HTTP/1.1\r\n" {
        if slow.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if start.elapsed() > Duration::from_secs(5) {
            break;
        }
    }
    assert!(
        closed_within(&mut slow, Duration::from_secs(1)).await.is_some(),
        "a head sent a byte at a time is cut off, not waited for"
    );
}

#[tokio::test]
async fn many_idle_connections_do_not_keep_the_api_from_answering_once_they_time_out() {
    let limits =
        ConnectionLimits { max_connections: 16, header_read: Duration::from_millis(500), ..Default::default() };
    let api = start(limits).await;
    let mut idle = Vec::new();
    for _ in 0..64 {
        idle.push(TcpStream::connect(api.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let mut s = TcpStream::connect(api.addr).await.unwrap();
    assert_eq!(healthz(&mut s).await, 200);
    assert!(api.telemetry.snapshot().admin_connections_refused_total >= 48);
}
