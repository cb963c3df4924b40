//! `corral up`: the daemon. [`run`] wires the rooms together — the swarm,
//! the peer view, the coordinator and the worker, the control socket, the
//! device probe — and hands them to the event loop ([`event_loop`]), which
//! only routes: each kind of event has its handler in a file of its own
//! (adverts and the owner's policy in [`advert`], membership in
//! [`membership`], placing tasks in [`offers`], requests from peers and
//! results in [`inbound`], the control socket's requests in [`control`]).
//! Slow work — reading blob chunks for peers, storing results, scanning the
//! store, reading `/proc` — runs off the loop and comes back as events.
//! Gossip carries capacity only (DESIGN §3, §4).

mod advert;
mod control;
mod event_loop;
mod inbound;
mod leave;
mod membership;
mod offers;
mod probe;
mod results;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use corral_protocol::capacity::EngineSpeed;
use corral_protocol::ids::PeerKey;
use corral_scheduler::view::{PeerView, ViewConfig};
use libp2p::gossipsub::IdentTopic;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{Semaphore, mpsc};

use crate::blobs::BlobStore;
use crate::capacity::{OwnerPolicy, Share, SystemLoad};
use crate::control::server;
use crate::control::watch::Watchers;
use crate::dispatch::coordinator::Coordinator;
use crate::dispatch::worker::{Worker, WorkerCtx};
use crate::dispatch::{FetchLocks, NetHandle};
use crate::identity;
use crate::net::CAPACITY_TOPIC;
use crate::net::behaviour::Behaviour;
use crate::net::dialer::Dialer;
use crate::net::discovery::{Discovery, Found};
use crate::store::Store;

use self::event_loop::Inputs;
use self::inbound::{Pending, Served};
use self::probe::Reading;
use self::results::ResultReady;

/// How often this node advertises its capacity (DESIGN §4: 1–2 s).
pub const ADVERT_INTERVAL: Duration = Duration::from_millis(1000);
/// Adverts missed before a silent peer is dropped.
pub const MISSED_ADVERTS: u32 = 3;

/// Blob chunks read from disk for peers at once (each up to 1 MiB).
const MAX_SERVING: usize = 8;
/// Results being taken in at once (output fetched, stored, hashed).
const MAX_INTAKE: usize = 64;

/// The daemon's settings, resolved from `corral up`'s flags.
#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// The data dir.
    pub data_dir: PathBuf,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to dial at start (`--peer`).
    pub bootstrap: Vec<Multiaddr>,
    /// Announce and browse with mDNS.
    pub mdns: bool,
    /// Task slots.
    pub slots: u16,
    /// Owner policy.
    pub share: Share,
    /// Engines and their calibrated speeds (one core's).
    pub engines: Vec<EngineSpeed>,
    /// The share of a core each slot had at start-up (its cgroup's limit,
    /// slots per core); tasks run since may show another.
    pub slot_share: f64,
    /// `--max-memory`: most memory the mesh's tasks may use here, bytes.
    pub max_memory: Option<u64>,
    /// `--grace`: how long running tasks may go on once the owner is back.
    pub grace: Duration,
}

/// Everything the event loop's handlers work on. It owns the `Swarm` and
/// the maps of requests waiting for answers; the rooms it drives (view,
/// coordinator, worker) are plain state machines.
struct Node {
    swarm: Swarm<Behaviour>,
    view: PeerView,
    store: Store,
    me: PeerKey,
    peer_id: PeerId,
    name: String,
    mesh: String,
    config: DaemonConfig,
    policy: OwnerPolicy,
    /// The device's latest reading (host load, free memory, power, the
    /// share of a core tasks got), from the probe thread.
    reading: Reading,
    /// Since when the owner has been back (the policy not idle).
    busy_since: Option<std::time::Instant>,
    seq: u64,
    topic: IdentTopic,
    listen_addrs: Vec<Multiaddr>,
    discovery: Option<Discovery>,
    found_tx: mpsc::Sender<Found>,
    peer_ids: HashMap<PeerKey, PeerId>,
    /// The share of a core per slot last logged (start-up's until runs show
    /// another).
    share_told: f64,
    dialer: Dialer,
    worker: Worker,
    coord: Coordinator,
    blobs: BlobStore,
    locks: FetchLocks,
    net: NetHandle,
    pending_tasks: HashMap<libp2p::request_response::OutboundRequestId, Pending>,
    pending_blobs: HashMap<
        libp2p::request_response::OutboundRequestId,
        tokio::sync::oneshot::Sender<Result<corral_protocol::messages::BlobResponse, String>>,
    >,
    results_tx: mpsc::Sender<ResultReady>,
    served_tx: mpsc::Sender<Served>,
    /// Bounds the blob chunks read for peers at once.
    serving: Arc<Semaphore>,
    /// Bounds the results being taken in at once.
    intake: Arc<Semaphore>,
    /// Placement should run again (something changed).
    dirty: bool,
    /// CLIs waiting for a job to change.
    watchers: Watchers,
    /// The drain, once leaving.
    leaving: Option<leave::Leaving>,
}

/// Runs the daemon until `corral leave`, SIGTERM or Ctrl-C.
/// `store` is the node's store, opened by the caller (which holds its lock).
pub async fn run(config: DaemonConfig, store: Store) -> anyhow::Result<()> {
    let key = identity::load_node_key(&config.data_dir)?;
    let psk = identity::load_mesh_key(&config.data_dir)?;
    let name = store
        .get("name")?
        .unwrap_or_else(crate::job::local::device_name);
    let mesh = identity::mesh_id(&psk);

    let (calls_tx, calls) = mpsc::channel(64);
    server::serve(&config.data_dir, calls_tx)?;

    let mut swarm = crate::net::swarm::build(&key, psk)?;
    let topic = IdentTopic::new(CAPACITY_TOPIC);
    swarm
        .behaviour_mut()
        .gossipsub
        .subscribe(&topic)
        .map_err(|e| anyhow::anyhow!("cannot subscribe to {CAPACITY_TOPIC}: {e}"))?;
    for addr in &config.listen {
        swarm
            .listen_on(addr.clone())
            .with_context(|| format!("cannot listen on {addr}"))?;
    }
    let (found_tx, found) = mpsc::channel::<Found>(256);
    let blobs = BlobStore::open(&config.data_dir)?;
    let locks = FetchLocks::default();
    let (net, net_rx) = NetHandle::new();
    let (events_tx, worker_events) = mpsc::unbounded_channel();
    let (results_tx, results) = mpsc::channel::<ResultReady>(MAX_INTAKE);
    let (served_tx, served) = mpsc::channel::<Served>(MAX_SERVING * 4);
    let (readings_tx, readings) = mpsc::channel::<Reading>(4);
    let runtime = Arc::new(crate::runtime::Runtime::new(Some(
        config.data_dir.join("cache").join("modules"),
    ))?);
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
        compiled: std::sync::Mutex::new(HashMap::new()),
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
        reading: Reading::default(),
        busy_since: None,
        share_told: config.slot_share,
        dialer: Dialer::new(config.bootstrap.clone()),
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
        pending_blobs: HashMap::new(),
        results_tx,
        served_tx,
        serving: Arc::new(Semaphore::new(MAX_SERVING)),
        intake: Arc::new(Semaphore::new(MAX_INTAKE)),
        watchers: Watchers::default(),
        leaving: None,
    };
    node.dialer.dial_bootstrap(&mut node.swarm);
    tracing::info!(peer = %node.peer_id, name = %node.name, mesh = %node.mesh, "corral is up");

    let inputs = Inputs {
        calls,
        found,
        net_rx,
        worker_events,
        results,
        served,
        readings,
    };
    event_loop::run(&mut node, inputs).await?;
    node.leave().await;
    Ok(())
}
