//! How the page's routes answer: bodies read within their bound, control
//! requests asked and their answers (or refusals) written as JSON
//! `{error, code}` with a status.

use std::convert::Infallible;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request as HttpRequest, Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::Shared;
use super::auth::Refusal;
use crate::control::{ControlError, ErrorCode, Request};

/// Largest request body of an action (uploads have their own bound).
pub(super) const MAX_BODY_BYTES: usize = 64 * 1024;

/// A response body: whole, or a stream.
pub(super) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Reads a request's body, refusing one over [`MAX_BODY_BYTES`] (by its
/// length when it declares one, else as it arrives).
pub(super) async fn read_body(request: HttpRequest<Incoming>) -> Result<Bytes, Response<Body>> {
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
pub(super) async fn ask(shared: &Shared, request: Request) -> Response<Body> {
    match call(shared, request).await {
        Ok(value) => json_response(StatusCode::OK, value).await,
        Err(e) => control_error(&e),
    }
}

/// A control request's answer, as the CLI gets it.
pub(super) async fn call(shared: &Shared, request: Request) -> Result<Value, ControlError> {
    let (tx, rx) = oneshot::channel();
    let gone = || ControlError::unavailable("the daemon is shutting down");
    match shared.calls.send((request, tx)).await {
        Ok(()) => rx.await.unwrap_or_else(|_| Err(gone())),
        Err(_) => Err(gone()),
    }
}

/// A control request's failure, with the status its code maps to.
pub(super) fn control_error(e: &ControlError) -> Response<Body> {
    let status = match e.code {
        ErrorCode::BadRequest => StatusCode::BAD_REQUEST,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Refused => StatusCode::CONFLICT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Version | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, e.code.name(), &e.message)
}

/// `value` as a JSON response, serialised on a blocking thread: a job of
/// many tasks is megabytes, and the runtime's one thread is the loop's.
pub(super) async fn json_response(status: StatusCode, value: Value) -> Response<Body> {
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

pub(super) fn refused(refusal: Refusal) -> Response<Body> {
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
pub(super) fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = json!({ "error": message, "code": code }).to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    json_headers(&mut response);
    response
}

pub(super) fn json_headers(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

pub(super) fn full(bytes: impl Into<Bytes>) -> Body {
    BodyExt::boxed_unsync(Full::new(bytes.into()))
}
