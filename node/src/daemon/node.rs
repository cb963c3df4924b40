//! The daemon's state: [`Node`], everything the event loop's handlers work
//! on, and [`DaemonConfig`], what `corral up`'s flags resolved to. Each
//! handler is an `impl Node` block in the file of its role.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_protocol::capacity::EngineSpeed;
use corral_protocol::ids::PeerKey;
use corral_protocol::messages::BlobResponse;
use corral_scheduler::view::PeerView;
use libp2p::gossipsub::IdentTopic;
use libp2p::request_response::OutboundRequestId;
use libp2p::{Multiaddr, PeerId, Swarm};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::probe::Reading;
use super::state::{Durable, Leaving, Pending, ResultReady, Served, Sweeping};
use crate::blobs::BlobStore;
use crate::capacity::{OwnerPolicy, Share};
use crate::control::watch::Watchers;
use crate::dispatch::coordinator::Coordinator;
use crate::dispatch::worker::Worker;
use crate::dispatch::{FetchLocks, NetHandle};
use crate::net::behaviour::Behaviour;
use crate::net::dialer::Dialer;
use crate::net::discovery::{Discovery, Found};
use crate::store::Store;

/// How often this node advertises its capacity (DESIGN §4: 1–2 s).
pub const ADVERT_INTERVAL: Duration = Duration::from_millis(1000);
/// Adverts missed before a silent peer is dropped.
pub const MISSED_ADVERTS: u32 = 3;

/// Blob chunks read from disk for peers at once (each up to 1 MiB).
pub(super) const MAX_SERVING: usize = 8;
/// Most fetches waiting for a direct path at once; more go over the relay.
pub(super) const MAX_DIRECT_WAITERS: usize = 64;
/// Results being taken in at once (output fetched, stored, hashed).
pub(super) const MAX_INTAKE: usize = 64;

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
    /// `--cache-size`: most bytes the blob store, trees, work dirs and
    /// compiled modules may take (see [`crate::blobs::BlobStore::sweep`]).
    pub cache_size: u64,
    /// `--relay`: also serve as the mesh's relay.
    pub relay: bool,
    /// `--external`: addresses others reach this device at (a relay behind
    /// a forwarded port).
    pub external: Vec<Multiaddr>,
    /// `--relay-addr`: relays to reserve a circuit address at, each ending
    /// in `/p2p/<its id>`.
    pub relays: Vec<Multiaddr>,
    /// `--http`: where the live page listens (`None`: `--no-http`).
    pub http: Option<std::net::SocketAddr>,
}

/// Everything the event loop's handlers work on. It owns the `Swarm` and
/// the maps of requests waiting for answers; the rooms it drives (view,
/// coordinator, worker) are plain state machines.
pub(super) struct Node {
    pub(super) swarm: Swarm<Behaviour>,
    pub(super) view: PeerView,
    pub(super) store: Store,
    pub(super) me: PeerKey,
    pub(super) peer_id: PeerId,
    pub(super) name: String,
    pub(super) mesh: String,
    pub(super) config: DaemonConfig,
    pub(super) policy: OwnerPolicy,
    /// The device's latest reading (host load, free memory, power, the
    /// share of a core tasks got), from the probe thread.
    pub(super) reading: Reading,
    /// Since when the owner has been back (the policy not idle).
    pub(super) busy_since: Option<std::time::Instant>,
    pub(super) seq: u64,
    pub(super) topic: IdentTopic,
    pub(super) listen_addrs: Vec<Multiaddr>,
    pub(super) discovery: Option<Discovery>,
    pub(super) found_tx: mpsc::Sender<Found>,
    pub(super) peer_ids: HashMap<PeerKey, PeerId>,
    /// How each open connection reaches its peer (bounded by the
    /// connection limits).
    pub(super) paths: crate::net::paths::Paths,
    /// The share of a core per slot last logged (start-up's until runs show
    /// another).
    pub(super) share_told: f64,
    pub(super) dialer: Dialer,
    /// Reservations at relays (`--relay-addr`).
    pub(super) relays: crate::net::relay::Relays,
    /// Fetches of big blobs waiting for a direct path to a relayed peer
    /// (bounded by [`MAX_DIRECT_WAITERS`]).
    pub(super) direct_waiters: HashMap<PeerId, Vec<oneshot::Sender<()>>>,
    /// Registering at relays and finding members there.
    pub(super) rendezvous: crate::net::rendezvous::Rendezvous,
    /// The mesh's rendezvous namespace.
    pub(super) namespace: libp2p::rendezvous::Namespace,
    pub(super) worker: Worker,
    pub(super) coord: Coordinator,
    /// The recent runs of the tasks this node coordinates (the live
    /// page's timeline; bounded).
    pub(super) timeline: crate::job::timeline::Timeline,
    pub(super) blobs: BlobStore,
    pub(super) locks: FetchLocks,
    pub(super) net: NetHandle,
    pub(super) pending_tasks: HashMap<super::state::TaskCall, Pending>,
    /// The task lanes to peers, and the calls on them.
    pub(super) lanes: crate::net::lane::Lanes,
    pub(super) pending_blobs:
        HashMap<OutboundRequestId, oneshot::Sender<Result<BlobResponse, String>>>,
    pub(super) results_tx: mpsc::Sender<ResultReady>,
    pub(super) served_tx: mpsc::Sender<Served>,
    /// Answers to results, once the store holds them.
    pub(super) durable_tx: mpsc::Sender<Durable>,
    /// Bounds the blob chunks read for peers at once.
    pub(super) serving: Arc<Semaphore>,
    /// Bounds the results being taken in at once.
    pub(super) intake: Arc<Semaphore>,
    /// Offers whose manifest was verified off the loop come back here.
    pub(super) verified_tx: mpsc::Sender<super::state::OfferVerified>,
    /// Bounds the manifests being verified at once.
    pub(super) verifying: Arc<Semaphore>,
    /// When a manifest was last verified on the loop itself.
    pub(super) inline: super::state::InlineBudget,
    /// Placement should run again (something changed).
    pub(super) dirty: bool,
    /// CLIs waiting for a job to change.
    pub(super) watchers: Watchers,
    /// The drain, once leaving.
    pub(super) leaving: Option<Leaving>,
    /// A sweep of the cache under way.
    pub(super) sweeping: Sweeping,
    /// Modules by name: the records known, their topic, fetches.
    pub(super) modules: super::module_book::ModuleBook,
    /// Where the live page listens, when it does.
    pub(super) http: Option<std::net::SocketAddr>,
}
