//! The udp, https and agent probes against real servers on loopback: a UDP echo, a closed
//! UDP port, a rustls server with a certificate made for the test, agents speaking each
//! word.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

use super::*;
use lb_config::TlsCheck;

fn check(kind: HealthCheckType) -> HealthCheck {
    HealthCheck { kind, ..HealthCheck::default() }
}

/// Answers each datagram with `PONG ` and what it got.
async fn udp_echo() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let reply = [b"PONG ".as_slice(), &buf[..n]].concat();
            let _ = socket.send_to(&reply, from).await;
        }
    });
    addr
}

#[tokio::test]
async fn udp_probes_pass_on_a_reply_and_fail_at_once_on_a_closed_port() {
    let echo = udp_echo().await;
    let udp = HealthCheck { send: "ping".into(), ..check(HealthCheckType::Udp) };
    let r = probe(&udp, &echo.into()).await;
    assert!(r.ok, "{}", r.detail);
    assert_eq!(r.detail, "reply of 9 bytes");
    let expecting = HealthCheck { expect: Some("PONG ping".into()), ..udp.clone() };
    assert!(probe(&expecting, &echo.into()).await.ok);
    let wrong = HealthCheck { expect: Some("OK".into()), ..udp.clone() };
    let r = probe(&wrong, &echo.into()).await;
    assert!(!r.ok && r.detail.contains("does not contain \"OK\""), "{}", r.detail);
    // A port nobody listens on: the ICMP port unreachable fails the check well within its
    // timeout.
    let closed = UdpSocket::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let slow = HealthCheck { timeout: Duration::from_secs(5), interval: Duration::from_secs(5), ..udp.clone() };
    let r = probe(&slow, &closed.into()).await;
    assert!(!r.ok && !r.local && r.detail.starts_with("port unreachable"), "{}", r.detail);
    assert!(r.duration < Duration::from_secs(1), "refused fast, not timed out: {:?}", r.duration);
    // A server that reads and never answers: the timeout.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let quick = HealthCheck { timeout: Duration::from_millis(200), ..udp };
    let r = probe(&quick, &silent.local_addr().unwrap().into()).await;
    assert!(!r.ok && r.detail.starts_with("timeout after 200ms"), "{}", r.detail);
}

/// A CA, and a server certificate for `name` signed by it, as PEM.
struct TestPki {
    ca_pem: String,
    cert: rustls::pki_types::CertificateDer<'static>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
}

fn make_pki(name: &str) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    TestPki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    }
}

/// A TLS server that answers every request with `status`, and records the SNI it got.
async fn tls_server(pki: &TestPki, status: u16) -> (SocketAddr, Arc<std::sync::Mutex<Vec<Option<String>>>>) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.cert.clone()], pki.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let names = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = names.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                seen.lock().unwrap().push(tls.get_ref().1.server_name().map(str::to_string));
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls.write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n").as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, names)
}

#[tokio::test]
async fn https_probes_handshake_send_sni_and_verify_when_asked() {
    let pki = make_pki("api.example.test");
    let (addr, names) = tls_server(&pki, 200).await;
    let https = check(HealthCheckType::Https);
    let r = probe(&https, &addr.into()).await;
    assert!(r.ok, "{}", r.detail);
    assert_eq!(r.detail, "TLS, HTTP 200");
    let with_sni =
        HealthCheck { tls: TlsCheck { sni: Some("api.example.test".into()), ..TlsCheck::default() }, ..https.clone() };
    assert!(probe(&with_sni, &addr.into()).await.ok);
    assert_eq!(*names.lock().unwrap(), [None, Some("api.example.test".to_string())], "SNI only when set");

    let dir = std::env::temp_dir().join(format!("lb-https-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let verifying = |sni: &str| HealthCheck {
        tls: TlsCheck { sni: Some(sni.into()), verify: true, ca_file: Some(ca_file.clone()) },
        ..https.clone()
    };
    let r = probe(&verifying("api.example.test"), &addr.into()).await;
    assert!(r.ok, "the chain leads to the CA and names the SNI: {}", r.detail);
    let r = probe(&verifying("other.example.test"), &addr.into()).await;
    assert!(!r.ok && !r.local && r.detail.starts_with("TLS handshake"), "{}", r.detail);
    let stranger = make_pki("api.example.test");
    std::fs::write(&ca_file, &stranger.ca_pem).unwrap();
    let r = probe(&verifying("api.example.test"), &addr.into()).await;
    assert!(!r.ok && !r.local && r.detail.contains("invalid peer certificate"), "another CA signed it: {}", r.detail);
    std::fs::remove_file(&ca_file).unwrap();
    let r = probe(&verifying("api.example.test"), &addr.into()).await;
    assert!(!r.ok && r.local && r.detail.contains("ca_file"), "a missing CA is this host's: {}", r.detail);
    std::fs::remove_dir_all(&dir).unwrap();

    let (failing, _) = tls_server(&pki, 503).await;
    let r = probe(&https, &failing.into()).await;
    assert!(!r.ok && r.detail.contains("HTTP 503"), "{}", r.detail);
    // A plain-text server is no TLS server.
    let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_addr = plain.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = plain.accept().await {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        }
    });
    let r = probe(&https, &plain_addr.into()).await;
    assert!(!r.ok && r.detail.starts_with("TLS handshake"), "{}", r.detail);
}

/// An agent that answers every connection with `line`, on an ephemeral port.
async fn agent_saying(line: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let _ = s.write_all(line).await;
        }
    });
    port
}

/// What a probe should take from an agent's line: health, state, weight share.
type Said = (Option<AgentHealth>, Option<AgentState>, Option<u32>);

#[tokio::test]
async fn agent_probes_read_each_word() {
    // The agent's port, on the backend's address; the service's own port is not used.
    let backend: Target = SocketAddr::from(([127, 0, 0, 1], 1)).into();
    let cases: [(&[u8], bool, Said); 9] = [
        (b"up\n", true, (Some(AgentHealth::Up), None, None)),
        (b"down\n", false, (Some(AgentHealth::Down), None, None)),
        (b"fail#disk\n", false, (Some(AgentHealth::Down), None, None)),
        (b"stopped\n", false, (Some(AgentHealth::Down), None, None)),
        (b"drain\n", true, (None, Some(AgentState::Drain), None)),
        (b"maint\n", true, (None, Some(AgentState::Maint), None)),
        (b"ready\n", true, (None, Some(AgentState::Ready), None)),
        (b"up 50%\r\n", true, (Some(AgentHealth::Up), None, Some(50))),
        (b"75%", true, (None, None, Some(75))),
    ];
    for (line, ok, said) in cases {
        let agent = HealthCheck { agent_port: agent_saying(line).await, ..check(HealthCheckType::Agent) };
        let r = probe(&agent, &backend).await;
        let words = r.agent.clone().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        assert_eq!((r.ok, (words.health, words.state, words.weight_percent)), (ok, said), "{line:?}: {}", r.detail);
    }
    // Nothing known, a closed port, a silent agent, an endless line.
    let nonsense = HealthCheck { agent_port: agent_saying(b"hello\n").await, ..check(HealthCheckType::Agent) };
    let r = probe(&nonsense, &backend).await;
    assert!(!r.ok && r.detail.contains("said nothing known") && r.agent.is_none(), "{}", r.detail);
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
    let r = probe(&HealthCheck { agent_port: closed, ..check(HealthCheckType::Agent) }, &backend).await;
    assert!(!r.ok && r.detail.starts_with("agent connect"), "{}", r.detail);
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let quick = HealthCheck {
        agent_port: silent.local_addr().unwrap().port(),
        timeout: Duration::from_millis(200),
        ..check(HealthCheckType::Agent)
    };
    let r = probe(&quick, &backend).await;
    assert!(!r.ok && r.detail.starts_with("timeout after 200ms"), "{}", r.detail);
    static LONG: [u8; 4096] = [b'x'; 4096];
    let endless = HealthCheck { agent_port: agent_saying(&LONG).await, ..check(HealthCheckType::Agent) };
    let r = probe(&endless, &backend).await;
    assert!(!r.ok && r.detail.contains("said nothing known"), "read at most {MAX_AGENT_LINE} bytes: {}", r.detail);
}
