//! Path parameters: `{service}` and `{address}`. axum percent-decodes them, so an IPv6
//! backend may be written `%5Bfd00%3A20%3A%3A14%5D%3A80` or with raw brackets.
use std::net::SocketAddr;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::error::HttpError;

/// `/v1/services/{service}/...`
pub struct ServiceParam(pub String);

/// `/v1/services/{service}/backends/{address}/...`
pub struct BackendParams {
    pub service: String,
    pub address: SocketAddr,
}

/// [`BackendParams`] as the OpenAPI description names them.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // Never built: `BackendParams` is what the handlers extract.
pub struct BackendPath {
    /// The service's name
    service: String,
    /// The backend, IP:PORT (IPv6 in brackets), percent-encoded or raw
    address: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ServiceParam {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path(service) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| HttpError::bad_request(e.body_text()))?;
        Ok(Self(service))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for BackendParams {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path((service, address)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| HttpError::bad_request(e.body_text()))?;
        Ok(Self { service, address: backend_address(&address)? })
    }
}

/// A backend address as the config accepts it: `IP:PORT`, IPv6 in brackets, port not 0.
pub fn backend_address(text: &str) -> Result<SocketAddr, HttpError> {
    let address: SocketAddr = text.trim().parse().map_err(|_| {
        HttpError::bad_request(format!(
            "invalid backend address {text:?}: expected IP:PORT, e.g. \"172.20.0.11:80\" or \"[fd00:20::11]:80\""
        ))
    })?;
    if address.port() == 0 {
        return Err(HttpError::bad_request(format!("invalid backend address {text:?}: port must not be 0")));
    }
    Ok(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_like_the_config() {
        assert_eq!(backend_address("172.20.0.11:80").unwrap().to_string(), "172.20.0.11:80");
        assert_eq!(backend_address("[fd00:20::14]:80").unwrap().to_string(), "[fd00:20::14]:80");
        for bad in ["", "172.20.0.11", "fd00::1:80", "host:80", "172.20.0.11:0", "1.2.3.4:99999"] {
            let e = backend_address(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }
}
