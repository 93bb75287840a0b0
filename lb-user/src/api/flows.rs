//! `GET /v1/flows`: the open flows, as `lb list flows --json` shows them, a page at a time.
//! From the proxy's connection table when the proxy serves, else from the pinned flow
//! table (one walk at a time: see `walks`).
//!
//! Pages: `?limit=N` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) flows, in a stable
//! order (by protocol, client, VIP, backend); `?after=CURSOR` starts after the flow whose
//! key the cursor is. A page that is not the last says where the next one starts in
//! `X-Next-After` (the cursor) and `Link: <...>; rel="next"`. The answer stays a JSON array,
//! so clients that read one page keep working.
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::answers::ErrorBody;
use super::auth::FlowReader;
use super::error::HttpError;
use super::ApiState;
use crate::agent::encode_path_segment;
use lb_xdp::inspect::{self, FlowRow};
use lb_xdp::maps::Maps;

pub const DEFAULT_LIMIT: usize = 1000;
pub const MAX_LIMIT: usize = 10_000;
/// The header that carries the next page's cursor.
pub const NEXT_AFTER: &str = "x-next-after";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<String>,
    after: Option<String>,
}

/// A flow's place in the order: (protocol, client, VIP, backend).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct FlowKey(String, String, String, String);

impl FlowKey {
    fn of(row: &FlowRow) -> Self {
        FlowKey(row.protocol.clone(), row.client.clone(), row.vip.clone(), row.backend.clone())
    }

    /// `PROTOCOL,CLIENT,VIP,BACKEND`, e.g. `tcp,172.20.0.2:40000,172.20.0.100:80,172.20.0.11:80`.
    pub fn cursor(&self) -> String {
        format!("{},{},{},{}", self.0, self.1, self.2, self.3)
    }

    pub fn parse(text: &str) -> Result<Self, HttpError> {
        let bad = || {
            HttpError::bad_request(format!(
                "invalid cursor {text:?}: expected PROTOCOL,CLIENT,VIP,BACKEND as the previous page's X-Next-After \
                 header gave it"
            ))
        };
        let parts: Vec<&str> = text.split(',').collect();
        let [protocol, client, vip, backend] = parts[..] else { return Err(bad()) };
        let address = |a: &str| a.parse::<std::net::SocketAddr>().is_ok();
        if !matches!(protocol, "tcp" | "udp")
            || !address(client)
            || !address(vip)
            || !(address(backend) || backend == "unknown")
        {
            return Err(bad());
        }
        Ok(FlowKey(protocol.into(), client.into(), vip.into(), backend.into()))
    }
}

/// What a request asks for.
#[derive(Debug, PartialEq)]
pub struct Page {
    pub limit: usize,
    pub after: Option<FlowKey>,
}

impl Page {
    pub fn from_query(q: &PageQuery) -> Result<Self, HttpError> {
        let limit =
            match &q.limit {
                None => DEFAULT_LIMIT,
                Some(text) => text.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                    HttpError::bad_request(format!("invalid limit {text:?}: expected 1 to {MAX_LIMIT}"))
                })?,
            };
        let after = q.after.as_deref().map(FlowKey::parse).transpose()?;
        Ok(Page { limit, after })
    }

    /// This page of `rows`, and the cursor of the next one when there is more.
    pub fn cut(&self, rows: Vec<FlowRow>) -> (Vec<FlowRow>, Option<String>) {
        let mut rows: Vec<(FlowKey, FlowRow)> = rows
            .into_iter()
            .map(|r| (FlowKey::of(&r), r))
            .filter(|(k, _)| self.after.as_ref().is_none_or(|after| k > after))
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let more = rows.len() > self.limit;
        rows.truncate(self.limit);
        let next = more.then(|| rows.last().map(|(k, _)| k.cursor())).flatten();
        (rows.into_iter().map(|(_, r)| r).collect(), next)
    }
}

#[utoipa::path(get, path = "/v1/flows", tag = "observe", security((), ("token" = [])),
    params(
        ("limit" = Option<u32>, Query, description = "Flows per page, 1 to 10000 (default 1000)", minimum = 1, maximum = 10000),
        ("after" = Option<String>, Query, description = "The cursor of the previous page's X-Next-After header: PROTOCOL,CLIENT,VIP,BACKEND"),
    ),
    responses(
        (status = 200, description = "A page of open flows, ordered by protocol, client, VIP, backend", body = [FlowRow],
            headers(("x-next-after" = String, description = "The next page's cursor, when there is more"))),
        (status = 400, description = "A bad path parameter or body", body = ErrorBody),
        (status = 401, description = "Needs the token: admin_listen is not loopback", body = ErrorBody),
        (status = 503, description = "The flow table cannot be read (nothing pinned), or another walk is running", body = ErrorBody),
    ))]
pub async fn list(
    _: FlowReader,
    State(state): State<ApiState>,
    query: Result<Query<PageQuery>, QueryRejection>,
) -> Response {
    let page = match query.map_err(|e| HttpError::bad_request(e.body_text())).and_then(|Query(q)| Page::from_query(&q))
    {
        Ok(page) => page,
        Err(e) => return e.into_response(),
    };
    match rows(&state).await {
        Ok(rows) => {
            let (rows, next) = page.cut(rows);
            let mut headers = HeaderMap::new();
            if let Some(next) = next {
                let link =
                    format!("</v1/flows?limit={}&after={}>; rel=\"next\"", page.limit, encode_path_segment(&next));
                if let (Ok(cursor), Ok(link)) = (HeaderValue::from_str(&next), HeaderValue::from_str(&link)) {
                    headers.insert(NEXT_AFTER, cursor);
                    headers.insert(header::LINK, link);
                }
            }
            (headers, Json(rows)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Every open flow, in no particular order.
async fn rows(state: &ApiState) -> Result<Vec<FlowRow>, HttpError> {
    if let Some(proxy) = &state.proxy {
        return Ok(proxy
            .flows()
            .into_iter()
            .map(|f| FlowRow {
                protocol: f.protocol.to_string(),
                client: f.client.to_string(),
                vip: f.vip.to_string(),
                backend: f.backend.to_string(),
                // A proxy connection to a backend that may not keep it is closed at once.
                backend_retired: false,
                snat_port: None,
                idle_seconds: 0.0,
                closing: false,
            })
            .collect());
    }
    let walk = state.flow_walks.begin().await?;
    let pin_path = state.pin_path.clone();
    tokio::task::spawn_blocking(move || {
        let _walk = walk;
        Maps::open_pinned(&pin_path).and_then(|m| inspect::flows(&m))
    })
    .await
    .map_err(anyhow::Error::from)
    .and_then(|r| r)
    .map_err(|e| HttpError::new(StatusCode::SERVICE_UNAVAILABLE, format!("flows: {e:#}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(client: &str) -> FlowRow {
        FlowRow {
            protocol: "tcp".into(),
            client: client.into(),
            vip: "172.20.0.100:80".into(),
            backend: "172.20.0.11:80".into(),
            backend_retired: false,
            snat_port: None,
            idle_seconds: 0.0,
            closing: false,
        }
    }

    fn query(limit: Option<&str>, after: Option<&str>) -> PageQuery {
        PageQuery { limit: limit.map(Into::into), after: after.map(Into::into) }
    }

    #[test]
    fn pages_follow_the_cursor_through_every_flow_once_in_order() {
        let all: Vec<FlowRow> = (0..25).rev().map(|i| row(&format!("172.20.0.2:{}", 40000 + i))).collect();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..10 {
            let page = Page::from_query(&query(Some("10"), after.as_deref())).unwrap();
            let (rows, next) = page.cut(all.clone());
            assert!(rows.len() <= 10);
            seen.extend(rows.into_iter().map(|r| r.client));
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut expected: Vec<String> = all.iter().map(|r| r.client.clone()).collect();
        expected.sort();
        assert_eq!(seen, expected, "25 flows in three pages, none twice, none left out");
    }

    #[test]
    fn the_last_page_has_no_cursor_and_a_flow_gone_between_pages_moves_nothing() {
        let page = Page::from_query(&query(Some("2"), None)).unwrap();
        let (rows, next) = page.cut(vec![row("172.20.0.2:1"), row("172.20.0.2:2")]);
        assert_eq!((rows.len(), next), (2, None), "exactly full: no next page");
        let after = "tcp,172.20.0.2:2,172.20.0.100:80,172.20.0.11:80";
        let page = Page::from_query(&query(None, Some(after))).unwrap();
        let (rows, _) = page.cut(vec![row("172.20.0.2:1"), row("172.20.0.2:3")]);
        assert_eq!(rows.iter().map(|r| r.client.as_str()).collect::<Vec<_>>(), ["172.20.0.2:3"]);
    }

    #[test]
    fn limits_and_cursors_are_checked() {
        assert_eq!(Page::from_query(&query(None, None)).unwrap().limit, DEFAULT_LIMIT);
        assert_eq!(Page::from_query(&query(Some("10000"), None)).unwrap().limit, MAX_LIMIT);
        for bad in ["0", "10001", "-1", "x", ""] {
            let e = Page::from_query(&query(Some(bad), None)).unwrap_err();
            assert!(e.message.contains("invalid limit"), "{bad}: {}", e.message);
        }
        for bad in [
            "",
            "tcp",
            "icmp,1.2.3.4:1,1.2.3.4:2,1.2.3.4:3",
            "tcp,x,1.2.3.4:2,1.2.3.4:3",
            "tcp,1.2.3.4:1,1.2.3.4:2,1.2.3.4:3,5",
        ] {
            let e = Page::from_query(&query(None, Some(bad))).unwrap_err();
            assert!(e.message.contains("invalid cursor"), "{bad}: {}", e.message);
        }
        let ok = "udp,[fd00:20::2]:5353,[fd00:20::100]:53,unknown";
        assert_eq!(FlowKey::parse(ok).unwrap().cursor(), ok);
    }
}
