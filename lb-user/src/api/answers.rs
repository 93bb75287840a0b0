//! The JSON answers of the admin API's calls, as types: the handlers build them and the
//! OpenAPI description (`openapi`) is derived from them, so the two cannot disagree.
use serde::Serialize;
use utoipa::ToSchema;

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok`: the process answers.
    pub status: &'static str,
}

/// `GET /readyz`.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `xdp` or `proxy`; null until the controller has chosen.
    pub path: Option<String>,
    /// With `[cluster] etcd`: `ok` or `unreachable` (absent without a store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<&'static str>,
}

/// `POST /v1/services/{service}/backends`: the registration as accepted.
#[derive(Serialize, ToSchema)]
pub struct Registered {
    pub service: String,
    pub address: String,
    pub weight: u32,
    /// The lease, in seconds (a fraction when the request gave one).
    #[schema(value_type = f64)]
    pub ttl_seconds: serde_json::Value,
    /// Whether the backend was not registered before (false: a renewal).
    pub new: bool,
}

/// `PUT .../heartbeat`.
#[derive(Serialize, ToSchema)]
pub struct Renewed {
    pub service: String,
    pub address: String,
    /// Always `ok`.
    pub result: &'static str,
}

/// `PUT .../state`.
#[derive(Serialize, ToSchema)]
pub struct StateSet {
    pub service: String,
    pub address: String,
    /// `ready`, `drain` or `maint`.
    pub state: &'static str,
}

/// `PUT` and `DELETE .../weight`.
#[derive(Serialize, ToSchema)]
pub struct WeightSet {
    pub service: String,
    pub address: String,
    /// The weight the API sets now; null when none is (the config's or the registration's
    /// is in force).
    #[schema(required = true)]
    pub weight: Option<u32>,
}

/// `POST /v1/reload`.
#[derive(Serialize, ToSchema)]
pub struct Reloaded {
    /// Always `ok`: the new config is in force.
    pub result: &'static str,
}

/// `POST /v1/drain`.
#[derive(Serialize, ToSchema)]
pub struct Draining {
    pub draining: bool,
    pub was_draining: bool,
}

/// Every error: a message, and for a reload that failed validation each error on its own.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

/// The failures of a call on one backend (`.../backends/{address}...`), for the OpenAPI
/// description: the handlers answer with `HttpError`, whose `From<ControlError>` gives
/// these statuses. Calls with a body add 413.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Never built: it describes what `HttpError` sends.
pub enum BackendCallErrors {
    /// A bad path parameter or body
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// No token, a wrong one, or none configured
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No such service, or no such backend in it
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Refused in the service's present state (e.g. the backend cap, a registration the config owns)
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// The change could not be applied
    #[response(status = 422)]
    NotApplied(ErrorBody),
    /// The controller is not running (starting or stopping), or the shared store does not answer
    #[response(status = 503)]
    Unavailable(ErrorBody),
}
