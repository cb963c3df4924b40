//! The worker side of `/corral/task/1`: every offer is checked (signature,
//! submitter trusted, offered by its submitter, expiry, replay, limits,
//! engine, owner policy, free slots) and refused with a reason code the
//! submitter sees; an accepted task fetches its module, trees and input by
//! hash (hash-checked, cached), runs in a fresh sandbox on one of the
//! runner threads (one per slot), and its signed receipt is kept in the
//! store and sent, batched with others that end at the same time, until the
//! coordinator acknowledges it. A job's only task streams its output while
//! it runs.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use corral_protocol::capacity::OwnerState;
use corral_protocol::codec;
use corral_protocol::envelope::{EnvelopeError, Signed, SigningKey};
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::{EngineReq, JobManifest, TaskSet};
use corral_protocol::messages::{
    MAX_BATCH, MAX_BATCH_RECEIPT_BYTES, MAX_LIVE_CHUNK, RejectReason, TaskRequest, TaskResponse,
};
use corral_protocol::receipt::{
    Captured, EngineKind, MAX_FILES, OutputFile, TaskReceipt, TaskStatus,
};
use corral_protocol::tree::{MAX_TREE_BYTES, TreeListing};
use corral_scheduler::batch::MAX_AHEAD;
use tokio::sync::mpsc;

use super::{FetchLocks, NetHandle, fetch_blob};
use crate::blobs::BlobStore;
use crate::clock::now_ms;
use crate::runtime::{
    Compiled, Limits, LiveOutput, MAX_MODULE_BYTES, Preopen, RunSpec, Runtime, Stdin, WasmModule,
};
use crate::store::{Records, Store};
use crate::sync::lock;

/// Most (job, task, attempt) offers remembered to refuse replays.
const MAX_SEEN: usize = 200_000;
/// Most verified manifests kept to skip re-verifying every offer of a job.
const MAX_VERIFIED: usize = 64;
/// Longest trap message kept in a receipt.
const MAX_TRAP_MESSAGE: usize = 1024;

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
    /// Back to the loop.
    pub events: mpsc::UnboundedSender<WorkerEvent>,
    /// The outbox of unacknowledged receipts.
    pub store: Store,
    /// Compiled modules by hash and engine.
    pub compiled: Mutex<HashMap<(ContentHash, EngineKind), Compiled>>,
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
}

struct Running {
    attempt: u32,
    cancel: Arc<AtomicBool>,
    /// Set (with `cancel`) when the task is given back to its coordinator.
    hand_back: Arc<std::sync::OnceLock<RejectReason>>,
}

/// What the worker needs to know about this node to judge an offer.
pub struct Gate<'a> {
    /// The clock.
    pub now_ms: u64,
    /// Whether a submitter is trusted.
    pub trusted: &'a dyn Fn(&PeerKey) -> bool,
    /// The owner policy's state.
    pub owner: OwnerState,
}

/// The worker's state, owned by the event loop.
pub struct Worker {
    ctx: Arc<WorkerCtx>,
    slots: u16,
    max_memory: Option<u64>,
    running: HashMap<(JobId, u32), Running>,
    seen: HashSet<(JobId, u32, u32)>,
    seen_order: VecDeque<(JobId, u32, u32)>,
    verified: HashMap<[u8; 64], (Vec<u8>, Arc<JobManifest>)>,
}

impl Worker {
    /// A worker with `slots` task slots (a runner thread each); re-sends
    /// receipts left in the outbox.
    pub fn new(ctx: Arc<WorkerCtx>, slots: u16, max_memory: Option<u64>) -> anyhow::Result<Self> {
        for n in 0..slots.max(1) {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("corral-run-{n}"))
                .spawn(move || runner(&ctx, n))
                .context("cannot start a runner thread")?;
        }
        for (_, bytes) in ctx.store.scan_raw(Records::Outbox, b"") {
            match codec::from_canonical_bytes::<Outboxed>(&bytes, codec::MAX_RECEIPT_BYTES + 1024) {
                Ok(item) => enqueue(&ctx, item),
                Err(e) => tracing::warn!("an outbox record does not decode: {e}"),
            }
        }
        Ok(Self {
            ctx,
            slots,
            max_memory,
            running: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            verified: HashMap::new(),
        })
    }

    /// Tasks held (running or waiting for a slot).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// A slot's share of a core as recent runs here show it, if any ran;
    /// runs still going are counted up to now, a second at a time.
    pub fn sample_share(&self) -> Option<f64> {
        lock(&self.ctx.share).sample(
            std::time::Instant::now(),
            crate::capacity::thread_cpu_time_of,
        )
    }

    /// Coordinators with receipts not yet acknowledged (their senders run).
    pub fn deliveries_pending(&self) -> usize {
        lock(&self.ctx.deliveries.0).len()
    }

    /// Free slots, as advertised.
    pub fn slots_free(&self) -> u16 {
        self.slots
            .saturating_sub(u16::try_from(self.running.len()).unwrap_or(u16::MAX))
    }

    fn verify(
        &mut self,
        signed: &Signed<JobManifest>,
        now_ms: u64,
    ) -> Result<Arc<JobManifest>, RejectReason> {
        if let Some((payload, manifest)) = self.verified.get(signed.signature())
            && payload.as_slice() == signed.payload_bytes()
            && &manifest.submitter == signed.signer()
        {
            if now_ms >= manifest.expires_ms {
                return Err(RejectReason::Expired);
            }
            return Ok(manifest.clone());
        }
        let manifest = signed.verify(now_ms).map_err(|e| match e {
            EnvelopeError::Expired { .. } | EnvelopeError::NotYetValid { .. } => {
                RejectReason::Expired
            }
            EnvelopeError::BadKey
            | EnvelopeError::BadSignature(_)
            | EnvelopeError::WrongSigner { .. }
            | EnvelopeError::SignerMismatch { .. } => RejectReason::BadSignature,
            _ => RejectReason::Malformed,
        })?;
        let manifest = Arc::new(manifest);
        if self.verified.len() >= MAX_VERIFIED {
            self.verified.clear();
        }
        self.verified.insert(
            *signed.signature(),
            (signed.payload_bytes().to_vec(), manifest.clone()),
        );
        Ok(manifest)
    }

    /// Judges an offer from `from`; an accepted task starts at once, a
    /// refused one gets the reason.
    pub fn on_offer(
        &mut self,
        from: PeerKey,
        signed: &Signed<JobManifest>,
        index: u32,
        attempt: u32,
        gate: &Gate<'_>,
    ) -> Result<(), RejectReason> {
        match self.check(from, signed, index, attempt, gate) {
            Ok(manifest) => {
                tracing::debug!(job = %manifest.job, index, attempt, "offer accepted");
                self.remember(manifest.job, index, attempt);
                let cancel = Arc::new(AtomicBool::new(false));
                let hand_back = Arc::new(std::sync::OnceLock::new());
                self.running.insert(
                    (manifest.job, index),
                    Running {
                        attempt,
                        cancel: cancel.clone(),
                        hand_back: hand_back.clone(),
                    },
                );
                // The only task of a job is what `corral run` shows as it
                // runs: its output goes to the coordinator as it comes.
                let live = (manifest.task_count() == 1).then(|| {
                    let live = Live::default();
                    self.ctx.handle.spawn(stream_output(
                        self.ctx.clone(),
                        (manifest.job, index, attempt),
                        from,
                        live.clone(),
                    ));
                    live
                });
                let task = Assignment {
                    manifest,
                    index,
                    attempt,
                    coordinator: from,
                    cancel,
                    hand_back,
                    live,
                };
                // Everything it needs is here (the common case once a
                // job's module is): straight to a runner, no task between.
                match local_inputs(&self.ctx.blobs, &task) {
                    Some(prepared) => self.ctx.runs.push(task, prepared),
                    None => {
                        tokio::spawn(fetch_then_queue(self.ctx.clone(), task));
                    }
                }
                Ok(())
            }
            Err(reason) => {
                tracing::info!(from = %from.short(), index, reason = reason.describe(), "offer refused");
                Err(reason)
            }
        }
    }

    fn check(
        &mut self,
        from: PeerKey,
        signed: &Signed<JobManifest>,
        index: u32,
        attempt: u32,
        gate: &Gate<'_>,
    ) -> Result<Arc<JobManifest>, RejectReason> {
        let manifest = self.verify(signed, gate.now_ms)?;
        let submitter = manifest.submitter;
        if submitter != self.ctx.me && !(gate.trusted)(&submitter) {
            return Err(RejectReason::NotTrusted);
        }
        // Only the submitter's own daemon coordinates its jobs: a signed
        // manifest relayed by someone else is not an offer.
        if from != submitter {
            return Err(RejectReason::NotTrusted);
        }
        if index >= manifest.task_count() || attempt == 0 {
            return Err(RejectReason::Malformed);
        }
        if self.seen.contains(&(manifest.job, index, attempt)) {
            return Err(RejectReason::Replay);
        }
        if self
            .max_memory
            .is_some_and(|max| manifest.limits.memory_bytes > max)
            || manifest.module_size > MAX_MODULE_BYTES as u64
        {
            return Err(RejectReason::LimitsTooLarge);
        }
        if self.ctx.engine_for(manifest.engine).is_none() {
            return Err(RejectReason::EngineUnavailable);
        }
        match gate.owner {
            OwnerState::Idle => {}
            OwnerState::Draining => return Err(RejectReason::Draining),
            _ => return Err(RejectReason::OwnerBusy),
        }
        if self.running.contains_key(&(manifest.job, index)) {
            return Err(RejectReason::Busy);
        }
        // Late binding: a few tasks may wait beyond the free slots (a
        // coordinator keeps one there, or up to MAX_AHEAD of very short
        // tasks that would otherwise leave a slot idle between offers).
        if self.running.len() >= usize::from(self.slots) + usize::from(MAX_AHEAD) {
            return Err(RejectReason::Busy);
        }
        Ok(manifest)
    }

    fn remember(&mut self, job: JobId, index: u32, attempt: u32) {
        if self.seen.insert((job, index, attempt)) {
            self.seen_order.push_back((job, index, attempt));
            while self.seen_order.len() > MAX_SEEN {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// The coordinator no longer wants task `index` of `job`.
    pub fn on_cancel(&mut self, from: PeerKey, job: JobId, index: u32) {
        if let Some(running) = self.running.get(&(job, index))
            && self
                .verified
                .values()
                .any(|(_, m)| m.job == job && m.submitter == from)
        {
            running.cancel.store(true, Ordering::Relaxed);
        }
    }

    /// Gives every task held here back to its coordinator, for `reason`
    /// (the owner came back and the grace period is over): running guests
    /// stop within a tick, waiting ones do not start. How many were given
    /// back now.
    pub fn hand_back_all(&mut self, reason: RejectReason) -> usize {
        let mut given = 0;
        for (&(job, index), running) in &self.running {
            if running.hand_back.set(reason).is_ok() {
                running.cancel.store(true, Ordering::Relaxed);
                // The coordinator does not count a handed-back run as an
                // attempt, so it may offer this one again with its number.
                self.seen.remove(&(job, index, running.attempt));
                given += 1;
            }
        }
        given
    }

    /// A task ended.
    pub fn on_event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Finished { job, index } => {
                self.running.remove(&(job, index));
            }
        }
    }
}

/// A receipt waiting in the outbox.
#[derive(serde::Serialize, serde::Deserialize)]
struct Outboxed {
    coordinator: PeerKey,
    expires_ms: u64,
    job: JobId,
    index: u32,
    attempt: u32,
    receipt: Signed<TaskReceipt>,
}

fn outbox_key(job: &JobId, index: u32, attempt: u32) -> Vec<u8> {
    let mut key = job.as_bytes().to_vec();
    key.extend_from_slice(&index.to_be_bytes());
    key.extend_from_slice(&attempt.to_be_bytes());
    key
}

/// A task this worker took on.
struct Assignment {
    manifest: Arc<JobManifest>,
    index: u32,
    attempt: u32,
    coordinator: PeerKey,
    cancel: Arc<AtomicBool>,
    /// Set (with `cancel`) when the task is given back to its coordinator.
    hand_back: Arc<std::sync::OnceLock<RejectReason>>,
    /// Its output as it runs, for a job's only task.
    live: Option<Live>,
}

/// A running task's output on its way to the coordinator.
#[derive(Clone, Default)]
struct Live {
    output: LiveOutput,
    /// Set once the run is over (the receipt carries the rest).
    ended: Arc<AtomicBool>,
}

/// How often a running task's new output is sent.
const LIVE_INTERVAL: Duration = Duration::from_millis(50);

/// Sends what a task writes to its coordinator as it writes it, until the
/// run ends. Each message says where its bytes start, so the coordinator
/// keeps them in order; a message lost with the connection only means the
/// submitter sees that output when the receipt comes.
async fn stream_output(
    ctx: Arc<WorkerCtx>,
    (job, index, attempt): (JobId, u32, u32),
    coordinator: PeerKey,
    live: Live,
) {
    let (mut stdout_at, mut stderr_at) = (0usize, 0usize);
    loop {
        // Read `ended` first: bytes written before the end are then read.
        let ended = live.ended.load(Ordering::Acquire);
        let (stdout, stderr) = live.output.read(stdout_at, stderr_at, MAX_LIVE_CHUNK);
        if stdout.is_empty() && stderr.is_empty() {
            if ended {
                return;
            }
            tokio::time::sleep(LIVE_INTERVAL).await;
            continue;
        }
        let sent = (stdout.len(), stderr.len());
        let request = TaskRequest::Output {
            job,
            index,
            attempt,
            stdout_at: stdout_at as u64,
            stderr_at: stderr_at as u64,
            stdout,
            stderr,
        };
        stdout_at += sent.0;
        stderr_at += sent.1;
        if let Err(e) = ctx.net.task(coordinator, request).await {
            tracing::debug!(%job, index, "live output not delivered: {e}");
        }
    }
}

/// Tasks whose inputs are on disk, in the order they were accepted; the
/// runner threads take them one at a time.
#[derive(Default)]
pub struct RunQueue {
    queue: Mutex<VecDeque<(Assignment, Prepared)>>,
    ready: std::sync::Condvar,
}

impl RunQueue {
    fn push(&self, task: Assignment, prepared: Prepared) {
        lock(&self.queue).push_back((task, prepared));
        self.ready.notify_one();
    }

    fn pop(&self) -> (Assignment, Prepared) {
        let mut queue = lock(&self.queue);
        loop {
            if let Some(next) = queue.pop_front() {
                return next;
            }
            queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A runner thread: runs ready tasks one after the other, for as long as
/// the daemon lives. A slot goes from one task to the next without waiting
/// for the event loop.
fn runner(ctx: &Arc<WorkerCtx>, n: u16) {
    let work = WorkDir::new(ctx.blobs.tmp_dir().join(format!("run-{n}")));
    let tid = nix::unistd::gettid().as_raw();
    loop {
        let (task, prepared) = ctx.runs.pop();
        let result = if task.cancel.load(Ordering::Relaxed) {
            Ok(None)
        } else {
            tracing::debug!(job = %task.manifest.job, index = task.index, "running");
            run_blocking(ctx, &work, tid, &task, &prepared).map(|receipt| {
                // Stopped part way: its result is not wanted.
                (!task.cancel.load(Ordering::Relaxed)).then(|| Signed::sign(&receipt, &ctx.key))
            })
        };
        finish(ctx, task, result);
    }
}

/// Fetches what an accepted task needs, then queues it for a runner.
async fn fetch_then_queue(ctx: Arc<WorkerCtx>, task: Assignment) {
    match fetch_inputs(&ctx, &task).await {
        Ok(prepared) if !task.cancel.load(Ordering::Relaxed) => ctx.runs.push(task, prepared),
        Ok(_) => finish(&ctx, task, Ok(None)),
        Err(e) => finish(&ctx, task, Err(e)),
    }
}

/// A task ended: its receipt is kept and sent, or it is given back.
fn finish(
    ctx: &Arc<WorkerCtx>,
    task: Assignment,
    result: anyhow::Result<Option<Signed<TaskReceipt>>>,
) {
    let Assignment {
        manifest,
        index,
        attempt,
        coordinator,
        hand_back,
        live,
        ..
    } = task;
    if let Some(live) = live {
        live.ended.store(true, Ordering::Release);
    }
    let job = manifest.job;
    match result {
        Ok(Some(receipt)) => {
            let item = Outboxed {
                coordinator,
                expires_ms: manifest.expires_ms,
                job,
                index,
                attempt,
                receipt,
            };
            let key = outbox_key(&job, index, attempt);
            if let Err(e) =
                ctx.store
                    .put_raw(Records::Outbox, &key, &codec::to_canonical_bytes(&item))
            {
                tracing::warn!("cannot keep the receipt in the outbox: {e:#}");
            }
            tracing::debug!(%job, index, "receipt kept");
            enqueue(ctx, item);
        }
        Ok(None) => match hand_back.get() {
            Some(&reason) => {
                tracing::info!(%job, index, "handed back: {}", reason.describe());
                let net = ctx.net.clone();
                ctx.handle.spawn(async move {
                    let _ = net
                        .task(coordinator, TaskRequest::HandBack { job, index, reason })
                        .await;
                });
            }
            None => tracing::debug!(%job, index, "cancelled"),
        },
        Err(e) => {
            // Could not run it here (a blob would not come, the engine
            // failed): hand the task back so it runs elsewhere.
            tracing::warn!(%job, index, "cannot run the task, handing it back: {e:#}");
            let net = ctx.net.clone();
            ctx.handle.spawn(async move {
                let _ = net
                    .task(coordinator, TaskRequest::Cancel { job, index })
                    .await;
            });
        }
    }
    // Last: the receipt's sender (or the hand-back) wakes the event loop
    // first, and this event is usually taken in the same turn instead of
    // waking it once more on its own.
    let _ = ctx.events.send(WorkerEvent::Finished { job, index });
}

/// Receipts waiting to be sent, per coordinator. A coordinator with an
/// entry has one sender running, which takes whatever gathered while its
/// last request was in flight: one receipt when tasks end far apart, a
/// batch when they end close together (so a fast stream of short tasks
/// costs one request per batch, and a lone task waits for nothing).
#[derive(Default)]
pub struct Deliveries(Mutex<HashMap<PeerKey, VecDeque<Outboxed>>>);

/// Hands a kept receipt to its coordinator's sender (starting one if none
/// runs).
fn enqueue(ctx: &Arc<WorkerCtx>, item: Outboxed) {
    let coordinator = item.coordinator;
    let mut queues = lock(&ctx.deliveries.0);
    match queues.entry(coordinator) {
        std::collections::hash_map::Entry::Occupied(mut queue) => queue.get_mut().push_back(item),
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(VecDeque::from([item]));
            ctx.handle.spawn(deliver_to(ctx.clone(), coordinator));
        }
    }
}

/// Bytes a receipt adds to a batch.
fn receipt_bytes(item: &Outboxed) -> usize {
    item.receipt.payload_bytes().len() + 128
}

/// Sends `coordinator`'s receipts until each is acknowledged (or refused,
/// or its job expires), a batch at a time; ends when its queue is empty.
async fn deliver_to(ctx: Arc<WorkerCtx>, coordinator: PeerKey) {
    let mut batch: Vec<Outboxed> = Vec::new();
    let mut backoff = Duration::from_millis(250);
    loop {
        {
            let mut queues = lock(&ctx.deliveries.0);
            let Some(queue) = queues.get_mut(&coordinator) else {
                return;
            };
            let mut bytes: usize = batch.iter().map(receipt_bytes).sum();
            while batch.len() < MAX_BATCH {
                let Some(next) = queue.front() else { break };
                let size = receipt_bytes(next);
                if !batch.is_empty() && bytes + size > MAX_BATCH_RECEIPT_BYTES {
                    break;
                }
                bytes += size;
                batch.extend(queue.pop_front());
            }
            if batch.is_empty() {
                queues.remove(&coordinator);
                return;
            }
        }
        let request = if let [item] = batch.as_slice() {
            TaskRequest::Result(item.receipt.clone())
        } else {
            TaskRequest::Results(batch.iter().map(|i| i.receipt.clone()).collect())
        };
        let verdicts = match ctx.net.task(coordinator, request).await {
            Ok(TaskResponse::Ack) if batch.len() == 1 => vec![None],
            Ok(TaskResponse::Each(verdicts)) if verdicts.len() == batch.len() => verdicts,
            Ok(TaskResponse::Rejected(reason)) => vec![Some(reason); batch.len()],
            Ok(other) => {
                tracing::warn!(
                    coordinator = %coordinator.short(),
                    "the coordinator answered {} result(s) with {other:?}; dropping them",
                    batch.len()
                );
                vec![Some(RejectReason::Malformed); batch.len()]
            }
            Err(e) => {
                let now = now_ms();
                batch.retain(|item| {
                    let keep = now <= item.expires_ms;
                    if !keep {
                        tracing::warn!(job = %item.job, index = item.index, "result not delivered before the job expired: {e}");
                        forget(&ctx, item);
                    }
                    keep
                });
                tracing::debug!(coordinator = %coordinator.short(), "{} result(s) not delivered yet: {e}", batch.len());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(3));
                continue;
            }
        };
        backoff = Duration::from_millis(250);
        for (item, verdict) in batch.drain(..).zip(verdicts) {
            match verdict {
                None => tracing::debug!(job = %item.job, index = item.index, "result acknowledged"),
                Some(reason) => tracing::warn!(
                    job = %item.job,
                    index = item.index,
                    "the coordinator refused the result: {}",
                    reason.describe()
                ),
            }
            forget(&ctx, &item);
        }
    }
}

/// Drops a delivered (or undeliverable) receipt from the outbox.
fn forget(ctx: &WorkerCtx, item: &Outboxed) {
    let key = outbox_key(&item.job, item.index, item.attempt);
    if let Err(e) = ctx.store.remove_record(Records::Outbox, &key) {
        tracing::warn!("cannot clear the outbox: {e:#}");
    }
}

/// What a task needs on disk, fetched.
struct Prepared {
    module: PathBuf,
    input: Option<(String, PathBuf)>,
    stdin: Option<PathBuf>,
}

/// The blobs a task reads besides its `--dir` trees, each with the most
/// bytes accepted for it: the module, its input (a job with inputs), stdin.
struct Needs {
    module: (ContentHash, u64),
    input: Option<(String, ContentHash, u64)>,
    stdin: Option<(ContentHash, u64)>,
}

impl Needs {
    fn of(manifest: &JobManifest, index: u32) -> anyhow::Result<Self> {
        let input = match &manifest.tasks {
            TaskSet::Inputs(inputs) => {
                let spec = inputs
                    .get(index as usize)
                    .context("no input for this task")?;
                Some((spec.name.clone(), spec.hash, spec.size))
            }
            TaskSet::Count(_) => None,
        };
        Ok(Self {
            module: (
                manifest.module_hash,
                manifest.module_size.min(MAX_MODULE_BYTES as u64),
            ),
            input,
            stdin: manifest.stdin.map(|spec| {
                (
                    spec.hash,
                    spec.size.min(corral_protocol::manifest::MAX_STDIN_BYTES),
                )
            }),
        })
    }
}

/// What a task needs, if every blob of it is already here (jobs with
/// `--dir` trees always take the fetching path, which reads their listings).
fn local_inputs(blobs: &BlobStore, task: &Assignment) -> Option<Prepared> {
    if !task.manifest.dirs.is_empty() {
        return None;
    }
    let needs = Needs::of(&task.manifest, task.index).ok()?;
    let here = |hash: &ContentHash| blobs.has(hash).then(|| blobs.path(hash));
    Some(Prepared {
        module: here(&needs.module.0)?,
        input: match needs.input {
            Some((name, hash, _)) => Some((name, here(&hash)?)),
            None => None,
        },
        stdin: match needs.stdin {
            Some((hash, _)) => Some(here(&hash)?),
            None => None,
        },
    })
}

/// Fetches (hash-checked, cached) what a task needs from its coordinator.
async fn fetch_inputs(ctx: &Arc<WorkerCtx>, task: &Assignment) -> anyhow::Result<Prepared> {
    let needs = Needs::of(&task.manifest, task.index)?;
    let fetch = |hash, max| {
        fetch_blob(
            &ctx.net,
            &ctx.blobs,
            &ctx.locks,
            task.coordinator,
            hash,
            max,
        )
    };
    let module = fetch(needs.module.0, needs.module.1).await?;
    for dir in &task.manifest.dirs {
        fetch(
            dir.tree_hash,
            corral_protocol::tree::MAX_LISTING_BYTES as u64,
        )
        .await?;
        let listing = ctx.blobs.listing(&dir.tree_hash)?;
        for file in &listing.files {
            fetch(file.hash, file.size).await?;
        }
    }
    let input = match needs.input {
        Some((name, hash, size)) => Some((name, fetch(hash, size).await?)),
        None => None,
    };
    let stdin = match needs.stdin {
        Some((hash, max)) => Some(fetch(hash, max).await?),
        None => None,
    };
    Ok(Prepared {
        module,
        input,
        stdin,
    })
}

fn compiled_for(
    ctx: &WorkerCtx,
    manifest: &JobManifest,
    module: &Path,
) -> anyhow::Result<Compiled> {
    let engine = ctx
        .engine_for(manifest.engine)
        .context("no engine of the kind the job needs")?;
    let key = (manifest.module_hash, engine);
    if let Some(compiled) = ctx
        .compiled
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
    {
        return Ok(compiled.clone());
    }
    let bytes = std::fs::read(module).context("cannot read the module")?;
    let module = WasmModule::new(bytes)?;
    if module.hash != manifest.module_hash {
        anyhow::bail!("the module does not match its hash");
    }
    let compiled = ctx.runtime.compile(engine, &module)?;
    let mut cache = ctx.compiled.lock().unwrap_or_else(|e| e.into_inner());
    if cache.len() > 32 {
        cache.clear();
    }
    cache.insert(key, compiled.clone());
    Ok(compiled)
}

/// A read-only tree, laid out once per device and shared by its tasks.
fn shared_tree(blobs: &BlobStore, tree: &ContentHash) -> anyhow::Result<PathBuf> {
    let dest = blobs.trees_dir().join(tree.to_hex());
    if dest.is_dir() {
        return Ok(dest);
    }
    let parent = dest.parent().context("tree dir")?.to_path_buf();
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix("tree-")
        .tempdir_in(blobs.tmp_dir())?;
    blobs.materialize(tree, staging.path(), false)?;
    let staged = staging.keep();
    if std::fs::rename(&staged, &dest).is_err() {
        // Another task laid it out first.
        let _ = std::fs::remove_dir_all(&staged);
    }
    Ok(dest)
}

/// A runner's task directory, `tmp/run-N/`. Its `output/` and `input/`
/// stay from one task to the next and are emptied before each: making and
/// removing directories for every task cost more than a short task's run
/// (ext4 allocates, frees and discards a block for each).
struct WorkDir {
    root: PathBuf,
    /// Known empty: the last task had no input or tree copy and left
    /// nothing in `output/` (its walk found no entry), so the next needs
    /// no listing of three directories first.
    clean: std::cell::Cell<bool>,
}

impl WorkDir {
    fn new(root: PathBuf) -> Self {
        Self {
            root,
            clean: std::cell::Cell::new(false),
        }
    }

    /// Makes it ready for a task: `output/` and `input/` there and empty,
    /// anything else the last task left (writable tree copies) gone.
    fn prepare(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        let output = self.root.join("output");
        let input = self.root.join("input");
        if self.clean.replace(false) {
            return Ok((output, input));
        }
        for dir in [&output, &input] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let path = entry.path();
            if path == output || path == input {
                for inner in std::fs::read_dir(&path)? {
                    remove_entry(&inner?)?;
                }
            } else {
                remove_entry(&entry)?;
            }
        }
        Ok((output, input))
    }
}

/// Removes a file, link or whole directory (never following a link).
fn remove_entry(entry: &std::fs::DirEntry) -> anyhow::Result<()> {
    let path = entry.path();
    let removed = if entry.file_type()?.is_dir() {
        std::fs::remove_dir_all(&path)
    } else {
        std::fs::remove_file(&path)
    };
    removed.with_context(|| format!("cannot clear {}", path.display()))
}

/// Runs a task on this runner thread (`tid`).
fn run_blocking(
    ctx: &WorkerCtx,
    work: &WorkDir,
    tid: i32,
    task: &Assignment,
    prepared: &Prepared,
) -> anyhow::Result<TaskReceipt> {
    let (manifest, index, attempt) = (&*task.manifest, task.index, task.attempt);
    let t0 = std::time::Instant::now();
    let compiled = compiled_for(ctx, manifest, &prepared.module)?;
    let (output, input) = work
        .prepare()
        .context("cannot make the task's directory ready")?;
    let mut preopens = vec![Preopen {
        host: output.clone(),
        guest: crate::job::plan::GUEST_OUTPUT.into(),
        writable: true,
    }];
    if let Some((name, blob)) = &prepared.input {
        let dir = input;
        let target = dir.join(name);
        if std::fs::hard_link(blob, &target).is_err() {
            std::fs::copy(blob, &target)?;
        }
        preopens.push(Preopen {
            host: dir,
            guest: crate::job::plan::GUEST_INPUT.into(),
            writable: false,
        });
    }
    let mut writable: Vec<(String, PathBuf, TreeListing)> = Vec::new();
    for (i, dir) in manifest.dirs.iter().enumerate() {
        if dir.writable {
            let copy = work.root.join(format!("dir{i}"));
            ctx.blobs.materialize(&dir.tree_hash, &copy, true)?;
            writable.push((
                dir.guest_path.clone(),
                copy.clone(),
                ctx.blobs.listing(&dir.tree_hash)?,
            ));
            preopens.push(Preopen {
                host: copy,
                guest: dir.guest_path.clone(),
                writable: true,
            });
        } else {
            preopens.push(Preopen {
                host: shared_tree(&ctx.blobs, &dir.tree_hash)?,
                guest: dir.guest_path.clone(),
                writable: false,
            });
        }
    }
    let spec = RunSpec {
        args: manifest.task_args(index),
        env: manifest
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stdin: match &prepared.stdin {
            Some(path) => Stdin::Bytes(
                std::fs::read(path)
                    .context("cannot read the task's stdin")?
                    .into(),
            ),
            None => Stdin::Empty,
        },
        passthrough: false,
        preopens,
        limits: Limits {
            timeout: Duration::from_millis(manifest.limits.timeout_ms),
            memory_bytes: manifest.limits.memory_bytes,
            output_bytes: manifest.limits.output_bytes,
        },
        cancel: Some(task.cancel.clone()),
        live: task.live.as_ref().map(|l| l.output.clone()),
    };
    let t1 = std::time::Instant::now();
    // The guest runs on this thread: the CPU time it gets over the time it
    // takes is what a slot gets here now.
    lock(&ctx.share).started(tid, t1, crate::capacity::thread_cpu_time());
    let outcome = ctx.runtime.run(&compiled, &spec);
    let t2 = std::time::Instant::now();
    lock(&ctx.share).ended(tid, t2, crate::capacity::thread_cpu_time());
    let outcome = outcome?;

    let (mut files, left) = collect(&ctx.blobs, &output, crate::job::plan::GUEST_OUTPUT, None)?;
    for (guest, copy, listing) in &writable {
        files.extend(collect(&ctx.blobs, copy, guest, Some(listing))?.0);
    }
    work.clean
        .set(left == 0 && prepared.input.is_none() && writable.is_empty());
    files.sort_by(|a, b| a.path.cmp(&b.path));
    if files.len() > MAX_FILES {
        anyhow::bail!(
            "the task wrote {} files; at most {MAX_FILES} come back",
            files.len()
        );
    }
    tracing::debug!(
        setup_us = (t1 - t0).as_micros() as u64,
        run_us = (t2 - t1).as_micros() as u64,
        collect_us = t2.elapsed().as_micros() as u64,
        "task timings"
    );
    let mut stdout = outcome.stdout;
    if ctx.fault_lie {
        stdout.extend_from_slice(b"(a lie told by a faulty worker)\n");
    }
    let status = match outcome.status {
        TaskStatus::Trapped { mut message } => {
            if message.len() > MAX_TRAP_MESSAGE {
                let mut cut = MAX_TRAP_MESSAGE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            TaskStatus::Trapped { message }
        }
        other => other,
    };
    Ok(TaskReceipt {
        job: manifest.job,
        index,
        attempt,
        worker: ctx.me,
        status,
        stdout: Captured::new(stdout, outcome.stdout_truncated),
        stderr: Captured::new(outcome.stderr, outcome.stderr_truncated),
        files,
        engine: outcome.engine,
        arch: std::env::consts::ARCH.to_string(),
        duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The files under `root` as output files at `guest/…`, stored as blobs;
/// with a listing, only those created or changed. Also how many entries of
/// any kind are under `root`.
fn collect(
    blobs: &BlobStore,
    root: &Path,
    guest: &str,
    listing: Option<&TreeListing>,
) -> anyhow::Result<(Vec<OutputFile>, usize)> {
    let shipped: HashMap<&str, ContentHash> = listing
        .map(|l| l.files.iter().map(|f| (f.path.as_str(), f.hash)).collect())
        .unwrap_or_default();
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut entries = 0;
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
        if entry.depth() > 0 {
            entries += 1;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).context("walked outside")?;
        let Some(rel) = rel.to_str() else {
            tracing::warn!(
                "an output file name is not UTF-8 and is skipped: {}",
                rel.display()
            );
            continue;
        };
        let (hash, size) = blobs.put_file(entry.path())?;
        if shipped.get(rel) == Some(&hash) {
            continue;
        }
        total = total.saturating_add(size);
        if total > MAX_TREE_BYTES {
            anyhow::bail!("the task wrote more than {MAX_TREE_BYTES} bytes of files");
        }
        files.push(OutputFile {
            path: format!("{}/{rel}", guest.trim_end_matches('/')),
            size,
            hash,
        });
    }
    Ok((files, entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_dir_is_emptied_before_each_task_without_following_links() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let work = WorkDir::new(tmp.path().join("run-0"));
        let (output, input) = work.prepare().expect("first prepare");
        assert!(output.is_dir() && input.is_dir());

        // What a task may leave: files and directories in output/, its
        // input, a writable tree copy, and a link pointing outside.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("keep"), b"not the task's").expect("keep");
        std::fs::create_dir_all(output.join("a/b")).expect("nested");
        std::fs::write(output.join("a/b/c.txt"), b"x").expect("file");
        std::fs::write(output.join("top.txt"), b"y").expect("file");
        std::os::unix::fs::symlink(&outside, output.join("link")).expect("link");
        std::fs::write(input.join("in.txt"), b"z").expect("input");
        std::fs::create_dir_all(work.root.join("dir0/sub")).expect("copy");

        let (output, input) = work.prepare().expect("second prepare");
        assert_eq!(std::fs::read_dir(&output).expect("output").count(), 0);
        assert_eq!(std::fs::read_dir(&input).expect("input").count(), 0);
        assert!(!work.root.join("dir0").exists(), "tree copies are removed");
        assert_eq!(
            std::fs::read(outside.join("keep")).expect("still there"),
            b"not the task's",
            "a link's target is left alone"
        );

        // Known clean (the last task left nothing): no listing at all, so
        // a file put there behind its back stays; the next prepare lists
        // again.
        work.clean.set(true);
        std::fs::write(output.join("stray"), b"s").expect("stray");
        let (output, _) = work.prepare().expect("clean prepare");
        assert!(
            output.join("stray").exists(),
            "a clean directory is not listed"
        );
        let (output, _) = work.prepare().expect("third prepare");
        assert!(
            !output.join("stray").exists(),
            "clean holds for one task only"
        );
    }
}
