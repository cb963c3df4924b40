//! Starting and stopping the daemon: `corral up` (keys and store checked,
//! the engines calibrated in a child process the first time, the daemon's
//! configuration resolved, the runtime started) and `corral leave`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::UsageError;
use crate::cli::UpArgs;
use crate::config::DataDir;
use crate::control::{self, Request};
use crate::daemon::{self, DaemonConfig};
use crate::identity;
use crate::store::Store;

/// `corral up`.
pub fn up(data_dir: Option<PathBuf>, args: UpArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    if args.relay_addrs.len() > crate::net::relay::MAX_RELAYS {
        return Err(UsageError(format!(
            "{} relays given with --relay-addr; at most {}",
            args.relay_addrs.len(),
            crate::net::relay::MAX_RELAYS
        ))
        .into());
    }
    // Fail early and clearly: keys first, then the store lock.
    identity::load_node_key(dir.root())?;
    identity::load_mesh_key(dir.root())?;
    if control::client::daemon_running(dir.root()) {
        return Err(UsageError(format!(
            "a corral daemon is already running for {}",
            dir.root().display()
        ))
        .into());
    }
    // Calibrate in a child process the first time: the engines' compilers
    // and code would otherwise stay in the daemon's memory for good.
    let mut store = Store::open(dir.root())?;
    if crate::calibration::cached(&store)?.is_none() {
        // The child needs the store: let go of it while it runs.
        drop(store);
        eprintln!("corral: calibrating the engines of this device (once)…");
        let exe = std::env::current_exe().context("cannot find the corral binary")?;
        let status = std::process::Command::new(exe)
            .arg("--data-dir")
            .arg(dir.root())
            .args(["bench", "--json"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run the calibration")?;
        if !status.success() {
            anyhow::bail!("the engine calibration failed (see above)");
        }
        store = Store::open(dir.root())?;
    }
    let slots = args
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u16));
    let engines = {
        let mut speeds = crate::calibration::cached(&store)?
            .context("the calibration did not record a speed for every engine")?;
        match args.engine {
            crate::runtime::EngineChoice::Auto => {}
            crate::runtime::EngineChoice::Jit => {
                speeds.retain(|s| s.engine == corral_protocol::receipt::EngineKind::Jit)
            }
            crate::runtime::EngineChoice::Interp => {
                speeds.retain(|s| s.engine == corral_protocol::receipt::EngineKind::Interp)
            }
        }
        if speeds.is_empty() {
            return Err(UsageError("--engine jit: this build or CPU has no JIT".into()).into());
        }
        // The calibration measured one core's speed; a slot gets less of it
        // when the slots share fewer CPUs (a cgroup limit, more slots than
        // cores). The daemon advertises speeds for this share.
        let share = crate::capacity::slot_share_here(slots);
        if share < 1.0 {
            tracing::info!(share, "each slot gets this share of a CPU; speeds scaled");
        }
        let mut bootstrap = args.peers.clone();
        for a in store
            .get("bootstrap")?
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            if let Ok(addr) = a.parse() {
                bootstrap.push(addr);
            }
        }
        (speeds, bootstrap, share)
    };
    // Relays named now are kept for the next start; without any, the ones
    // kept (from the invite token, or an earlier --relay-addr) are used.
    let relays = if args.relay_addrs.is_empty() {
        super::token::stored_relays(&store)?
    } else {
        let text: Vec<String> = args.relay_addrs.iter().map(ToString::to_string).collect();
        store.set(super::token::RELAYS_KEY, &text.join(" "))?;
        args.relay_addrs
    };
    let config = DaemonConfig {
        data_dir: dir.root().to_path_buf(),
        listen: if args.listen.is_empty() {
            vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .expect("a valid multiaddr literal"),
            ]
        } else {
            args.listen
        },
        bootstrap: engines.1,
        mdns: !args.no_mdns,
        slots,
        share: args.share,
        engines: engines.0,
        slot_share: engines.2,
        max_memory: args.max_memory,
        grace: args.grace,
        cache_size: args.cache_size,
        relay: args.relay,
        external: args.external,
        relays,
        http: (!args.no_http).then_some(args.http),
    };
    // One thread for the event loop and every connection: a message from a
    // peer reaches the loop without waking another thread (a multi-threaded
    // runtime cost each hop a futex wake). Tasks run on blocking threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(daemon::run(config, store))?;
    Ok(ExitCode::SUCCESS)
}

/// `corral leave`.
pub fn leave(data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    control::client::call(dir.root(), Request::Leave)?;
    // Wait for the daemon to finish saying goodbye (its socket goes away).
    for _ in 0..50 {
        if !control::client::daemon_running(dir.root()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("corral: left the mesh");
    Ok(ExitCode::SUCCESS)
}
