//! `type = "http"`: `GET path` over HTTP/1.1, passing when the status is in
//! `expected_status`. The exchange runs over any stream, so `https` reuses it over TLS.
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{connect_failed, Failed};
use crate::tunnel_check::Target;
use lb_config::HealthCheck;

/// The longest status line read; a longer first line is not an HTTP response.
const MAX_STATUS_LINE: usize = 1024;

pub(super) async fn attempt(check: &HealthCheck, target: &Target) -> Result<String, Failed> {
    let mut stream = target.connect().await.map_err(|e| connect_failed(target, e))?;
    exchange(check, &target.address().to_string(), &mut stream).await
}

/// Sends the GET (with `host` as its Host header) and judges the status line.
pub(super) async fn exchange<S>(check: &HealthCheck, host: &str, stream: &mut S) -> Result<String, Failed>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: lb-health-check\r\nConnection: close\r\n\r\n",
        check.path
    );
    stream.write_all(request.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
    stream.flush().await.map_err(|e| format!("send: {e}"))?;
    let status = read_status(stream).await?;
    if check.expected_status.contains(status) {
        Ok(format!("HTTP {status}"))
    } else {
        Err(Failed::Backend(format!("HTTP {status}, expected {}", check.expected_status)))
    }
}

/// The status code of an HTTP/1.x response's first line.
async fn read_status<S: AsyncRead + Unpin>(stream: &mut S) -> Result<u16, String> {
    let mut buf = Vec::with_capacity(64);
    let mut chunk = [0u8; 64];
    while !buf.contains(&b'\n') && buf.len() < MAX_STATUS_LINE {
        let n = stream.read(&mut chunk).await.map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&buf).ok_or_else(|| "not an HTTP response".to_string())
}

pub fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|&b| b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    parts.next().filter(|v| v.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok().filter(|c| (100..=599).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_parse_and_garbage_does_not() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 Service Unavailable\r\n"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 999 what\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }
}
