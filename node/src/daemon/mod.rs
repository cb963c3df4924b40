//! `corral up`: the daemon. [`run`] wires the rooms together — the swarm,
//! the peer view, the coordinator and the worker, the control socket, the
//! device probe — and hands them to the event loop ([`event_loop`]), which
//! only routes: each kind of event has its handler in a file of its own
//! (adverts and the owner's policy in [`advert`], membership in
//! [`membership`], placing tasks in [`offers`], requests from peers and
//! results in [`inbound`], the control socket's requests in [`control`]).
//! Slow work — reading blob chunks for peers, storing results, scanning the
//! store, reading `/proc` — runs off the loop and comes back as events.
//! Gossip carries capacity adverts and signed module records ([`modules`]),
//! on topics of their own; jobs go point to point (DESIGN §3, §4).

mod advert;
mod control;
mod event_loop;
mod inbound;
mod leave;
mod membership;
mod module_book;
mod modules;
mod node;
mod offers;
mod probe;
mod relays;
mod results;
mod screening;
mod state;
mod sweep;

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use corral_scheduler::view::{PeerView, ViewConfig};
use tokio::sync::{Semaphore, mpsc};

use crate::blobs::BlobStore;
use crate::capacity::{OwnerPolicy, SystemLoad};
use crate::control::server;
use crate::control::watch::Watchers;
use crate::dispatch::coordinator::Coordinator;
use crate::dispatch::worker::{Worker, WorkerCtx, events_capacity};
use crate::dispatch::{FetchLocks, NetHandle};
use crate::identity;
use crate::net::dialer::Dialer;
use crate::net::discovery::Found;
use crate::store::Store;

use self::event_loop::Inputs;
pub use self::node::{ADVERT_INTERVAL, DaemonConfig, MISSED_ADVERTS};
use self::node::{MAX_INTAKE, MAX_SERVING, Node};
use self::probe::Reading;
use self::state::{Durable, ResultReady, Served};

/// Runs the daemon until `corral leave`, SIGTERM or Ctrl-C.
/// `store` is the node's store, opened by the caller (which holds its lock).
pub async fn run(config: DaemonConfig, store: Store) -> anyhow::Result<()> {
    let key = identity::load_node_key(&config.data_dir)?;
    let psk = identity::load_mesh_key(&config.data_dir)?;
    let name = store
        .get("name")?
        .unwrap_or_else(crate::job::local::device_name);
    let mesh = identity::mesh_id(&psk);
    let namespace = crate::net::rendezvous::namespace(&mesh);

    let (calls_tx, calls) = mpsc::channel(64);
    server::serve(&config.data_dir, calls_tx.clone())?;
    // The page asks the loop what the CLI asks, on the same channel.
    let http = config
        .http
        .and_then(|addr| crate::http::start(addr, &config.data_dir, calls_tx));

    let roles = crate::net::relay::Roles {
        relay: config.relay,
        beyond_lan: config.relay
            || !config.relays.is_empty()
            || config.bootstrap.iter().any(crate::net::is_circuit),
    };
    let mut swarm = crate::net::swarm::build(&key, psk, roles)?;
    let topic = crate::net::swarm::subscribe_capacity(&mut swarm.behaviour_mut().gossipsub)?;
    let modules_topic = crate::net::swarm::subscribe_modules(&mut swarm.behaviour_mut().gossipsub)?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("cannot listen on {addr}"))?;
    }
    for addr in &config.external {
        swarm.add_external_address(addr.clone());
    }
    let (lanes, lane_events) = crate::net::lane::Lanes::new(swarm.behaviour().lane.new_control())?;
    let relays = crate::net::relay::Relays::new(&config.relays);
    let (found_tx, found) = mpsc::channel::<Found>(256);
    let blobs = BlobStore::open(&config.data_dir)?;
    let locks = FetchLocks::default();
    let (net, net_rx) = NetHandle::new();
    let (events_tx, worker_events) = mpsc::channel(events_capacity(config.slots));
    let (results_tx, results) = mpsc::channel::<ResultReady>(MAX_INTAKE);
    let (served_tx, served) = mpsc::channel::<Served>(MAX_SERVING * 4);
    let (durable_tx, durable) = mpsc::channel::<Durable>(MAX_INTAKE);
    let (verified_tx, verified) = screening::channel();
    let (readings_tx, readings) = mpsc::channel::<Reading>(4);
    let mut runtime =
        crate::runtime::Runtime::new(Some(config.data_dir.join("cache").join("modules")))?;
    // A test switch: modules above this size start on the interpreter while
    // the JIT compiles them (the tests' modules are all small).
    if cfg!(feature = "test-hooks")
        && let Some(bytes) = std::env::var("CORRAL_TEST_QUICK_COMPILE_BYTES")
            .ok()
            .and_then(|v| v.parse().ok())
    {
        runtime = runtime.with_quick_compile_bytes(bytes);
    }
    let runtime = Arc::new(runtime);
    // A test switch: only builds with the `test-hooks` feature honour it.
    let fault_lie = cfg!(feature = "test-hooks")
        && std::env::var("CORRAL_TEST_FAULT").is_ok_and(|v| v == "lie");
    if fault_lie {
        tracing::warn!("CORRAL_TEST_FAULT=lie: this worker reports wrong results (a test switch)");
    }
    let ctx = Arc::new(WorkerCtx {
        me: key.peer_key(),
        key: key.signing_key(),
        blobs: blobs.clone(),
        locks: locks.clone(),
        net: net.clone(),
        runtime,
        runs: Default::default(),
        handle: tokio::runtime::Handle::current(),
        events: events_tx,
        store: store.clone(),
        engines: config.engines.iter().map(|e| e.engine).collect(),
        fault_lie,
        deliveries: Default::default(),
        share: Default::default(),
    });
    probe::spawn(SystemLoad::new(), ctx.clone(), readings_tx)?;
    let worker = Worker::new(ctx, config.slots, config.max_memory)?;
    let coord = Coordinator::load(
        key.peer_key(),
        key.signing_key(),
        store.clone(),
        blobs.clone(),
    );
    let modules = module_book::ModuleBook::load(&store, key.peer_key(), modules_topic);
    let mut node = Node {
        view: PeerView::new(
            key.peer_key(),
            ViewConfig {
                advert_interval_ms: ADVERT_INTERVAL.as_millis() as u64,
                missed_adverts: MISSED_ADVERTS,
            },
        ),
        swarm,
        store,
        me: key.peer_key(),
        peer_id: key.peer_id(),
        name,
        mesh,
        policy: OwnerPolicy::new(config.share),
        timeline: Default::default(),
        reading: Reading::default(),
        busy_since: None,
        share_told: config.slot_share,
        // Relays are dialled like `--peer`s: a reservation needs the
        // connection.
        dialer: Dialer::new(
            config
                .bootstrap
                .iter()
                .chain(relays.addrs())
                .cloned()
                .collect(),
        ),
        relays,
        direct_waiters: HashMap::new(),
        rendezvous: crate::net::rendezvous::Rendezvous::new(key.peer_id()),
        namespace,
        paths: Default::default(),
        config,
        seq: 0,
        topic,
        listen_addrs: Vec::new(),
        discovery: None,
        found_tx,
        peer_ids: HashMap::new(),
        dirty: coord.has_live_jobs(),
        worker,
        coord,
        blobs,
        locks,
        net,
        pending_tasks: HashMap::new(),
        lanes,
        pending_blobs: HashMap::new(),
        results_tx,
        served_tx,
        durable_tx,
        serving: Arc::new(Semaphore::new(MAX_SERVING)),
        intake: Arc::new(Semaphore::new(MAX_INTAKE)),
        verified_tx,
        verifying: Arc::new(Semaphore::new(screening::MAX_VERIFYING)),
        inline: Default::default(),
        watchers: Watchers::default(),
        leaving: None,
        sweeping: Default::default(),
        modules,
        http,
    };
    node.dialer.pump(&mut node.swarm);
    tracing::info!(peer = %node.peer_id, name = %node.name, mesh = %node.mesh, "corral is up");

    let inputs = Inputs {
        calls,
        found,
        net_rx,
        worker_events,
        results,
        served,
        durable,
        verified,
        readings,
        lanes: lane_events,
    };
    event_loop::run(&mut node, inputs).await?;
    node.leave().await;
    Ok(())
}
