//! One `tracing` span per request, with its method, path and final status.
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

pub async fn span(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    // Debug formatting escapes whatever a client put in the path (no forged log lines).
    let span = tracing::info_span!(
        "admin_request",
        method = %method,
        path = ?request.uri().path(),
        status = tracing::field::Empty,
    );
    async move {
        let response = next.run(request).await;
        let status = response.status();
        tracing::Span::current().record("status", status.as_u16());
        // Changes are worth an info line (who changed what is in the span); reads are noise.
        if status.is_server_error() {
            tracing::warn!("request failed");
        } else if method == Method::GET || method == Method::HEAD {
            tracing::debug!("request done");
        } else {
            tracing::info!("request done");
        }
        response
    }
    .instrument(span)
    .await
}
