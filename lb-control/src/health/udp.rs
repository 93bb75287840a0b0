//! `type = "udp"`: send `send` in one datagram and wait for a reply (containing `expect`,
//! when set). The socket is connected, so the kernel hands it the ICMP errors about its
//! datagrams: a port unreachable comes back as `ECONNREFUSED` on the next receive, and the
//! check fails at once instead of waiting out its timeout.
use std::io;

use super::{connect_failed, Failed};
use crate::tunnel_check::Target;
use lb_config::HealthCheck;

/// Replies are read into this; a longer datagram is cut (only `expect` is looked for).
const MAX_REPLY: usize = 2048;

pub(super) async fn attempt(check: &HealthCheck, target: &Target) -> Result<String, Failed> {
    let socket = target.udp_socket().await.map_err(|e| connect_failed(target, e))?;
    socket.send(check.send.as_bytes()).await.map_err(|e| receive_failed(target, &e))?;
    let mut reply = vec![0u8; MAX_REPLY];
    let n = socket.recv(&mut reply).await.map_err(|e| receive_failed(target, &e))?;
    judge(&reply[..n], check.expect.as_deref())
}

/// A reply passes when it contains `expect` (any reply does without one).
fn judge(reply: &[u8], expect: Option<&str>) -> Result<String, Failed> {
    match expect {
        Some(expect) if !contains(reply, expect.as_bytes()) => Err(Failed::Backend(format!(
            "reply of {} bytes does not contain {expect:?}: {:?}",
            reply.len(),
            String::from_utf8_lossy(&reply[..reply.len().min(64)])
        ))),
        _ => Ok(format!("reply of {} bytes", reply.len())),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// What an error on the connected socket means: refused is the ICMP port unreachable.
fn receive_failed(target: &Target, e: &io::Error) -> Failed {
    if super::is_local_error(e) {
        return Failed::Local(format!("local: {e}"));
    }
    match e.kind() {
        io::ErrorKind::ConnectionRefused => {
            Failed::Backend(format!("port unreachable: nothing listens on udp {}", target.address()))
        }
        _ => Failed::Backend(format!("udp: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_passes_when_it_holds_what_is_expected() {
        assert!(judge(b"PONG 1", Some("PONG")).is_ok());
        assert!(judge(b"anything", None).is_ok());
        assert!(judge(b"", None).is_ok(), "an empty datagram is a reply");
        let Err(Failed::Backend(detail)) = judge(b"nope", Some("PONG")) else { panic!("must fail") };
        assert!(detail.contains("does not contain \"PONG\""), "{detail}");
    }
}
