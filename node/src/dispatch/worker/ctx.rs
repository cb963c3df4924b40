//! What the worker's event-loop side shares with its tasks: the node's
//! identity, stores, engines and the queues between them.

use std::sync::{Arc, Mutex};

use corral_protocol::envelope::SigningKey;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::EngineReq;
use corral_protocol::receipt::EngineKind;
use tokio::sync::mpsc;

use super::outbox::{Courier, Deliveries};
use super::task::RunQueue;
use crate::blobs::BlobStore;
use crate::dispatch::{FetchLocks, NetHandle};
use crate::runtime::Runtime;
use crate::store::Store;

/// What the loop learns from running tasks.
#[derive(Debug)]
pub enum WorkerEvent {
    /// A task ended (ran, was cancelled or could not be prepared).
    Finished {
        /// The job.
        job: JobId,
        /// The task.
        index: u32,
    },
}

/// What a task needs that the event loop shares with it.
pub struct WorkerCtx {
    /// This node.
    pub me: PeerKey,
    /// Signs receipts.
    pub key: SigningKey,
    /// Modules, trees, inputs and outputs.
    pub blobs: BlobStore,
    /// Fetch once per blob.
    pub locks: FetchLocks,
    /// Requests through the loop.
    pub net: NetHandle,
    /// The engines.
    pub runtime: Arc<Runtime>,
    /// Tasks ready to run, for the runner threads (one per slot).
    pub runs: RunQueue,
    /// The daemon's runtime, for the runner threads' network requests.
    pub handle: tokio::runtime::Handle,
    /// Back to the loop: one event per task held, so a channel of
    /// [`events_capacity`] never fills (see there).
    pub events: mpsc::Sender<WorkerEvent>,
    /// The outbox of unacknowledged receipts.
    pub store: Store,
    /// The engines this daemon offers (`corral up --engine`), fastest first.
    pub engines: Vec<EngineKind>,
    /// Test-only fault: report a wrong stdout (to test `--verify`).
    pub fault_lie: bool,
    /// Receipts on their way, per coordinator.
    pub deliveries: Deliveries,
    /// A slot's share of a core, as the runs here show it.
    pub share: Mutex<crate::capacity::RunShare>,
}

impl WorkerCtx {
    /// A slot's share of a core as recent runs here show it, if any ran;
    /// runs still going are counted up to now, a second at a time (it
    /// reads `/proc`: the daemon's probe thread calls it, not the loop).
    pub fn sample_share(&self) -> Option<f64> {
        crate::sync::lock(&self.share).sample(
            std::time::Instant::now(),
            crate::capacity::thread_cpu_time_of,
        )
    }

    /// The engine a job runs on here, if any: the fastest offered for `any`.
    pub fn engine_for(&self, req: EngineReq) -> Option<EngineKind> {
        match req {
            EngineReq::Any => self.engines.first().copied(),
            EngineReq::Jit => self
                .engines
                .contains(&EngineKind::Jit)
                .then_some(EngineKind::Jit),
            EngineReq::Interp => self
                .engines
                .contains(&EngineKind::Interp)
                .then_some(EngineKind::Interp),
        }
    }

    /// What the outbox needs to send receipts.
    pub(super) fn courier(&self) -> Courier<'_> {
        Courier {
            key: &self.key,
            net: &self.net,
            store: &self.store,
            handle: &self.handle,
        }
    }
}

/// The capacity the worker's event channel needs: a worker holds at most
/// its slots plus `MAX_AHEAD` tasks, each sends one event when it ends, and
/// a task stays held until the loop has taken its event, so no more can be
/// waiting at once.
pub fn events_capacity(slots: u16) -> usize {
    usize::from(slots) + usize::from(corral_scheduler::batch::MAX_AHEAD)
}
