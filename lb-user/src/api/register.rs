//! The body of `POST /v1/services/{service}/backends`: what an agent sends to register.
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::error::HttpError;
use super::params::backend_address;
use lb_config::{parse_duration, DEFAULT_WEIGHT, MAX_WEIGHT};

pub const DEFAULT_TTL: Duration = Duration::from_secs(10);
/// A lease longer than a day is a mistake (the agent heartbeats well before), and an
/// unbounded one could overflow the controller's `Instant + ttl`.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRegister {
    /// The backend, IP:PORT (IPv6 in brackets).
    #[schema(example = "172.20.0.11:80")]
    address: String,
    /// 0 to 10000 (default 1).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 10000)]
    weight: Option<u32>,
    /// The lease: a duration like `"10s"` or whole seconds, up to a day (default 10 s);
    /// checked by hand for a clear message.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "10s")]
    ttl: Option<Value>,
}

#[derive(Debug, PartialEq)]
pub struct Registration {
    pub address: std::net::SocketAddr,
    pub weight: u32,
    pub ttl: Duration,
}

/// Parses and checks a registration body.
pub fn parse(bytes: &[u8]) -> Result<Registration, HttpError> {
    let raw: RawRegister = super::body::parse(bytes)?;
    let address = backend_address(&raw.address)?;
    let weight = raw.weight.unwrap_or(DEFAULT_WEIGHT);
    if weight > MAX_WEIGHT {
        return Err(HttpError::bad_request(format!("weight {weight} is out of range: expected 0 to {MAX_WEIGHT}")));
    }
    let ttl = match raw.ttl {
        None | Some(Value::Null) => DEFAULT_TTL,
        Some(v) => ttl(&v)?,
    };
    Ok(Registration { address, weight, ttl })
}

fn ttl(value: &Value) -> Result<Duration, HttpError> {
    let ttl = match value {
        Value::String(text) => parse_duration(text).map_err(|e| HttpError::bad_request(format!("invalid ttl: {e}")))?,
        Value::Number(n) => Duration::from_secs(n.as_u64().ok_or_else(|| {
            HttpError::bad_request(format!("invalid ttl {n}: expected whole seconds or a duration like \"10s\""))
        })?),
        other => {
            return Err(HttpError::bad_request(format!(
                "invalid ttl {other}: expected a duration like \"10s\" or whole seconds"
            )))
        }
    };
    if ttl.is_zero() || ttl > MAX_TTL {
        return Err(HttpError::bad_request(format!(
            "ttl {value} is out of range: expected more than 0 and at most 24h"
        )));
    }
    Ok(ttl)
}

/// Seconds for the 201 echo: a whole number when the lease is whole seconds.
pub fn ttl_seconds(ttl: Duration) -> Value {
    if ttl.subsec_nanos() == 0 {
        Value::from(ttl.as_secs())
    } else {
        Value::from(ttl.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Registration {
        parse(body.as_bytes()).unwrap()
    }

    fn err(body: &str) -> String {
        let e = parse(body.as_bytes()).unwrap_err();
        assert_eq!(e.status, 400, "{body}");
        e.message
    }

    #[test]
    fn defaults_and_both_ttl_spellings() {
        let r = ok(r#"{"address":"10.0.0.1:80"}"#);
        assert_eq!((r.weight, r.ttl), (1, Duration::from_secs(10)));
        assert_eq!(ok(r#"{"address":"10.0.0.1:80","ttl":"1m30s"}"#).ttl, Duration::from_secs(90));
        assert_eq!(ok(r#"{"address":"10.0.0.1:80","ttl":30,"weight":0}"#).ttl, Duration::from_secs(30));
        assert_eq!(ok(r#"{"address":"10.0.0.1:80","weight":10000}"#).weight, 10000);
    }

    #[test]
    fn bad_fields_say_what_is_wrong() {
        assert!(err(r#"{"weight":1}"#).contains("missing field `address`"));
        assert!(err(r#"{"address":"10.0.0.1:80","colour":"red"}"#).contains("unknown field `colour`"));
        assert!(err(r#"{"address":"10.0.0.1:80","weight":10001}"#).contains("out of range"));
        assert!(err(r#"{"address":"10.0.0.1:80","weight":-1}"#).contains("invalid value"));
        assert!(err(r#"{"address":"10.0.0.1:80","ttl":"10"}"#).contains("unit"));
        assert!(err(r#"{"address":"10.0.0.1:80","ttl":1.5}"#).contains("whole seconds"));
        assert!(err(r#"{"address":"10.0.0.1:80","ttl":0}"#).contains("out of range"));
        assert!(err(r#"{"address":"10.0.0.1:80","ttl":"25h"}"#).contains("out of range"));
        assert!(err(r#"{"address":"10.0.0.1:80","ttl":true}"#).contains("ttl"));
        assert!(err(r#"[1,2]"#).contains("invalid JSON"));
        assert!(err("").contains("empty"));
    }

    #[test]
    fn echo_is_whole_seconds_when_it_can_be() {
        assert_eq!(ttl_seconds(Duration::from_secs(10)).to_string(), "10");
        assert_eq!(ttl_seconds(Duration::from_millis(1500)).to_string(), "1.5");
    }
}
