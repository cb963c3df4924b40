//! The page's routes: `GET /` (the page), `GET /api/status`, `/api/peers`,
//! `/api/jobs`, `/api/jobs/{id}`, `GET /api/events` (the push stream) and
//! `POST /api/jobs/{id}/cancel`. Each API answer is the control request's
//! answer as the CLI gets it; each refusal a JSON `{error, code}` with its
//! 4xx or 5xx status.

use std::convert::Infallible;

use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request as HttpRequest, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Shared;
use super::auth::Refusal;
use crate::control::{ControlError, ErrorCode, Request};

/// The page, built into the binary.
const PAGE: &str = include_str!("page.html");
/// Largest request body (actions carry little).
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;
/// What a connection beyond the limit gets before it is closed.
pub(super) const BUSY_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: 59\r\nconnection: close\r\n\r\n{\"error\":\"too many connections to this page\",\"code\":\"busy\"}";

/// A response body: whole, or a stream.
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

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
        (&Method::GET, ["api", "events"]) => events(shared),
        (&Method::POST, ["api", "jobs", id, "cancel"]) => {
            let id = id.to_string();
            if let Err(refusal) = shared.gate.action(request.headers()) {
                return refused(refusal);
            }
            if let Err(response) = read_body(request).await {
                return response;
            }
            ask(shared, Request::Cancel { id }).await
        }
        (_, ["" | "api", ..]) if known(&segments) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            &format!("{method} is not allowed on {path}"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("nothing at {path}"),
        ),
    }
}

/// Whether a path exists under some method (for 405 rather than 404).
fn known(segments: &[&str]) -> bool {
    matches!(
        segments,
        [""] | ["api", "status" | "peers" | "jobs" | "events"]
            | ["api", "jobs", _]
            | ["api", "jobs", _, "cancel"]
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

/// Reads a request's body, refusing one over [`MAX_BODY_BYTES`] (by its
/// length when it declares one, else as it arrives).
async fn read_body(request: HttpRequest<Incoming>) -> Result<Bytes, Response<Body>> {
    super::listen::read_limited(request, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            super::listen::BodyError::TooLarge(_) => {
                error(StatusCode::PAYLOAD_TOO_LARGE, "too_large", &e.to_string())
            }
            super::listen::BodyError::Unreadable(_) => {
                error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string())
            }
        })
}

/// A control request's answer as JSON, or its error with a status.
async fn ask(shared: &Shared, request: Request) -> Response<Body> {
    let (tx, rx) = oneshot::channel();
    let gone = || ControlError::unavailable("the daemon is shutting down");
    let answer = match shared.calls.send((request, tx)).await {
        Ok(()) => rx.await.unwrap_or_else(|_| Err(gone())),
        Err(_) => Err(gone()),
    };
    match answer {
        Ok(value) => json_response(StatusCode::OK, value).await,
        Err(e) => {
            let status = match e.code {
                ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
                ErrorCode::NotFound => StatusCode::NOT_FOUND,
                ErrorCode::Refused => StatusCode::CONFLICT,
                ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Version | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, e.code.name(), &e.message)
        }
    }
}

/// `value` as a JSON response, serialised on a blocking thread: a job of
/// many tasks is megabytes, and the runtime's one thread is the loop's.
async fn json_response(status: StatusCode, value: Value) -> Response<Body> {
    let bytes = tokio::task::spawn_blocking(move || serde_json::to_vec(&value))
        .await
        .ok()
        .and_then(Result::ok);
    let Some(bytes) = bytes else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the answer could not be written as JSON",
        );
    };
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    json_headers(&mut response);
    response
}

fn refused(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::Unauthorized => error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "this page needs its login token: open the URL `corral dashboard --url` prints",
        ),
        Refusal::Forbidden(why) => error(StatusCode::FORBIDDEN, "forbidden", why),
    }
}

/// A refusal: `{error, code}`.
fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = json!({ "error": message, "code": code }).to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    json_headers(&mut response);
    response
}

fn json_headers(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn full(bytes: impl Into<Bytes>) -> Body {
    BodyExt::boxed_unsync(Full::new(bytes.into()))
}
