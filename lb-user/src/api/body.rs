//! Request bodies, read by hand rather than with axum's `Json` extractor, so every way a
//! body can be wrong (too big, unreadable, not JSON, wrong fields) becomes our JSON error
//! with the right status instead of axum's plain-text rejection.
use axum::body::Body;
use axum::http::{header::CONTENT_LENGTH, HeaderMap, StatusCode};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::HttpError;

/// The largest body accepted; registrations and state changes are a few dozen bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

fn too_large() -> HttpError {
    HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("request body is larger than {MAX_BODY_BYTES} bytes"))
}

/// Reads the whole body, refusing more than [`MAX_BODY_BYTES`]. A declared Content-Length
/// over the limit is refused before reading; a chunked body is counted as it arrives.
pub async fn read(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, HttpError> {
    let declared = headers.get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| HttpError::bad_request(format!("cannot read request body: {e}")))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

/// Parses a JSON body into `T` (whose fields say what is required and what is unknown).
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::bad_request("request body is empty: expected a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| HttpError::bad_request(format!("invalid JSON body: {e}")))
}
