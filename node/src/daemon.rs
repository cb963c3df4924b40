//! `corral up`: the daemon. It owns the libp2p swarm and the peer view and
//! loops on `select!` over swarm events, discovery, control requests, timers
//! and shutdown. Gossip carries capacity only (DESIGN §3, §4).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use corral_protocol::capacity::{CapacityAdvert, EngineSpeed, OwnerState};
use corral_protocol::codec;
use corral_protocol::envelope::Signed;
use corral_protocol::ids::JobId;
use corral_protocol::ids::PeerKey;
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::{
    BlobResponse, MAX_BATCH, RejectReason, TaskRef, TaskRequest, TaskResponse,
};
use corral_protocol::receipt::TaskReceipt;
use corral_scheduler::view::{Change, PeerView, ViewConfig};
use futures::StreamExt;
use libp2p::gossipsub::{self, IdentTopic};
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, identify};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::blobs::BlobStore;
use crate::dispatch::coordinator::{Action, Candidate, Coordinator};
use crate::dispatch::worker::{Gate, Worker, WorkerCtx, WorkerEvent};
use crate::dispatch::{FetchLocks, NetCmd, NetHandle, fetch_blob};

use crate::capacity::{LoadSource, OwnerPolicy, Share, SystemLoad};
use crate::clock::now_ms;
use crate::control::ControlError;
use crate::control::Request;
use crate::control::server::{self, Answer, Call};
use crate::identity::{self, NodeKey};
use crate::net::behaviour::{Behaviour, BehaviourEvent};
use crate::net::discovery::{Discovery, Found};
use crate::net::{CAPACITY_TOPIC, peer_id_of, peer_key_of, transport};
use crate::store::{KnownPeer, Store};

/// How often this node advertises its capacity (DESIGN §4: 1–2 s).
pub const ADVERT_INTERVAL: Duration = Duration::from_millis(1000);
/// Adverts missed before a silent peer is dropped.
pub const MISSED_ADVERTS: u32 = 3;

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
    load: SystemLoad,
    /// Since when the owner has been back (the policy not idle).
    busy_since: Option<std::time::Instant>,
    seq: u64,
    topic: IdentTopic,
    listen_addrs: Vec<Multiaddr>,
    discovery: Option<Discovery>,
    found_tx: mpsc::Sender<Found>,
    peer_ids: HashMap<PeerKey, PeerId>,
    host_load_pct: u8,
    /// A slot's share of a core as runs showed it at the last advert.
    run_share: Option<f64>,
    /// The share of a core per slot last logged (start-up's until runs show
    /// another).
    share_told: f64,
    /// Where discovery last found each peer of the mesh; redialled while it
    /// is not connected (a healed partition), dropped on the mDNS goodbye.
    found_addrs: HashMap<PeerId, Vec<Multiaddr>>,
    worker: Worker,
    coord: Coordinator,
    blobs: BlobStore,
    locks: FetchLocks,
    net: NetHandle,
    pending_tasks: HashMap<OutboundRequestId, Pending>,
    pending_blobs: HashMap<OutboundRequestId, oneshot::Sender<Result<BlobResponse, String>>>,
    results_tx: mpsc::Sender<ResultReady>,
    /// Placement should run again (something changed).
    dirty: bool,
    /// CLIs waiting for a job to change.
    watchers: Vec<Watcher>,
}

/// A `Watch` request waiting for its job to change.
struct Watcher {
    job: JobId,
    seq: u64,
    summary: bool,
    deadline: tokio::time::Instant,
    reply: oneshot::Sender<Answer>,
}

/// Longest a `Watch` may wait (a CLI asks again).
const MAX_WATCH_MS: u64 = 1000;
/// Most watchers at once.
const MAX_WATCHERS: usize = 256;

/// An outbound task request waiting for its answer.
enum Pending {
    /// A spawned task waits for it.
    Reply(oneshot::Sender<Result<TaskResponse, String>>),
    /// This node's offer of some tasks of a job, as coordinator.
    Offers {
        job: JobId,
        indices: Vec<u32>,
        peer: PeerKey,
    },
    /// A cancel; the answer does not matter.
    Cancel,
}

/// Where the answer to an inbound task request goes.
enum Reply {
    /// Over the network.
    Remote(ResponseChannel<TaskResponse>),
    /// To a task of this node.
    Local(oneshot::Sender<Result<TaskResponse, String>>),
}

/// A result whose output files were fetched (or could not be).
/// Results from one request whose output files are in the blob store (or
/// could not be fetched), ready for the coordinator.
struct ResultReady {
    from: PeerKey,
    /// Each wanted receipt, its place in the request, and whether its
    /// files are here.
    results: Vec<(usize, TaskReceipt, Result<(), String>)>,
    /// The answer to each receipt of the request so far.
    verdicts: Vec<Option<RejectReason>>,
    /// A single `Result` (answered `Ack`) rather than a batch.
    single: bool,
    reply: Reply,
}

/// Most peers whose discovered addresses are kept for redialling.
const MAX_FOUND: usize = 4096;

/// Runs the daemon until `corral leave`, SIGTERM or Ctrl-C.
/// `store` is the node's store, opened by the caller (which holds its lock).
pub async fn run(config: DaemonConfig, store: Store) -> anyhow::Result<()> {
    let key = identity::load_node_key(&config.data_dir)?;
    let psk = identity::load_mesh_key(&config.data_dir)?;
    let name = store
        .get("name")?
        .unwrap_or_else(crate::job::local::device_name);
    let mesh = identity::mesh_id(&psk);

    let (calls_tx, mut calls) = mpsc::channel::<Call>(64);
    server::serve(&config.data_dir, calls_tx)?;

    let mut swarm = build_swarm(&key, psk)?;
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
    let (found_tx, mut found) = mpsc::channel::<Found>(256);
    let blobs = BlobStore::open(&config.data_dir)?;
    let locks = FetchLocks::default();
    let (net, mut net_rx) = NetHandle::new();
    let (events_tx, mut worker_events) = mpsc::unbounded_channel::<WorkerEvent>();
    let (results_tx, mut results) = mpsc::channel::<ResultReady>(256);
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
        load: SystemLoad::new(),
        busy_since: None,
        run_share: None,
        share_told: config.slot_share,
        config,
        seq: 0,
        topic,
        listen_addrs: Vec::new(),
        discovery: None,
        found_tx,
        peer_ids: HashMap::new(),
        host_load_pct: 0,
        found_addrs: HashMap::new(),
        dirty: coord.has_live_jobs(),
        worker,
        coord,
        blobs,
        locks,
        net,
        pending_tasks: HashMap::new(),
        pending_blobs: HashMap::new(),
        results_tx,
        watchers: Vec::new(),
    };
    for addr in node.config.bootstrap.clone() {
        if let Err(e) = node.swarm.dial(addr.clone()) {
            tracing::warn!(%addr, "cannot dial --peer: {e}");
        }
    }
    tracing::info!(peer = %node.peer_id, name = %node.name, mesh = %node.mesh, "corral is up");

    let mut advert_timer = tokio::time::interval(ADVERT_INTERVAL);
    let mut sample_timer = tokio::time::interval(Duration::from_secs(1));
    let mut expiry_timer = tokio::time::interval(Duration::from_millis(250));
    let mut redial_timer = tokio::time::interval(Duration::from_secs(2));
    let mut schedule_timer = tokio::time::interval(Duration::from_millis(500));
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    loop {
        tokio::select! {
            // Local work first (STYLE: handle local work before new remote work).
            Some((request, reply)) = calls.recv() => {
                let leave = request == Request::Leave;
                if let Request::Watch { id, seq, wait_ms, summary } = request {
                    node.watch(&id, seq, wait_ms, summary, reply);
                } else {
                    let answer = node.control(request);
                    let _ = reply.send(answer);
                }
                if leave { break; }
            }
            _ = sigterm.recv() => { tracing::info!("SIGTERM: leaving the mesh"); break; }
            _ = tokio::signal::ctrl_c() => { tracing::info!("interrupted: leaving the mesh"); break; }
            _ = advert_timer.tick() => node.advertise(),
            _ = sample_timer.tick() => {
                let before = node.policy.state();
                let sample = node.load.sample();
                node.host_load_pct = sample.load_pct.round().clamp(0.0, 100.0) as u8;
                if node.policy.update(sample) != before {
                    tracing::info!(state = node.policy.state().name(), "owner state changed");
                    node.advertise();
                }
                node.owner_grace();
            }
            _ = expiry_timer.tick() => {
                for change in node.view.expire(now_ms()) {
                    node.on_change(change);
                }
            }
            _ = redial_timer.tick() => node.redial(),
            _ = schedule_timer.tick() => node.dirty |= node.coord.has_live_jobs(),
            _ = tokio::time::sleep_until(node.next_watch_deadline()), if !node.watchers.is_empty() => {}
            Some(found) = found.recv() => node.on_found(found),
            Some(cmd) = net_rx.recv() => node.on_net_cmd(cmd),
            Some(event) = worker_events.recv() => {
                node.worker.on_event(event);
                node.dirty = true;
            }
            Some(ready) = results.recv() => node.on_result_ready(ready),
            event = node.swarm.select_next_some() => node.on_swarm(event),
        }
        if node.dirty {
            node.dirty = false;
            node.reschedule();
        }
        if !node.watchers.is_empty() {
            node.wake_watchers();
        }
    }
    node.leave().await;
    Ok(())
}

fn build_swarm(key: &NodeKey, psk: libp2p::pnet::PreSharedKey) -> anyhow::Result<Swarm<Behaviour>> {
    let keypair = key.keypair();
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|k| transport::build(k, psk))?
        .with_behaviour(|k| {
            Behaviour::new(k)
                .map_err(|e| Box::<dyn std::error::Error + Send + Sync>::from(e.to_string()))
        })?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(3600))
                // A stream for one protocol sends its request with the
                // protocol's name instead of waiting a round trip for the
                // other side to agree (multistream-select's lazy V1; the same
                // bytes on the wire). Halves the hops of an offer or a result.
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .build();
    Ok(swarm)
}

impl Node {
    fn advert(&mut self) -> CapacityAdvert {
        self.seq += 1;
        let state = self.policy.state();
        let free = if state == OwnerState::Idle {
            self.worker.slots_free()
        } else {
            0
        };
        CapacityAdvert {
            peer: self.me,
            name: self.name.clone(),
            seq: self.seq,
            arch: std::env::consts::ARCH.into(),
            os: std::env::consts::OS.into(),
            engines: self.engine_speeds(),
            slots_total: self.config.slots,
            slots_free: free,
            cores: std::thread::available_parallelism()
                .map_or(1, |n| u16::try_from(n.get()).unwrap_or(u16::MAX)),
            host_load_pct: self.host_load_pct,
            free_memory_mib: {
                let free = self.load.free_memory_mib();
                match self.config.max_memory {
                    Some(max) => free.min(u32::try_from(max / (1024 * 1024)).unwrap_or(u32::MAX)),
                    None => free,
                }
            },
            on_battery: crate::capacity::on_battery(std::path::Path::new(
                "/sys/class/power_supply",
            )),
            state,
            running: u16::try_from(self.worker.running()).unwrap_or(u16::MAX),
            queued: 0,
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// The engines' speeds per slot, as advertised: one core's calibrated
    /// speed times the share of a core a slot gets — as tasks run here have
    /// shown it, or as read at start-up until they do.
    fn engine_speeds(&self) -> Vec<EngineSpeed> {
        let factor = self.run_share.unwrap_or(self.config.slot_share);
        self.config
            .engines
            .iter()
            .map(|e| EngineSpeed {
                engine: e.engine,
                ops_per_s: ((e.ops_per_s as f64) * factor).max(1.0) as u64,
            })
            .collect()
    }

    /// DESIGN §8: once the owner is back, tasks already running may finish
    /// within the grace period; what is left then goes back to its
    /// coordinators (not the tasks' fault: it costs them no attempt).
    fn owner_grace(&mut self) {
        if self.policy.state() != OwnerState::Busy || self.config.share != Share::Idle {
            self.busy_since = None;
            return;
        }
        let since = *self.busy_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() >= self.config.grace {
            let given = self
                .worker
                .hand_back_all(corral_protocol::messages::RejectReason::OwnerBusy);
            if given > 0 {
                tracing::info!(
                    tasks = given,
                    grace_s = self.config.grace.as_secs_f64(),
                    "the owner is back and the grace period is over: handing tasks back"
                );
            }
        }
    }

    fn advertise(&mut self) {
        self.run_share = self.worker.sample_share();
        if let Some(share) = self.run_share
            && (share - self.share_told).abs() > 0.25 * self.share_told
        {
            tracing::info!(
                share = format!("{share:.2}"),
                "tasks here now get this share of a core per slot; speeds advertised for it"
            );
            self.share_told = share;
        }
        let advert = self.advert();
        let bytes = codec::encode(&advert);
        match self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(self.topic.clone(), bytes)
        {
            Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
            Err(e) => tracing::debug!("advert not published: {e}"),
        }
    }

    /// Dials every known peer (found by mDNS, or `--peer`) that is not
    /// connected: after a partition heals, neither side would otherwise try.
    fn redial(&mut self) {
        let missing: Vec<(PeerId, Vec<Multiaddr>)> = self
            .found_addrs
            .iter()
            .filter(|(peer, _)| !self.swarm.is_connected(peer))
            .map(|(peer, addrs)| (*peer, addrs.clone()))
            .collect();
        for (peer, addresses) in missing {
            let opts = DialOpts::peer_id(peer)
                .addresses(addresses)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .allocate_new_port()
                .build();
            let _ = self.swarm.dial(opts);
        }
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for addr in self.config.bootstrap.clone() {
            let target = addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            if target.is_some_and(|id| connected.contains(&id))
                || (target.is_none() && !connected.is_empty())
            {
                continue;
            }
            let _ = self.swarm.dial(addr);
        }
    }

    fn on_found(&mut self, found: Found) {
        match found {
            Found::Peer { peer, addresses } => {
                if self.found_addrs.len() < MAX_FOUND || self.found_addrs.contains_key(&peer) {
                    let known = self.found_addrs.entry(peer).or_default();
                    for a in &addresses {
                        if !known.contains(a) && known.len() < 8 {
                            known.push(a.clone());
                        }
                    }
                }
                if self.swarm.is_connected(&peer) {
                    return;
                }
                tracing::debug!(%peer, ?addresses, "discovered by mDNS");
                let opts = DialOpts::peer_id(peer)
                    .addresses(addresses)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .allocate_new_port()
                    .build();
                if let Err(e) = self.swarm.dial(opts) {
                    tracing::debug!(%peer, "dial: {e}");
                }
            }
            Found::Gone { peer } => {
                self.found_addrs.remove(&peer);
                if let Some(key) = peer_key_of(&peer) {
                    let change = self.view.on_goodbye(key);
                    self.on_change(change);
                }
                let _ = self.swarm.disconnect_peer_id(peer);
            }
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                let port = address.iter().find_map(|p| match p {
                    libp2p::multiaddr::Protocol::Tcp(port) => Some(port),
                    _ => None,
                });
                self.listen_addrs.push(address);
                let addrs: Vec<String> =
                    self.listen_addrs.iter().map(ToString::to_string).collect();
                let _ = self.store.set("listen", &addrs.join(" "));
                if let (true, None, Some(port)) = (self.config.mdns, &self.discovery, port) {
                    match Discovery::start(
                        &self.name,
                        self.peer_id,
                        &self.mesh,
                        port,
                        self.found_tx.clone(),
                    ) {
                        Ok(d) => self.discovery = Some(d),
                        Err(e) => tracing::warn!("mDNS discovery is off: {e:#}"),
                    }
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                let Some(key) = peer_key_of(&peer_id) else {
                    let _ = self.swarm.disconnect_peer_id(peer_id);
                    return;
                };
                self.peer_ids.insert(key, peer_id);
                let addr = endpoint.get_remote_address().to_string();
                let change = self.view.on_connected(key, Some(addr), now_ms());
                self.on_change(change);
                // A newcomer learns our capacity at once, not a second later.
                self.advertise();
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::warn!(?peer_id, "cannot connect: {error}");
            }
            SwarmEvent::IncomingConnectionError {
                send_back_addr,
                error,
                ..
            } => {
                // Most often a device with another mesh key.
                tracing::info!(%send_back_addr, "incoming connection failed (another mesh key?): {error}");
            }
            SwarmEvent::ConnectionClosed { peer_id, .. } => {
                if let Some(key) = peer_key_of(&peer_id) {
                    let change = self.view.on_disconnected(key, now_ms());
                    self.on_change(change);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => {
                let Some(source) = message.source else { return };
                let Some(from) = peer_key_of(&source) else {
                    return;
                };
                match codec::decode::<CapacityAdvert>(&message.data) {
                    Ok(advert) => {
                        let change = self.view.on_advert(from, advert, now_ms());
                        self.on_change(change);
                    }
                    Err(e) => tracing::debug!(%source, "bad capacity advert: {e}"),
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Task(event)) => self.on_task_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Blob(event)) => self.on_blob_event(event),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                if info.protocol_version != crate::net::PROTOCOL_NAME {
                    tracing::warn!(%peer_id, version = %info.protocol_version, "peer speaks another corral protocol");
                }
                let name = peer_key_of(&peer_id)
                    .and_then(|k| self.view.get(&k))
                    .and_then(|e| e.advert.as_ref().map(|a| a.name.clone()))
                    .unwrap_or_default();
                let addresses: Vec<String> = info
                    .listen_addrs
                    .iter()
                    .take(8)
                    .map(ToString::to_string)
                    .collect();
                let known = KnownPeer {
                    peer_id: peer_id.to_string(),
                    name,
                    addresses,
                    last_seen_ms: now_ms(),
                };
                if let Err(e) = self.store.remember_peer(&peer_id.to_string(), &known) {
                    tracing::warn!("cannot remember {peer_id}: {e:#}");
                }
            }
            _ => {}
        }
    }

    fn on_change(&mut self, change: Change) {
        match change {
            Change::Left(peer, reason) => {
                tracing::info!(peer = %peer.short(), ?reason, "peer left");
                if let Some(id) = self.peer_ids.remove(&peer) {
                    let _ = self.swarm.disconnect_peer_id(id);
                }
                let actions = self.coord.on_peer_lost(&peer);
                self.execute(actions);
                self.dirty = true;
            }
            Change::Joined(_) => {
                tracing::info!("peer joined");
                self.dirty = true;
            }
            Change::Updated(_) => self.dirty |= self.coord.has_live_jobs(),
            Change::Ignored(reason) => tracing::debug!(?reason, "advert ignored"),
        }
    }

    fn control(&mut self, request: Request) -> Answer {
        match request {
            Request::Status => Ok(self.status()),
            Request::Peers => Ok(self.peers()),
            Request::Leave => Ok(json!({"leaving": true})),
            Request::TrustAdd { key, name } => {
                let key: PeerKey = key.parse().map_err(bad_request)?;
                self.store
                    .trust_add(&key, &name, now_ms())
                    .map_err(|e| ControlError::internal(format!("{e:#}")))?;
                Ok(json!({"trusted": key.to_string(), "name": name}))
            }
            Request::TrustRemove { key } => {
                let key: PeerKey = key.parse().map_err(bad_request)?;
                let removed = self
                    .store
                    .trust_remove(&key)
                    .map_err(|e| ControlError::internal(format!("{e:#}")))?;
                Ok(json!({"removed": removed}))
            }
            Request::TrustList => self
                .store
                .trust_list()
                .map(|list| json!(list))
                .map_err(|e| ControlError::internal(format!("{e:#}"))),
            Request::Submit { spec } => {
                let job = self.coord.submit(*spec, now_ms())?;
                tracing::info!(%job, "job submitted");
                self.dirty = true;
                Ok(json!({ "job": job.to_string() }))
            }
            Request::Jobs => Ok(json!(self.coord.list())),
            Request::Job { id } => {
                let id: JobId = id.parse().map_err(bad_request)?;
                self.coord
                    .report(&id, &|p| self.name_of(p))
                    .map(|r| json!(r))
                    .ok_or_else(|| no_job(&id))
            }
            Request::Watch { id, .. } => self.control(Request::Job { id }),
            Request::Output {
                id,
                stdout_from,
                stderr_from,
            } => {
                let id: JobId = id.parse().map_err(bad_request)?;
                let live = self
                    .coord
                    .live_output(&id, stdout_from, stderr_from, |p| self.name_of(p));
                Ok(json!(live))
            }
            Request::Cancel { id } => {
                let id: JobId = id.parse().map_err(bad_request)?;
                let actions = self.coord.cancel(&id)?;
                let cancelled = actions.len();
                self.execute(actions);
                Ok(json!({ "cancelled": id.to_string(), "tasks_stopped": cancelled }))
            }
        }
    }

    fn watch(
        &mut self,
        id: &str,
        seq: u64,
        wait_ms: u64,
        summary: bool,
        reply: oneshot::Sender<Answer>,
    ) {
        let job: JobId = match id.parse() {
            Ok(job) => job,
            Err(e) => {
                let _ = reply.send(Err(bad_request(e)));
                return;
            }
        };
        if self.watchers.len() >= MAX_WATCHERS {
            let _ = reply.send(self.control(Request::Job { id: id.to_string() }));
            return;
        }
        self.watchers.push(Watcher {
            job,
            seq,
            summary,
            deadline: tokio::time::Instant::now()
                + Duration::from_millis(wait_ms.min(MAX_WATCH_MS)),
            reply,
        });
    }

    fn next_watch_deadline(&self) -> tokio::time::Instant {
        self.watchers
            .iter()
            .map(|w| w.deadline)
            .min()
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600))
    }

    /// Answers the watchers whose job changed, ended or whose wait is over.
    fn wake_watchers(&mut self) {
        let now = tokio::time::Instant::now();
        let watchers = std::mem::take(&mut self.watchers);
        for w in watchers {
            let ready = match self.coord.progress(&w.job) {
                Some((seq, live)) => seq != w.seq || !live || now >= w.deadline,
                None => true,
            };
            if ready {
                let name = |p: &PeerKey| self.name_of(p);
                let report = if w.summary {
                    self.coord
                        .summary(&w.job, &name)
                        .or_else(|| self.coord.report(&w.job, &name))
                } else {
                    self.coord.report(&w.job, &name)
                };
                let answer = report.map(|r| json!(r)).ok_or_else(|| no_job(&w.job));
                let _ = w.reply.send(answer);
            } else {
                self.watchers.push(w);
            }
        }
    }

    fn name_of(&self, peer: &PeerKey) -> String {
        if peer == &self.me {
            return self.name.clone();
        }
        self.view
            .get(peer)
            .and_then(|e| e.advert.as_ref().map(|a| a.name.clone()))
            .unwrap_or_else(|| peer.short())
    }

    /// Peers that may take tasks now: connected, advertising, idle; and this
    /// node itself while it shares.
    fn candidates(&self) -> Vec<Candidate> {
        let mut list: Vec<Candidate> = self
            .view
            .peers()
            .filter(|(_, e)| e.connections > 0)
            .filter_map(|(key, e)| {
                let a = e.advert.as_ref()?;
                (a.state == OwnerState::Idle).then(|| Candidate {
                    peer: *key,
                    slots: a.slots_total,
                    engines: a.engines.clone(),
                    arch: a.arch.clone(),
                })
            })
            .collect();
        if self.policy.state() == OwnerState::Idle {
            list.push(Candidate {
                peer: self.me,
                slots: self.config.slots,
                engines: self.engine_speeds(),
                arch: std::env::consts::ARCH.into(),
            });
        }
        list
    }

    fn reschedule(&mut self) {
        if !self.coord.has_live_jobs() {
            return;
        }
        let candidates = self.candidates();
        let mut present: Vec<PeerKey> = self
            .view
            .peers()
            .filter(|(_, e)| e.connections > 0)
            .map(|(k, _)| *k)
            .collect();
        if self.config.share != crate::capacity::Share::Never {
            present.push(self.me);
        }
        let actions = self.coord.schedule(&candidates, &present, now_ms());
        self.execute(actions);
    }

    /// Sends what the coordinator decided: offers of one job to one peer
    /// go together, up to [`MAX_BATCH`] per request.
    fn execute(&mut self, actions: Vec<Action>) {
        let mut offers: Vec<((JobId, PeerKey), Vec<TaskRef>)> = Vec::new();
        for action in actions {
            match action {
                Action::Offer {
                    job,
                    index,
                    peer,
                    attempt,
                } => {
                    let task = TaskRef { index, attempt };
                    match offers.iter_mut().find(|(to, _)| *to == (job, peer)) {
                        Some((_, tasks)) => tasks.push(task),
                        None => offers.push(((job, peer), vec![task])),
                    }
                }
                Action::Cancel { job, index, peer } => {
                    if peer == self.me {
                        self.worker.on_cancel(self.me, job, index);
                    } else if let Some(id) = peer_id_of(&peer) {
                        let rid = self
                            .swarm
                            .behaviour_mut()
                            .task
                            .send_request(&id, TaskRequest::Cancel { job, index });
                        self.pending_tasks.insert(rid, Pending::Cancel);
                    }
                }
            }
        }
        for ((job, peer), tasks) in offers {
            for chunk in tasks.chunks(MAX_BATCH) {
                self.send_offers(job, peer, chunk);
            }
        }
    }

    fn send_offers(&mut self, job: JobId, peer: PeerKey, tasks: &[TaskRef]) {
        let Some(manifest) = self.coord.signed_manifest(&job) else {
            return;
        };
        if peer == self.me {
            for task in tasks {
                let verdict = self.judge_offer(self.me, &manifest, task.index, task.attempt);
                self.on_offer_answer(job, task.index, peer, Ok(verdict));
            }
            return;
        }
        let indices: Vec<u32> = tasks.iter().map(|t| t.index).collect();
        let Some(id) = peer_id_of(&peer) else {
            for index in indices {
                self.on_offer_answer(job, index, peer, Err("bad peer key".into()));
            }
            return;
        };
        let request = match tasks {
            [task] => TaskRequest::Offer {
                manifest,
                index: task.index,
                attempt: task.attempt,
            },
            _ => TaskRequest::Offers {
                manifest,
                tasks: tasks.to_vec(),
            },
        };
        tracing::debug!(%job, tasks = indices.len(), "offer sent");
        let rid = self.swarm.behaviour_mut().task.send_request(&id, request);
        self.pending_tasks
            .insert(rid, Pending::Offers { job, indices, peer });
    }

    /// The answer to offers of `indices`, one per task.
    fn on_offers_answer(
        &mut self,
        job: JobId,
        indices: Vec<u32>,
        peer: PeerKey,
        answer: Result<TaskResponse, String>,
    ) {
        let n = indices.len();
        let each: Vec<Result<Result<(), RejectReason>, String>> = match answer {
            Ok(TaskResponse::Each(verdicts)) if verdicts.len() == n => verdicts
                .into_iter()
                .map(|v| Ok(v.map_or(Ok(()), Err)))
                .collect(),
            Ok(TaskResponse::Accepted) if n == 1 => vec![Ok(Ok(()))],
            Ok(TaskResponse::Rejected(reason)) => vec![Ok(Err(reason)); n],
            Ok(other) => vec![Err(format!("it answered an offer with {other:?}")); n],
            Err(e) => vec![Err(e); n],
        };
        for (index, answer) in indices.into_iter().zip(each) {
            self.on_offer_answer(job, index, peer, answer);
        }
    }

    fn judge_offer(
        &mut self,
        from: PeerKey,
        manifest: &Signed<JobManifest>,
        index: u32,
        attempt: u32,
    ) -> Result<(), RejectReason> {
        let store = &self.store;
        let trusted = |k: &PeerKey| store.is_trusted(k).unwrap_or(false);
        let gate = Gate {
            now_ms: now_ms(),
            trusted: &trusted,
            owner: self.policy.state(),
        };
        let verdict = self.worker.on_offer(from, manifest, index, attempt, &gate);
        if verdict.is_ok() {
            // Free slots changed: peers learn it with the next advert.
            self.dirty = true;
        }
        verdict
    }

    fn on_offer_answer(
        &mut self,
        job: JobId,
        index: u32,
        peer: PeerKey,
        answer: Result<Result<(), RejectReason>, String>,
    ) {
        let name = self.name_of(&peer);
        let actions = match answer {
            Ok(Ok(())) => return,
            Ok(Err(reason)) => {
                tracing::info!(%job, index, peer = %name, "refused: {}", reason.describe());
                self.coord.on_rejected(job, index, peer, &name, reason)
            }
            Err(e) => self.coord.on_lost(
                job,
                index,
                peer,
                &format!("{name} could not be reached: {e}"),
            ),
        };
        self.execute(actions);
        self.dirty = true;
    }

    fn respond(&mut self, reply: Reply, response: TaskResponse) {
        match reply {
            Reply::Remote(channel) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .task
                    .send_response(channel, response);
            }
            Reply::Local(tx) => {
                let _ = tx.send(Ok(response));
            }
        }
    }

    fn on_task_request(&mut self, from: PeerKey, request: TaskRequest, reply: Reply) {
        if !request.is_bounded() {
            tracing::warn!(peer = %from.short(), "a task request is out of bounds (an empty or oversized batch, or too much live output)");
            self.respond(reply, TaskResponse::Rejected(RejectReason::Malformed));
            return;
        }
        match request {
            TaskRequest::Offer {
                manifest,
                index,
                attempt,
            } => {
                let response = match self.judge_offer(from, &manifest, index, attempt) {
                    Ok(()) => TaskResponse::Accepted,
                    Err(reason) => TaskResponse::Rejected(reason),
                };
                self.respond(reply, response);
            }
            TaskRequest::Cancel { job, index } => {
                // From a coordinator: stop it. From a worker: it hands the
                // task back (it could not run it); it runs elsewhere.
                self.worker.on_cancel(from, job, index);
                let name = self.name_of(&from);
                let actions = self.coord.on_failed(
                    job,
                    index,
                    from,
                    &format!("{name} could not run it and handed it back"),
                );
                self.execute(actions);
                self.dirty = true;
                self.respond(reply, TaskResponse::Ack);
            }
            TaskRequest::HandBack { job, index, reason } => {
                let name = self.name_of(&from);
                let actions = self.coord.on_lost(
                    job,
                    index,
                    from,
                    &format!("{name} handed it back: {}", reason.describe()),
                );
                self.execute(actions);
                self.dirty = true;
                self.respond(reply, TaskResponse::Ack);
            }
            TaskRequest::Offers { manifest, tasks } => {
                let verdicts = tasks
                    .iter()
                    .map(|t| self.judge_offer(from, &manifest, t.index, t.attempt).err())
                    .collect();
                self.respond(reply, TaskResponse::Each(verdicts));
            }
            TaskRequest::Output {
                job,
                index,
                attempt,
                stdout_at,
                stdout,
                stderr_at,
                stderr,
            } => {
                tracing::trace!(%job, index, attempt, "live output");
                self.coord
                    .on_output(from, job, index, (stdout_at, &stdout), (stderr_at, &stderr));
                self.respond(reply, TaskResponse::Ack);
            }
            TaskRequest::Result(signed) => self.on_results(from, vec![signed], true, reply),
            TaskRequest::Results(list) => self.on_results(from, list, false, reply),
        }
    }

    /// Receipts from `from`: each is checked; those wanted are taken once
    /// their output files are here (fetched first if need be, off the
    /// loop), and the request is answered for all of them together.
    fn on_results(
        &mut self,
        from: PeerKey,
        list: Vec<Signed<TaskReceipt>>,
        single: bool,
        reply: Reply,
    ) {
        tracing::debug!(peer = %from.short(), results = list.len(), "results received");
        let mut verdicts = vec![None; list.len()];
        let mut results = Vec::new();
        for (i, wanted) in self
            .coord
            .wants_results(&from, &list)
            .into_iter()
            .enumerate()
        {
            match wanted {
                Err(e) => {
                    tracing::warn!("{e}");
                    verdicts[i] = Some(RejectReason::Malformed);
                }
                Ok(None) => {}
                Ok(Some(receipt)) => {
                    let limit = self.coord.file_limit(&receipt.job);
                    let fits = match receipt.files.iter().find(|f| f.size > limit) {
                        Some(f) => Err(format!("output file {} is too large", f.path)),
                        None => Ok(()),
                    };
                    results.push((i, receipt, fits));
                }
            }
        }
        let missing = |r: &TaskReceipt| r.files.iter().any(|f| !self.blobs.has(&f.hash));
        if !results
            .iter()
            .any(|(_, receipt, fits)| fits.is_ok() && missing(receipt))
        {
            self.on_result_ready(ResultReady {
                from,
                results,
                verdicts,
                single,
                reply,
            });
            return;
        }
        let net = self.net.clone();
        let blobs = self.blobs.clone();
        let locks = self.locks.clone();
        let tx = self.results_tx.clone();
        tokio::spawn(async move {
            for (_, receipt, fetched) in &mut results {
                if fetched.is_err() {
                    continue;
                }
                for file in &receipt.files {
                    if let Err(e) =
                        fetch_blob(&net, &blobs, &locks, from, file.hash, file.size).await
                    {
                        *fetched = Err(format!("{e:#}"));
                        break;
                    }
                }
            }
            let _ = tx
                .send(ResultReady {
                    from,
                    results,
                    verdicts,
                    single,
                    reply,
                })
                .await;
        });
    }

    fn on_result_ready(&mut self, ready: ResultReady) {
        let ResultReady {
            from,
            results,
            mut verdicts,
            single,
            reply,
        } = ready;
        let name = self.name_of(&from);
        let mut actions = Vec::new();
        for (i, receipt, fetched) in results {
            match fetched {
                Ok(()) => actions.extend(self.coord.on_result(from, &name, receipt)),
                Err(e) => {
                    tracing::warn!(peer = %name, "the output of task {} could not be fetched: {e}", receipt.index);
                    verdicts[i] = Some(RejectReason::Malformed);
                    actions.extend(self.coord.on_failed(
                        receipt.job,
                        receipt.index,
                        from,
                        &format!("its output could not be fetched from {name}: {e}"),
                    ));
                }
            }
        }
        let response = match (single, verdicts.as_slice()) {
            (true, [None]) => TaskResponse::Ack,
            (true, [Some(reason)]) => TaskResponse::Rejected(*reason),
            _ => TaskResponse::Each(verdicts),
        };
        self.respond(reply, response);
        self.execute(actions);
        self.dirty = true;
    }

    fn on_net_cmd(&mut self, cmd: NetCmd) {
        match cmd {
            NetCmd::Task {
                peer,
                request,
                reply,
            } => {
                if peer == self.me {
                    self.on_task_request(self.me, request, Reply::Local(reply));
                } else if let Some(id) = peer_id_of(&peer) {
                    let rid = self.swarm.behaviour_mut().task.send_request(&id, request);
                    self.pending_tasks.insert(rid, Pending::Reply(reply));
                } else {
                    let _ = reply.send(Err("bad peer key".into()));
                }
            }
            NetCmd::Blob {
                peer,
                request,
                reply,
            } => {
                if peer == self.me {
                    let _ = reply.send(Ok(self.blobs.chunk(&request)));
                } else if let Some(id) = peer_id_of(&peer) {
                    let rid = self.swarm.behaviour_mut().blob.send_request(&id, request);
                    self.pending_blobs.insert(rid, reply);
                } else {
                    let _ = reply.send(Err("bad peer key".into()));
                }
            }
        }
    }

    fn on_task_event(&mut self, event: request_response::Event<TaskRequest, TaskResponse>) {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let Some(from) = peer_key_of(&peer) else {
                        return;
                    };
                    self.on_task_request(from, request, Reply::Remote(channel));
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => match self.pending_tasks.remove(&request_id) {
                    Some(Pending::Reply(tx)) => {
                        let _ = tx.send(Ok(response));
                    }
                    Some(Pending::Offers { job, indices, peer }) => {
                        self.on_offers_answer(job, indices, peer, Ok(response));
                    }
                    Some(Pending::Cancel) | None => {}
                },
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => match self.pending_tasks.remove(&request_id) {
                Some(Pending::Reply(tx)) => {
                    let _ = tx.send(Err(error.to_string()));
                }
                Some(Pending::Offers { job, indices, peer }) => {
                    self.on_offers_answer(job, indices, peer, Err(error.to_string()));
                }
                Some(Pending::Cancel) | None => {}
            },
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound task request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn on_blob_event(
        &mut self,
        event: request_response::Event<corral_protocol::messages::BlobRequest, BlobResponse>,
    ) {
        match event {
            request_response::Event::Message { message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => {
                    let response = self.blobs.chunk(&request);
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .blob
                        .send_response(channel, response);
                }
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(tx) = self.pending_blobs.remove(&request_id) {
                        let _ = tx.send(Ok(response));
                    }
                }
            },
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(tx) = self.pending_blobs.remove(&request_id) {
                    let _ = tx.send(Err(error.to_string()));
                }
            }
            request_response::Event::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, "inbound blob request failed: {error}");
            }
            request_response::Event::ResponseSent { .. } => {}
        }
    }

    fn status(&self) -> serde_json::Value {
        json!({
            "id": self.peer_id.to_string(),
            "key": self.me.to_string(),
            "name": self.name,
            "arch": std::env::consts::ARCH,
            "engines": self.config.engines.iter().map(|e| e.engine.name()).collect::<Vec<_>>(),
            "addresses": self.listen_addrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "mesh": self.mesh,
            "peers": self.view.len(),
            "running": self.worker.running(),
            "coordinating": self.coord.running(),
            "share": self.config.share,
            "state": self.policy.state().name(),
            "slots": self.config.slots,
            "max_memory": self.config.max_memory,
        })
    }

    fn peers(&self) -> serde_json::Value {
        let now = now_ms();
        let list: Vec<serde_json::Value> = self
            .view
            .peers()
            .map(|(key, entry)| {
                let id = self.peer_ids.get(key).map(ToString::to_string).unwrap_or_else(|| key.to_string());
                let advert = entry.advert.as_ref();
                let speed: serde_json::Map<String, serde_json::Value> = advert
                    .map(|a| {
                        a.engines
                            .iter()
                            .map(|e| (e.engine.name().to_string(), json!(e.ops_per_s)))
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "id": id,
                    "key": key.to_string(),
                    "name": advert.map(|a| a.name.clone()),
                    "arch": advert.map(|a| a.arch.clone()),
                    "engines": advert.map(|a| a.engines.iter().map(|e| e.engine.name()).collect::<Vec<_>>()).unwrap_or_default(),
                    "slots_total": advert.map(|a| a.slots_total),
                    "slots_free": advert.map(|a| a.slots_free),
                    "speed": speed,
                    "state": advert.map(|a| a.state.name()),
                    "last_seen_ms": entry.last_seen_ms,
                    "age_ms": now.saturating_sub(entry.last_seen_ms),
                    "connected": entry.connections > 0,
                    "addresses": entry.addresses,
                })
            })
            .collect();
        json!(list)
    }

    /// Graceful leave: a last advert saying we are draining, the mDNS goodbye,
    /// then every connection closed (peers drop us at once).
    async fn leave(mut self) {
        self.policy.drain();
        self.advertise();
        // Give gossipsub a moment to flush the last advert.
        let flush = tokio::time::sleep(Duration::from_millis(20));
        tokio::pin!(flush);
        loop {
            tokio::select! {
                _ = &mut flush => break,
                _ = self.swarm.select_next_some() => {}
            }
        }
        let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        if let Some(discovery) = self.discovery.take() {
            discovery.stop().await;
        }
        let drain = tokio::time::sleep(Duration::from_millis(200));
        tokio::pin!(drain);
        loop {
            tokio::select! {
                _ = &mut drain => break,
                _ = self.swarm.select_next_some() => {}
            }
        }
        let _ = self.store.flush();
        let _ = std::fs::remove_file(self.config.data_dir.join(crate::control::SOCKET_NAME));
        tracing::info!("left the mesh");
    }
}

fn bad_request(e: impl std::fmt::Display) -> ControlError {
    ControlError::bad_request(e.to_string())
}

fn no_job(id: &JobId) -> ControlError {
    ControlError::not_found(format!("no job {id} on this node"))
}

/// The engines of this build with their cached calibration, fastest first;
/// `None` if some engine has not been calibrated on this device yet.
pub fn cached_engine_speeds(store: &Store) -> anyhow::Result<Option<Vec<EngineSpeed>>> {
    let mut speeds = Vec::new();
    for engine in crate::runtime::build_engines() {
        let key = format!("speed.{}", engine.name());
        match store.get(&key)?.and_then(|v| v.parse::<u64>().ok()) {
            Some(ops_per_s) => speeds.push(EngineSpeed { engine, ops_per_s }),
            None => return Ok(None),
        }
    }
    speeds.sort_by_key(|s| std::cmp::Reverse(s.ops_per_s));
    Ok(Some(speeds))
}
