//! The live page (issue 21): `corral up` serves one HTML page and a small
//! JSON API on `127.0.0.1:7420` (`--http ADDR`, `--no-http`). It reads the
//! node the way the CLI does — control requests sent over the control
//! server's channel to the event loop ([`crate::control::server::Call`]) —
//! so the page shows exactly what `corral status`, `peers`, `jobs` and
//! `job` show, and the loop does nothing new for it. Routes are in
//! [`routes`], the login token and the request checks in [`auth`], the push
//! stream in [`events`], the bounded server loop (shared with `corral
//! serve`) in [`listen`].
//!
//! Bounded: connections, streams, each stream's queue, request heads and
//! bodies. A page that cannot bind its address is logged and left out; the
//! daemon runs on without it.

mod actions;
mod archive;
mod auth;
mod events;
pub mod listen;
mod reply;
mod routes;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::blobs::BlobStore;
use crate::control::server::Call;

pub use self::auth::{TOKEN_FILE, read_token};

/// The page's address unless `--http` names another.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7420";

/// Most HTTP connections open at once (event streams included).
const MAX_CONNECTIONS: usize = 64;
/// Longest a client may take to send a request's head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head read (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// What every request handler shares.
struct Shared {
    calls: mpsc::Sender<Call>,
    /// The data dir's blob store: uploads go in, results come out.
    blobs: BlobStore,
    gate: auth::Gate,
    hub: Arc<events::Hub>,
}

/// Starts the page on `addr`, sending its control requests on `calls`.
/// Returns the address it listens on, or `None` (logged) when it cannot:
/// the address is taken, or a login token cannot be made. Must be called
/// on the daemon's runtime.
pub fn start(addr: SocketAddr, data_dir: &Path, calls: mpsc::Sender<Call>) -> Option<SocketAddr> {
    let gate = match auth::Gate::for_addr(addr, data_dir) {
        Ok(gate) => gate,
        Err(e) => {
            tracing::warn!(
                "the page is off: no login token for http://{addr} ({e:#}); \
                 the daemon runs without it"
            );
            return None;
        }
    };
    let blobs = match BlobStore::open(data_dir) {
        Ok(blobs) => blobs,
        Err(e) => {
            tracing::warn!("the page is off: cannot open the blob store ({e:#})");
            return None;
        }
    };
    let listener = match std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .and_then(tokio::net::TcpListener::from_std)
    {
        Ok(listener) => listener,
        Err(e) => {
            tracing::warn!(
                "the page is off: cannot listen on http://{addr} ({e}); the daemon runs \
                 without it (another corral or program holds the port? choose one with \
                 `corral up --http ADDR`, or `--no-http`)"
            );
            return None;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    let hub = events::Hub::start(calls.clone());
    let shared = Arc::new(Shared {
        calls,
        blobs,
        gate,
        hub,
    });
    tokio::spawn(accept(listener, shared));
    tracing::info!(
        "the page is at http://{bound}/{}",
        if bound.ip().is_loopback() {
            ""
        } else {
            " (with its login token: `corral dashboard --url`)"
        }
    );
    Some(bound)
}

/// Serves the page's connections, a bounded number at once; beyond, a
/// connection gets a 503 and is closed.
async fn accept(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let bounds = listen::Bounds {
        connections: MAX_CONNECTIONS,
        head_timeout: HEAD_TIMEOUT,
        head_bytes: MAX_HEAD_BYTES,
        busy: routes::BUSY_RESPONSE,
    };
    listen::accept_bounded(listener, bounds, move |request, _peer| {
        let shared = shared.clone();
        async move { routes::handle(&shared, request).await }
    })
    .await;
}
