//! Every failure the admin API returns: a status and a JSON body `{"error": "..."}`, so
//! scripts and `lb agent` can always parse an answer, whatever went wrong.
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use lb_control::ControlError;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpError {
    pub status: StatusCode,
    pub message: String,
    /// One message per line, for 422 (a reload's validation errors); omitted when empty.
    pub errors: Vec<String>,
}

impl HttpError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into(), errors: Vec::new() }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<ControlError> for HttpError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::NotFound(m) => Self::new(StatusCode::NOT_FOUND, m),
            ControlError::BadRequest(m) => Self::new(StatusCode::BAD_REQUEST, m),
            ControlError::Unavailable(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, m),
            ControlError::Conflict(m) => Self::new(StatusCode::CONFLICT, m),
            ControlError::InvalidConfig(diagnostics) => {
                let errors: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                Self { status: StatusCode::UNPROCESSABLE_ENTITY, message: errors.join("\n"), errors }
            }
            ControlError::NotApplied(m) => {
                Self { status: StatusCode::UNPROCESSABLE_ENTITY, errors: vec![m.clone()], message: m }
            }
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let errors = (!self.errors.is_empty()).then_some(self.errors);
        let body = super::answers::ErrorBody { error: self.message, errors };
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750: tell the client which scheme to use.
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
