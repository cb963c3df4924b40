//! One HTTP request through the front door: matched to its route, its
//! body read within the route's limit, a place among the requests in
//! flight taken (or 503), run as one task on the mesh with the CGI
//! environment, and the module's stdout turned into the response. Every
//! request ends in exactly one access-log line; what went wrong inside is
//! logged, never shown in the page.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};

use super::cgi::{CgiRequest, environment};
use super::response::parse_response;
use super::route::find;
use super::task::{Ended, TaskSpec};
use super::{BODY_TIMEOUT, RETRY_AFTER_S, Server};
use crate::http::listen::{BodyError, read_limited};

/// What the handler answers with.
pub type Reply = Response<Full<Bytes>>;

/// Answers one request; never fails (a failure is a response).
pub async fn handle(server: Arc<Server>, request: Request<Incoming>, remote: SocketAddr) -> Reply {
    let started = Instant::now();
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let (reply, route, device) = answer(&server, request, remote).await;
    eprintln!(
        "corral serve: {} {method} {path} {} device={} {}ms",
        route.as_deref().unwrap_or("-"),
        reply.status().as_u16(),
        device.as_deref().unwrap_or("-"),
        started.elapsed().as_millis()
    );
    reply
}

/// The reply, the route that took the request (if any) and the device
/// that ran it (if any).
async fn answer(
    server: &Server,
    request: Request<Incoming>,
    remote: SocketAddr,
) -> (Reply, Option<String>, Option<String>) {
    let path = request.uri().path().to_string();
    let Some(matched) = find(server.routes.iter().map(|r| &r.spec.pattern), &path) else {
        return (plain(StatusCode::NOT_FOUND), None, None);
    };
    let route = &server.routes[matched.route];
    let label = Some(route.spec.pattern.to_string());
    let method = request.method().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let protocol = format!("{:?}", request.version());
    let headers = request.headers().clone();
    let read = tokio::time::timeout(BODY_TIMEOUT, read_limited(request, route.limits.max_body));
    let body = match read.await {
        Ok(Ok(body)) => body,
        Ok(Err(BodyError::TooLarge(_))) => {
            return (plain(StatusCode::PAYLOAD_TOO_LARGE), label, None);
        }
        Ok(Err(BodyError::Unreadable(e))) => {
            tracing::info!(%remote, "a request body could not be read: {e}");
            return (plain(StatusCode::BAD_REQUEST), label, None);
        }
        Err(_) => return (plain(StatusCode::REQUEST_TIMEOUT), label, None),
    };
    // Past here a task may run: only as many at once as allowed.
    let Ok(_permit) = server.permits.clone().try_acquire_owned() else {
        return (busy(), label, None);
    };
    let cgi = CgiRequest {
        method: &method,
        script_name: &matched.script_name,
        path_info: &matched.path_info,
        query: &query,
        headers: &headers,
        body_len: body.len(),
        server: server.local,
        remote,
        protocol: &protocol,
    };
    let env = match environment(&cgi) {
        Ok(env) => env,
        Err(e) => {
            tracing::info!(%remote, %path, "refused: {e}");
            return (plain(StatusCode::BAD_REQUEST), label, None);
        }
    };
    let Some(module) = server.module_of(matched.route) else {
        return (plain(StatusCode::NOT_FOUND), label, None);
    };
    let task = TaskSpec {
        module: module.module,
        name: module.name,
        env,
        limits: route.limits.task(),
    };
    let wait = route.limits.timeout + server.placement_wait;
    let (job, ended) = match server.mesh.run(&task, body.to_vec(), wait).await {
        Ok(ran) => ran,
        Err(e) => {
            tracing::warn!(route = %route.spec.pattern, "the request could not be run on the mesh: {e:#}");
            return (busy(), label, None);
        }
    };
    match ended {
        Ended::Exited {
            code,
            stdout,
            device,
        } => {
            if code != 0 {
                tracing::info!(%job, %device, "the module exited with {code}");
            }
            match parse_response(&stdout) {
                Ok(cgi) => {
                    let mut reply = Response::new(Full::new(Bytes::from(cgi.body)));
                    *reply.status_mut() = cgi.status;
                    for (name, value) in cgi.headers {
                        reply.headers_mut().append(name, value);
                    }
                    (reply, label, Some(device))
                }
                Err(e) => {
                    tracing::warn!(%job, %device, route = %route.spec.pattern,
                        "the module's output is not a CGI response: {e}");
                    (plain(StatusCode::BAD_GATEWAY), label, Some(device))
                }
            }
        }
        Ended::Stopped {
            reason,
            message,
            device,
        } => {
            tracing::warn!(%job, %device, route = %route.spec.pattern,
                "the task stopped: {reason}{}",
                message.map(|m| format!(": {m}")).unwrap_or_default());
            (
                plain(StatusCode::INTERNAL_SERVER_ERROR),
                label,
                Some(device),
            )
        }
        Ended::NotRun { why } => {
            tracing::warn!(%job, route = %route.spec.pattern, "no device ran the task: {why}");
            (busy(), label, None)
        }
        Ended::TimedOut => {
            tracing::warn!(%job, route = %route.spec.pattern,
                "the task did not end within {:?}; cancelled", wait);
            (busy(), label, None)
        }
    }
}

/// A short plain-text page for a status: its code and standard reason,
/// nothing else (never why it happened).
pub fn plain(status: StatusCode) -> Reply {
    let text = format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let mut reply = Response::new(Full::new(Bytes::from(text)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}

/// 503 with Retry-After: too many requests in flight, or no device free.
fn busy() -> Reply {
    let mut reply = plain(StatusCode::SERVICE_UNAVAILABLE);
    reply
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_S));
    reply
}
