//! The page's routes: `GET /` (the page), `GET /api/status`, `/api/peers`,
//! `/api/jobs`, `/api/jobs/{id}`, `/api/jobs/{id}/results` (the archive,
//! [`super::archive`]), `/api/trust`, `GET /api/events` (the push stream),
//! and the actions: `POST /api/jobs/{id}/cancel`, and those of
//! [`super::actions`] (`/api/blobs`, `/api/jobs`, `/api/trust`,
//! `/api/trust/remove`, `/api/share`). Each API answer is the control
//! request's answer as the CLI gets it; each refusal a JSON `{error, code}`
//! with its 4xx or 5xx status.

use std::convert::Infallible;

use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request as HttpRequest, Response, StatusCode};

use super::reply::{Body, ask, error, full, read_body, refused};
use super::{Shared, actions, archive};
use crate::control::Request;

/// The page, built into the binary.
const PAGE: &str = include_str!("page.html");
/// What a connection beyond the limit gets before it is closed.
pub(super) const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 59\r\nconnection: close\r\n\r\n{\"error\":\"too many connections to this page\",\"code\":\"busy\"}";

/// Answers one request; never fails (a refusal is a response).
pub(super) async fn handle(shared: &Shared, request: HttpRequest<Incoming>) -> Response<Body> {
    let query_token = request.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_string())
    });
    if let Err(refusal) = shared.gate.admit(request.headers(), query_token.as_deref()) {
        return refused(refusal);
    }
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();
    match (&method, segments.as_slice()) {
        (&Method::GET, [""]) if query_token.is_some() => login(shared),
        (&Method::GET, [""]) => page(),
        (&Method::GET, ["api", "status"]) => ask(shared, Request::Status).await,
        (&Method::GET, ["api", "peers"]) => ask(shared, Request::Peers).await,
        (&Method::GET, ["api", "jobs"]) => ask(shared, Request::Jobs).await,
        (&Method::GET, ["api", "jobs", id]) => {
            let id = id.to_string();
            ask(shared, Request::Job { id }).await
        }
        (&Method::GET, ["api", "jobs", id, "results"]) => {
            archive::results(shared, id.to_string()).await
        }
        (&Method::GET, ["api", "trust"]) => ask(shared, Request::TrustList).await,
        (&Method::GET, ["api", "events"]) => events(shared),
        (&Method::POST, _) => {
            // Every action needs the page's proofs (see [`super::auth`]).
            if let Err(refusal) = shared.gate.action(request.headers()) {
                return refused(refusal);
            }
            match segments.as_slice() {
                ["api", "jobs", id, "cancel"] => {
                    let id = id.to_string();
                    if let Err(response) = read_body(request).await {
                        return response;
                    }
                    ask(shared, Request::Cancel { id }).await
                }
                ["api", "blobs"] => actions::upload(shared, request).await,
                ["api", "jobs"] => actions::submit(shared, request).await,
                ["api", "trust"] => actions::trust(shared, request, true).await,
                ["api", "trust", "remove"] => actions::trust(shared, request, false).await,
                ["api", "share"] => actions::share(shared, request).await,
                _ => not_allowed_or_found(&method, &path, &segments),
            }
        }
        _ => not_allowed_or_found(&method, &path, &segments),
    }
}

/// 405 for a path that exists under another method, else 404.
fn not_allowed_or_found(method: &Method, path: &str, segments: &[&str]) -> Response<Body> {
    if known(segments) {
        error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{method} is not allowed on {path}"),
        )
    } else {
        error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("nothing at {path}"),
        )
    }
}

/// Whether a path exists under some method (for 405 rather than 404).
fn known(segments: &[&str]) -> bool {
    matches!(
        segments,
        [""] | [
            "api",
            "status" | "peers" | "jobs" | "events" | "blobs" | "trust" | "share"
        ] | ["api", "jobs", _]
            | ["api", "jobs", _, "cancel" | "results"]
            | ["api", "trust", "remove"]
    )
}

/// The page itself, kept out of frames and caches, its address (which
/// may carry the token) out of Referer headers.
fn page() -> Response<Body> {
    let mut response = Response::new(full(PAGE));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
             form-action 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `/?token=…` (already checked): the session cookie, and back to `/`
/// so the token leaves the address bar and the history.
fn login(shared: &Shared) -> Response<Body> {
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, HeaderValue::from_static("/"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = shared
        .gate
        .session_cookie()
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `GET /api/events`: a stream, or 503 when too many are open.
fn events(shared: &Shared) -> Response<Body> {
    let Some(messages) = shared.hub.subscribe() else {
        let mut busy = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            &format!(
                "{} event streams are open already; close a page",
                super::events::MAX_STREAMS
            ),
        );
        // Its connection is not kept for another request either.
        busy.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return busy;
    };
    let start = futures::stream::once(async { Bytes::from_static(b"retry: 2000\n\n") });
    let frames = start
        .chain(messages)
        .map(|bytes| Ok::<_, Infallible>(Frame::data(bytes)));
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
