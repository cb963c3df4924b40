//! Results coming in: each receipt is checked (signature, and whether the
//! coordinator still wants it: a run it placed on the sender at the
//! receipt's attempt, open and without a result of that sender; a receipt
//! of any other run is refused here, its files never fetched, and its
//! sender rested and logged), then — off the loop, a bounded number at
//! once — its output files are fetched and its stdout and stderr stored and
//! hash-checked, and only then the coordinator takes it; the worker that
//! sent it is acknowledged only once the store has flushed it (off the
//! loop). A result this node cannot store is not acknowledged: its worker
//! keeps it and sends it again.

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::messages::{RejectReason, TaskResponse};
use corral_protocol::receipt::{TaskReceipt, TaskStatus};

use tokio::sync::{OwnedSemaphorePermit, mpsc};

use super::node::Node;
use super::state::{Durable, NotTaken, Reply, ResultReady};
use crate::blobs::BlobStore;
use crate::clock::now_ms;
use crate::dispatch::coordinator::Unwanted;
use crate::dispatch::{FetchLocks, Keep, NetHandle, fetch_many};
use crate::job::timeline::RunState;

impl Node {
    /// Receipts from `from`, as the coordinator judged them (see
    /// `Coordinator::wants_results`): those wanted are taken once their
    /// output files are here (fetched first if need be, off the loop), and
    /// the request is answered for all of them together.
    pub(super) fn on_results(
        &mut self,
        from: PeerKey,
        judged: Vec<Result<Option<TaskReceipt>, Unwanted>>,
        single: bool,
        reply: Reply,
    ) {
        tracing::debug!(peer = %from.short(), results = judged.len(), "results received");
        let mut verdicts = vec![None; judged.len()];
        let mut results = Vec::new();
        for (i, wanted) in judged.into_iter().enumerate() {
            match wanted {
                Err(Unwanted::Refused(e)) => {
                    tracing::warn!("{e}");
                    verdicts[i] = Some(RejectReason::Malformed);
                }
                Err(Unwanted::NotYet(e)) => {
                    tracing::info!("{e}");
                    verdicts[i] = Some(RejectReason::Busy);
                }
                Ok(None) => {}
                Ok(Some(receipt)) => {
                    let limit = self.coord.file_limit(&receipt.job);
                    let fits = match receipt.files.iter().find(|f| f.size > limit) {
                        Some(f) => Err(NotTaken::Refused(format!(
                            "output file {} is too large",
                            f.path
                        ))),
                        None => Ok(()),
                    };
                    results.push((i, receipt, fits));
                }
            }
        }
        let ready = ResultReady {
            from,
            results,
            verdicts,
            single,
            reply,
        };
        // Nothing to write: no results wanted, or (the common case of small
        // tasks) every output is already here, so taking them in is a few
        // hash checks of short byte strings that cost less than the hop to
        // a blocking thread and back.
        if ready.results.is_empty() || already_stored(&self.blobs, &ready.results) {
            self.on_result_ready(ready);
            return;
        }
        let intake = Intake {
            net: self.net.clone(),
            blobs: self.blobs.clone(),
            locks: self.locks.clone(),
            tx: self.results_tx.clone(),
        };
        match self.intake.clone().try_acquire_owned() {
            Ok(permit) => intake.store_then_send(ready, permit),
            // As many results are being taken in as the bound allows: this
            // one waits its turn (the number waiting is bounded by the
            // streams libp2p admits).
            Err(_) => {
                let permits = self.intake.clone();
                tokio::spawn(async move {
                    if let Ok(permit) = permits.acquire_owned().await {
                        intake.store_then_send(ready, permit);
                    }
                });
            }
        }
    }

    /// Results whose output is here: the coordinator takes them, the
    /// sender gets its answer.
    pub(super) fn on_result_ready(&mut self, ready: ResultReady) {
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
            let (job, index, ran_ms) = (receipt.job, receipt.index, receipt.duration_ms);
            let state = match receipt.status {
                TaskStatus::Exited { code: 0 } => RunState::Done,
                _ => RunState::Failed,
            };
            match fetched {
                Ok(()) => match self.coord.on_result(from, &name, receipt) {
                    Ok(taken) => {
                        self.timeline
                            .ended(from, job, index, state, Some(ran_ms), now_ms());
                        actions.extend(taken);
                    }
                    Err(e) => {
                        tracing::warn!(peer = %name, "{e}: not acknowledged, {name} keeps it and sends it again");
                        verdicts[i] = Some(RejectReason::Busy);
                    }
                },
                Err(NotTaken::NotStored(e)) => {
                    tracing::warn!(peer = %name, "the output of task {} could not be stored here: {e}; not acknowledged, {name} keeps it and sends it again", receipt.index);
                    verdicts[i] = Some(RejectReason::Busy);
                }
                Err(NotTaken::Refused(e)) => {
                    tracing::warn!(peer = %name, "the output of task {} could not be taken in: {e}", receipt.index);
                    verdicts[i] = Some(RejectReason::Malformed);
                    self.timeline
                        .ended(from, job, index, RunState::Failed, None, now_ms());
                    actions.extend(self.coord.on_failed(
                        receipt.job,
                        receipt.index,
                        from,
                        &format!("its output from {name} could not be taken in: {e}"),
                    ));
                }
            }
        }
        self.execute(actions);
        self.dirty = true;
        self.answer_when_durable(reply, verdicts, single);
    }

    /// Answers a request of results: at once when it acknowledges none;
    /// otherwise once the store is flushed (on a blocking thread), so an
    /// acknowledged result survives a crash. A flush that fails
    /// acknowledges nothing: the sender keeps its results and sends them
    /// again (a result taken already is then acknowledged after the next
    /// flush that holds).
    fn answer_when_durable(
        &mut self,
        reply: Reply,
        mut verdicts: Vec<Option<RejectReason>>,
        single: bool,
    ) {
        if verdicts.iter().all(Option::is_some) {
            self.respond(reply, response_of(verdicts, single));
            return;
        }
        let store = self.store.clone();
        let durable = self.durable_tx.clone();
        tokio::spawn(async move {
            let flushed = tokio::task::spawn_blocking(move || store.flush())
                .await
                .map_err(|e| anyhow::anyhow!("the flush did not finish: {e}"))
                .and_then(|flushed| flushed);
            if let Err(e) = flushed {
                tracing::warn!("results not acknowledged, the store cannot be flushed: {e:#}");
                for verdict in verdicts.iter_mut().filter(|v| v.is_none()) {
                    *verdict = Some(RejectReason::Busy);
                }
            }
            let response = response_of(verdicts, single);
            match reply {
                Reply::Local(tx) => {
                    let _ = tx.send(Ok(response));
                }
                remote => {
                    let _ = durable
                        .send(Durable {
                            reply: remote,
                            response,
                        })
                        .await;
                }
            }
        });
    }
}

/// The answer to a request of results with these verdicts (`None`: taken).
fn response_of(verdicts: Vec<Option<RejectReason>>, single: bool) -> TaskResponse {
    match (single, verdicts.as_slice()) {
        (true, [None]) => TaskResponse::Ack,
        (true, [Some(reason)]) => TaskResponse::Rejected(*reason),
        _ => TaskResponse::Each(verdicts),
    }
}

/// What taking results in off the loop needs.
struct Intake {
    net: NetHandle,
    blobs: BlobStore,
    locks: FetchLocks,
    tx: mpsc::Sender<ResultReady>,
}

impl Intake {
    /// Stores each result's output (its files fetched from the sender if
    /// they are not here; stdout and stderr written and hash-checked) off
    /// the loop, then hands the results back to it.
    fn store_then_send(self, mut ready: ResultReady, permit: OwnedSemaphorePermit) {
        let needs_fetch = ready.results.iter().any(|(_, receipt, fits)| {
            fits.is_ok()
                && receipt
                    .files
                    .iter()
                    .any(|f| !self.blobs.known_intact(&f.hash))
        });
        if !needs_fetch {
            // The common case: one hop to a blocking thread and back.
            tokio::task::spawn_blocking(move || {
                store_output(&self.blobs, &mut ready.results);
                let _ = self.tx.blocking_send(ready);
                drop(permit);
            });
            return;
        }
        tokio::spawn(async move {
            let from = ready.from;
            for (_, receipt, fetched) in &mut ready.results {
                if fetched.is_err() {
                    continue;
                }
                // Collected: an iterator borrowing the receipt across the
                // await trips rustc's higher-ranked Send check.
                let files: Vec<_> = receipt.files.iter().map(|f| (f.hash, f.size)).collect();
                if let Err(e) = fetch_many(
                    &self.net,
                    &self.blobs,
                    &self.locks,
                    from,
                    files,
                    Keep::Synced,
                )
                .await
                {
                    *fetched = Err(if written_here(&e) {
                        NotTaken::NotStored(format!("{e:#}"))
                    } else {
                        NotTaken::Refused(format!("{e:#}"))
                    });
                }
            }
            let blobs = self.blobs.clone();
            let stored = tokio::task::spawn_blocking(move || {
                store_output(&blobs, &mut ready.results);
                ready
            })
            .await;
            if let Ok(ready) = stored {
                let _ = self.tx.send(ready).await;
            }
            drop(permit);
        });
    }
}

/// Whether a failed fetch failed on this node's disk (the error holds an
/// I/O error: making, writing, syncing or renaming the blob) rather than on
/// the sender (what it sent, or the way to it).
fn written_here(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.is::<std::io::Error>())
}

/// Captured output at most this long is hash-checked on the loop.
const CHECK_ON_LOOP_BYTES: usize = 4 * 1024;

/// Whether every result's files, stdout and stderr are already in the blob
/// store (a metadata look-up each), stdout and stderr short and matching
/// their hashes: then nothing is fetched or written and the results can be
/// taken on the loop.
fn already_stored(
    blobs: &BlobStore,
    results: &[(usize, TaskReceipt, Result<(), NotTaken>)],
) -> bool {
    results.iter().all(|(_, receipt, fits)| {
        fits.is_err()
            || (receipt
                .files
                .iter()
                .all(|f| blobs.known_intact_lately(&f.hash))
                && [&receipt.stdout, &receipt.stderr]
                    .into_iter()
                    .all(|captured| {
                        captured.bytes.len() <= CHECK_ON_LOOP_BYTES
                            && ContentHash::of(&captured.bytes) == captured.hash
                            && blobs.known_intact_lately(&captured.hash)
                    }))
    })
}

/// Writes each result's stdout and stderr to the blob store, checking that
/// they hash to what the receipt says; a result whose output cannot be
/// stored (or does not match) is marked so.
fn store_output(blobs: &BlobStore, results: &mut [(usize, TaskReceipt, Result<(), NotTaken>)]) {
    for (_, receipt, stored) in results.iter_mut() {
        if stored.is_err() {
            continue;
        }
        for (name, captured) in [("stdout", &receipt.stdout), ("stderr", &receipt.stderr)] {
            match blobs.put_bytes(&captured.bytes) {
                Ok(hash) if hash == captured.hash => {}
                Ok(_) => {
                    *stored = Err(NotTaken::Refused(format!(
                        "its {name} does not match the hash in its receipt"
                    )));
                    break;
                }
                Err(e) => {
                    *stored = Err(NotTaken::NotStored(format!(
                        "its {name} could not be stored: {e:#}"
                    )));
                    break;
                }
            }
        }
    }
}
