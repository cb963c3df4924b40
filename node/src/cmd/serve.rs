//! `corral serve --listen ADDR --route PATH=NAME[@VERSION]…`: checks the
//! flags, resolves every route's module once (trusted publishers only, its
//! blob fetched here), binds the address and serves until interrupted
//! (DESIGN §9, issue 22), resolving the routes again every `--refresh`.
//! Prints the server's URL on stdout; an access-log line per request on
//! stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use corral_protocol::manifest::{
    MAX_MEMORY_BYTES, MAX_OUTPUT_BYTES, MAX_STDIN_BYTES, MAX_TIMEOUT_MS,
};
use corral_protocol::module_record::ModuleRef;

use super::UsageError;
use crate::blobs::BlobStore;
use crate::cli::ServeArgs;
use crate::config::DataDir;
use crate::control::client;
use crate::serve::route::{RouteSpec, check_routes};
use crate::serve::task::Mesh;
use crate::serve::{MAX_CONCURRENCY, Resolved, Resolver, Route, RouteLimits, Server};

/// Runs `corral serve`.
pub fn serve(data_dir: Option<PathBuf>, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let flags = limits_of(&args)?;
    check_routes(&args.routes).map_err(UsageError)?;
    let limits = args
        .routes
        .iter()
        .map(|spec| route_limits(spec, flags))
        .collect::<Result<Vec<_>, _>>()?;
    let dir = DataDir::resolve(data_dir)?;
    if !client::daemon_running(dir.root()) {
        return Err(UsageError(format!(
            "no corral daemon is running for {}: `corral serve` runs each request on the mesh \
             through it; start one with `corral up`",
            dir.root().display()
        ))
        .into());
    }
    let root = dir.root().to_path_buf();
    let resolver: Resolver = Arc::new(move |spec: &RouteSpec| resolve(&root, spec));
    let mut routes = Vec::with_capacity(args.routes.len());
    for (spec, limits) in args.routes.iter().zip(limits) {
        let resolved = resolver(spec)?;
        eprintln!(
            "corral serve: {} → {}@{} ({})",
            spec.pattern,
            resolved.name,
            resolved.version,
            resolved.module.short()
        );
        routes.push(Route {
            spec: spec.clone(),
            resolved,
            limits,
        });
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .with_context(|| {
            format!(
                "cannot listen on {} (another program holds the port? choose one with --listen)",
                args.listen
            )
        })?;
    let local = listener.local_addr().unwrap_or(args.listen);
    let mesh = Mesh {
        data_dir: dir.root().to_path_buf(),
        blobs: BlobStore::open(dir.root())?,
    };
    let server = Server::new(routes, mesh, args.concurrency, local, args.queue_timeout);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the server's runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .context("cannot serve the listening socket")?;
        println!("http://{local}/");
        eprintln!(
            "corral serve: listening on http://{local}/ ({} in flight at most)",
            args.concurrency
        );
        tokio::select! {
            () = crate::serve::serve(listener, server, Some((args.refresh, resolver))) => {}
            _ = tokio::signal::ctrl_c() => eprintln!("corral serve: interrupted; stopping"),
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves a route's NAME@VERSION through the daemon (its module fetched
/// here); a name that does not resolve is a usage error naming the route.
fn resolve(data_dir: &Path, spec: &RouteSpec) -> anyhow::Result<Resolved> {
    let want = ModuleRef::parse(&spec.reference)
        .map_err(|e| UsageError(format!("--route {}: {e}", spec.pattern)))?;
    let named = super::modules::resolve_named(data_dir, &want, &spec.reference)
        .with_context(|| format!("--route {}={}", spec.pattern, spec.reference))?;
    Ok(Resolved {
        name: named.name,
        version: named.version,
        module: named.module,
    })
}

/// The flags' limits, each checked against what a task may be given.
fn limits_of(args: &ServeArgs) -> Result<RouteLimits, UsageError> {
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        return Err(UsageError(format!(
            "--concurrency {}: give 1 to {MAX_CONCURRENCY}",
            args.concurrency
        )));
    }
    let limits = RouteLimits {
        timeout: args.timeout,
        memory: args.memory,
        max_body: usize::try_from(args.max_body).unwrap_or(usize::MAX),
        max_output: args.max_output,
    };
    bounded(limits, |limit| format!("--{limit}"))
}

/// A route's limits: its own where it sets them, else the flags'; checked
/// as the flags are.
fn route_limits(spec: &RouteSpec, flags: RouteLimits) -> Result<RouteLimits, UsageError> {
    let own = spec.limits;
    let limits = RouteLimits {
        timeout: own.timeout.unwrap_or(flags.timeout),
        memory: own.memory.unwrap_or(flags.memory),
        max_body: own
            .max_body
            .map_or(flags.max_body, |n| usize::try_from(n).unwrap_or(usize::MAX)),
        max_output: own.max_output.unwrap_or(flags.max_output),
    };
    bounded(limits, |limit| format!("--route {}: {limit}", spec.pattern))
}

/// `limits` if each is within what a task may be given, else the one that
/// is not, named by `name`.
fn bounded(limits: RouteLimits, name: impl Fn(&str) -> String) -> Result<RouteLimits, UsageError> {
    if limits.timeout.as_millis() > u128::from(MAX_TIMEOUT_MS) {
        return Err(UsageError(format!(
            "{}: at most {}",
            name("timeout"),
            humantime::format_duration(std::time::Duration::from_millis(MAX_TIMEOUT_MS))
        )));
    }
    for (limit, value, max) in [
        ("memory", limits.memory, MAX_MEMORY_BYTES),
        (
            "max-body",
            u64::try_from(limits.max_body).unwrap_or(u64::MAX),
            MAX_STDIN_BYTES,
        ),
        ("max-output", limits.max_output, MAX_OUTPUT_BYTES),
    ] {
        if value > max {
            return Err(UsageError(format!(
                "{}: at most {}",
                name(limit),
                bytesize::ByteSize::b(max).display().iec()
            )));
        }
    }
    Ok(limits)
}
