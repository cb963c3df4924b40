//! `corral serve`: an HTTP front door whose requests run on the mesh,
//! WAGI-style (issue 22). Each request is one task of a module published
//! by name: the CGI/1.1 variables ([`cgi`]) are its environment, the body
//! its stdin, and its stdout a CGI response ([`response`]). Routes and
//! their matching are in [`route`], one request's life in [`handler`], the
//! task on the mesh in [`task`]; connections are served by the same
//! bounded loop as the live page ([`crate::http::listen`]).
//!
//! Bounded: connections, request heads (size and read time), bodies (size
//! per route, read time), requests in flight (beyond, 503 with
//! Retry-After), each task's time, memory and output.

pub mod cgi;
pub mod handler;
pub mod response;
pub mod route;
pub mod task;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use corral_protocol::hash::ContentHash;
use tokio::sync::Semaphore;

use self::route::RouteSpec;
use self::task::Mesh;
use crate::http::listen::{Bounds, accept_bounded};

/// Most connections open at once.
pub const MAX_CONNECTIONS: usize = 256;
/// Longest a client may take to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest request head.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Longest a client may take to send a request's body (then 408).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_S: u32 = 1;
/// Most requests in flight at once (`--concurrency`): each holds a control
/// connection to the daemon while it waits, and those are bounded too.
pub const MAX_CONCURRENCY: usize = crate::control::server::MAX_CONNECTIONS / 2;

/// What a connection beyond [`MAX_CONNECTIONS`] gets.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\nretry-after: 1\r\ncontent-length: 24\r\nconnection: close\r\n\r\n503 Service Unavailable\n";

/// The limits of a route's requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteLimits {
    /// Wall-clock limit of the task.
    pub timeout: Duration,
    /// Its memory cap, bytes.
    pub memory: u64,
    /// Largest request body, bytes (beyond: 413, nothing runs).
    pub max_body: usize,
    /// Largest response (the task's stdout), bytes.
    pub max_output: u64,
}

impl RouteLimits {
    /// The task's limits on the mesh.
    pub fn task(&self) -> corral_protocol::manifest::Limits {
        corral_protocol::manifest::Limits {
            timeout_ms: u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: self.memory,
            output_bytes: self.max_output,
            // A request's task has no directories to write in; the
            // smallest bounds a manifest allows.
            disk_bytes: 1,
            files: 1,
        }
    }
}

/// A route's module as resolved: which published version serves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The module's name (argv[0]).
    pub name: String,
    /// The version it resolved to.
    pub version: String,
    /// The module's blob, here.
    pub module: ContentHash,
}

/// A route with its module resolved.
#[derive(Clone, Debug)]
pub struct Route {
    /// As given.
    pub spec: RouteSpec,
    /// Its module when the server started.
    pub resolved: Resolved,
    /// Its requests' limits.
    pub limits: RouteLimits,
}

/// Resolves a route's NAME@VERSION again (blocking: it asks the daemon,
/// which may fetch the module).
pub type Resolver = Arc<dyn Fn(&RouteSpec) -> anyhow::Result<Resolved> + Send + Sync>;

/// The front door's state, shared by every request.
pub struct Server {
    routes: Vec<Route>,
    /// Each route's module now (index-aligned with `routes`): resolved
    /// again now and then ([`refresh`]).
    modules: RwLock<Vec<Resolved>>,
    mesh: Mesh,
    permits: Arc<Semaphore>,
    local: SocketAddr,
    placement_wait: Duration,
}

impl Server {
    /// A server for `routes` (in the order given) through the daemon of
    /// `mesh`, at most `concurrency` requests in flight, listening on
    /// `local`. A request's task may wait `placement_wait` for a device
    /// besides its own time limit before it is given up (503).
    pub fn new(
        routes: Vec<Route>,
        mesh: Mesh,
        concurrency: usize,
        local: SocketAddr,
        placement_wait: Duration,
    ) -> Self {
        Self {
            modules: RwLock::new(routes.iter().map(|r| r.resolved.clone()).collect()),
            routes,
            mesh,
            permits: Arc::new(Semaphore::new(concurrency.clamp(1, MAX_CONCURRENCY))),
            local,
            placement_wait,
        }
    }
}

impl Server {
    /// Route `i`'s module now.
    fn module_of(&self, i: usize) -> Option<Resolved> {
        let modules = self.modules.read().unwrap_or_else(|e| e.into_inner());
        modules.get(i).cloned()
    }
}

/// Resolves every route again each `every` with `resolve`: a newer
/// matching version (published since, or trusted since) serves the
/// route's next requests; a route that no longer resolves keeps its
/// module, with a warning.
async fn refresh(server: Arc<Server>, every: Duration, resolve: Resolver) {
    loop {
        tokio::time::sleep(every).await;
        for (i, route) in server.routes.iter().enumerate() {
            let (spec, resolve) = (route.spec.clone(), resolve.clone());
            let fresh = match tokio::task::spawn_blocking(move || resolve(&spec)).await {
                Ok(Ok(fresh)) => fresh,
                Ok(Err(e)) => {
                    tracing::warn!(route = %route.spec.pattern,
                        "{} no longer resolves; the route keeps its module: {e:#}",
                        route.spec.reference);
                    continue;
                }
                Err(e) => {
                    tracing::warn!("resolving a route failed: {e}");
                    continue;
                }
            };
            let mut modules = server.modules.write().unwrap_or_else(|e| e.into_inner());
            if let Some(now) = modules.get_mut(i)
                && *now != fresh
            {
                eprintln!(
                    "corral serve: {} → {}@{} ({}) from now on",
                    route.spec.pattern,
                    fresh.name,
                    fresh.version,
                    fresh.module.short()
                );
                *now = fresh;
            }
        }
    }
}

/// Serves `listener` until the process ends; with `refresh`, each route
/// is resolved again that often.
pub async fn serve(
    listener: tokio::net::TcpListener,
    server: Server,
    refresh_with: Option<(Duration, Resolver)>,
) {
    let server = Arc::new(server);
    if let Some((every, resolve)) = refresh_with {
        tokio::spawn(refresh(server.clone(), every, resolve));
    }
    let bounds = Bounds {
        connections: MAX_CONNECTIONS,
        head_timeout: HEAD_TIMEOUT,
        head_bytes: MAX_HEAD_BYTES,
        busy: BUSY,
    };
    accept_bounded(listener, bounds, move |request, remote| {
        handler::handle(server.clone(), request, remote)
    })
    .await;
}
