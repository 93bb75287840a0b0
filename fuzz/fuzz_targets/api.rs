//! The admin API's request parsing: registration and state bodies, and the `{address}` path
//! parameter. Any input is accepted with values inside their documented ranges, or refused
//! with a 4xx whose body is JSON naming the error; never a panic.
#![no_main]

use axum::response::IntoResponse;
use futures_util::FutureExt;
use http_body_util::BodyExt;
use lb_user::api::parse;
use lb_user::api::HttpError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((which, input)) = data.split_first() else { return };
    match which % 3 {
        0 => match parse::registration(input) {
            Ok(r) => {
                assert!(r.weight <= lb_config::MAX_WEIGHT, "weight {}", r.weight);
                assert!(!r.ttl.is_zero() && r.ttl <= parse::MAX_TTL, "ttl {:?}", r.ttl);
                assert_ne!(r.address.port(), 0);
            }
            Err(e) => refused(e),
        },
        1 => match parse::state_body(input) {
            Ok(state) => assert_eq!(state.as_str().parse::<lb_config::AdminState>().ok(), Some(state)),
            Err(e) => refused(e),
        },
        _ => {
            let text = String::from_utf8_lossy(input);
            match parse::backend_address(&text) {
                // What is accepted is an address that prints and parses back to itself.
                Ok(a) => {
                    assert_ne!(a.port(), 0);
                    assert_eq!(parse::backend_address(&a.to_string()).ok(), Some(a));
                }
                Err(e) => refused(e),
            }
        }
    }
});

/// A refusal: 4xx, a message, and a JSON body `{"error": message}`.
fn refused(e: HttpError) {
    assert!(e.status.is_client_error(), "status {} for {e:?}", e.status);
    assert!(!e.message.is_empty());
    let message = e.message.clone();
    let body = e.into_response().into_body().collect().now_or_never().expect("a ready body").expect("body bytes");
    let json: serde_json::Value = serde_json::from_slice(&body.to_bytes()).expect("a JSON body");
    assert_eq!(json["error"].as_str(), Some(message.as_str()));
}
