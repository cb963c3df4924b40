//! The bounded HTTP/1.1 server loop both of corral's HTTP servers use (the
//! live page, and `corral serve`'s front door): a cap on connections open
//! at once (beyond it a connection gets a canned 503 and is closed), a
//! timeout on reading a request's head, a cap on the head's size, and
//! request bodies read up to a limit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header;
use hyper::server::conn::http1;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

/// The bounds of a server loop.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    /// Most connections open at once.
    pub connections: usize,
    /// Longest a client may take to send a request's head.
    pub head_timeout: Duration,
    /// Largest request head (request line and headers), bytes.
    pub head_bytes: usize,
    /// What a connection beyond the cap gets (a whole HTTP/1.1 response)
    /// before it is closed.
    pub busy: &'static [u8],
}

/// Accepts connections on `listener` until the process ends, each served
/// by `handle` (called with the request and the client's address) within
/// `bounds`.
pub async fn accept_bounded<H, F, B>(listener: tokio::net::TcpListener, bounds: Bounds, handle: H)
where
    H: Fn(Request<Incoming>, SocketAddr) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = Arc::new(Semaphore::new(bounds.connections));
    loop {
        let Ok((mut stream, peer)) = listener.accept().await else {
            // Out of descriptors, most often: give it a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let _ = stream.write_all(bounds.busy).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |request| {
                let answer = handle(request, peer);
                async move { Ok::<_, std::convert::Infallible>(answer.await) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(bounds.head_timeout)
                .max_buf_size(bounds.head_bytes)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Why a request body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// It holds (or declares) more than the limit.
    #[error("a request body may hold at most {0} bytes")]
    TooLarge(usize),
    /// The client broke off or sent garbage.
    #[error("cannot read the request body: {0}")]
    Unreadable(String),
}

/// Reads a request's body whole, refusing one over `max` bytes before
/// reading anything when its Content-Length says so.
pub async fn read_limited(request: Request<Incoming>, max: usize) -> Result<Bytes, BodyError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    match Limited::new(request.into_body(), max).collect().await {
        Ok(body) => Ok(body.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge(max)),
        Err(e) => Err(BodyError::Unreadable(e.to_string())),
    }
}
