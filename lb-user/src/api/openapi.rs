//! The admin API's OpenAPI 3.1 description (`GET /openapi.json`), derived from the handlers'
//! `#[utoipa::path]` annotations and the types they read and answer with. Tests check that
//! it names every route the router has, and CI runs schemathesis against a daemon with it.
use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{drain, flows, probes, scrape, services, status};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lb admin API",
        description = "Health, metrics, the status page, registrations, backend state and weight, reload and drain. \
                       Reads need no token on a loopback admin_listen; every change needs the bearer token.",
        license(name = "MIT OR Apache-2.0")
    ),
    paths(
        status::page,
        status::json,
        probes::healthz,
        probes::readyz,
        scrape::metrics,
        services::list,
        services::register,
        services::deregister,
        services::heartbeat,
        services::set_state,
        services::set_weight,
        services::clear_weight,
        services::reload,
        drain::drain,
        flows::list,
        spec,
    ),
    modifiers(&Credentials),
    tags(
        (name = "observe", description = "Probes, metrics, the status page, flows"),
        (name = "services", description = "Services and their backends as the controller sees them"),
        (name = "backends", description = "Registrations and changes to one backend"),
        (name = "daemon", description = "Reload and BGP drain"),
    )
)]
pub struct AdminApi;

/// The two credentials: the bearer token, and for reading the status page from a browser,
/// the token as a Basic password.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("token", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
        components.add_security_scheme("basic", SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)));
    }
}

/// The description as JSON text.
pub fn document() -> String {
    AdminApi::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

#[utoipa::path(get, path = "/openapi.json", tag = "observe",
    responses((status = 200, description = "This description", content_type = "application/json", body = Object)))]
pub async fn spec() -> Response {
    Json(AdminApi::openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_weight_limits_are_the_configs() {
        let doc: serde_json::Value = serde_json::from_str(&document()).expect("JSON");
        let weight = &doc["components"]["schemas"]["WeightBody"]["properties"]["weight"];
        assert_eq!(weight["maximum"], lb_config::MAX_WEIGHT, "{weight}");
        let weight = &doc["components"]["schemas"]["RawRegister"]["properties"]["weight"];
        assert_eq!(weight["maximum"], lb_config::MAX_WEIGHT, "{weight}");
    }

    #[test]
    fn every_change_needs_the_token_and_reads_do_not() {
        let doc: serde_json::Value = serde_json::from_str(&document()).expect("JSON");
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("operations") {
                let security = op["security"].as_array().cloned().unwrap_or_default();
                let optional =
                    security.is_empty() || security.iter().any(|s| s.as_object().is_some_and(|o| o.is_empty()));
                assert_eq!(method == "get", optional, "{method} {path}: security {security:?}");
            }
        }
    }
}
