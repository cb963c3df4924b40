//! What the worker owes its coordinators: receipts kept in the store until
//! acknowledged, and their delivery (one sender per coordinator, batching
//! what gathers while its last request was in flight, signed as it leaves:
//! a batch under one signature); and tasks handed back, counted until the
//! message is through.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use corral_protocol::codec;
use corral_protocol::envelope::{Signed, SigningKey};
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::messages::{
    MAX_BATCH, MAX_BATCH_RECEIPT_BYTES, RejectReason, TaskRequest, TaskResponse,
};
use corral_protocol::receipt::{ReceiptBatch, TaskReceipt};

use crate::clock::now_ms;
use crate::dispatch::NetHandle;
use crate::store::{Records, Store};
use crate::sync::lock;

/// A receipt waiting in the outbox.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Outboxed {
    /// To whom it goes.
    pub(super) coordinator: PeerKey,
    /// When its job expires: undelivered by then, it is dropped.
    pub(super) expires_ms: u64,
    /// The job.
    pub(super) job: JobId,
    /// The task.
    pub(super) index: u32,
    /// The attempt.
    pub(super) attempt: u32,
    /// The receipt (signed when it is sent).
    pub(super) receipt: TaskReceipt,
}

/// A receipt as the outbox kept it before receipts were signed as they
/// leave, under a key of [`OLD_KEY_BYTES`]: still read, and sent, after
/// an upgrade.
#[derive(serde::Serialize, serde::Deserialize)]
struct OutboxedSigned {
    coordinator: PeerKey,
    expires_ms: u64,
    job: JobId,
    index: u32,
    attempt: u32,
    receipt: Signed<TaskReceipt>,
}

/// The key of an [`OutboxedSigned`]: the job, the task, the attempt.
const OLD_KEY_BYTES: usize = 16 + 4 + 4;

/// The first byte of the key of an [`Outboxed`] (an unsigned receipt),
/// before what an [`OutboxedSigned`]'s key holds: the length tells the
/// two apart.
const UNSIGNED: u8 = b'u';

fn outbox_key(job: &JobId, index: u32, attempt: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + OLD_KEY_BYTES);
    key.push(UNSIGNED);
    key.extend_from_slice(job.as_bytes());
    key.extend_from_slice(&index.to_be_bytes());
    key.extend_from_slice(&attempt.to_be_bytes());
    key
}

/// A stored outbox record, as it is now or as it was.
fn read_stored(key: &[u8], bytes: &[u8]) -> anyhow::Result<Outboxed> {
    let bound = codec::MAX_RECEIPT_BYTES + 1024;
    if key.len() != OLD_KEY_BYTES {
        return Ok(codec::from_canonical_bytes(bytes, bound)?);
    }
    let old: OutboxedSigned = codec::from_canonical_bytes(bytes, bound)?;
    // This worker's own signature, over what it stored.
    let receipt = old
        .receipt
        .verify_signature_from(old.receipt.signer())
        .map_err(|e| anyhow::anyhow!("an old outbox record's receipt: {e}"))?;
    Ok(Outboxed {
        coordinator: old.coordinator,
        expires_ms: old.expires_ms,
        job: old.job,
        index: old.index,
        attempt: old.attempt,
        receipt,
    })
}

/// A receipt in its coordinator's queue, with the bytes it adds to a
/// batch (its stored record's: the receipt and a few fields, so a little
/// over the receipt's own).
struct Queued {
    item: Outboxed,
    bytes: usize,
}

/// What sending receipts needs: the way to the coordinators, the store the
/// outbox lives in, and the runtime to start senders on.
pub(super) struct Courier<'a> {
    /// What receipts are signed with (this node's key).
    pub(super) key: &'a SigningKey,
    /// Requests through the event loop.
    pub(super) net: &'a NetHandle,
    /// The outbox.
    pub(super) store: &'a Store,
    /// Where senders run.
    pub(super) handle: &'a tokio::runtime::Handle,
}

/// Receipts waiting to be sent, per coordinator. A coordinator with an
/// entry has one sender running, which takes whatever gathered while its
/// last request was in flight: one receipt when tasks end far apart, a
/// batch when they end close together (so a fast stream of short tasks
/// costs one request per batch, and a lone task waits for nothing). Also
/// how many hand-backs are on their way.
#[derive(Clone, Default)]
pub struct Deliveries {
    queues: Arc<Mutex<HashMap<PeerKey, VecDeque<Queued>>>>,
    handing_back: Arc<AtomicUsize>,
}

/// Counts a hand-back on its way while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(count.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Deliveries {
    /// Re-sends the receipts left in the outbox (by a daemon that stopped
    /// before they were acknowledged).
    pub(super) fn resend_stored(&self, courier: &Courier<'_>) {
        for (key, bytes) in courier.store.scan_raw(Records::Outbox, b"") {
            match read_stored(&key, &bytes) {
                Ok(item) => self.enqueue(
                    courier,
                    Queued {
                        item,
                        bytes: bytes.len(),
                    },
                ),
                Err(e) => tracing::warn!("an outbox record does not decode: {e:#}"),
            }
        }
    }

    /// Keeps a receipt in the outbox and sends it.
    pub(super) fn keep(&self, courier: &Courier<'_>, item: Outboxed) {
        let key = outbox_key(&item.job, item.index, item.attempt);
        let record = codec::to_canonical_bytes(&item);
        if let Err(e) = courier.store.put_raw(Records::Outbox, &key, &record) {
            tracing::warn!("cannot keep the receipt in the outbox: {e:#}");
        }
        tracing::debug!(job = %item.job, index = item.index, "receipt kept");
        self.enqueue(
            courier,
            Queued {
                item,
                bytes: record.len(),
            },
        );
    }

    /// Gives task `index` of `job` back to `coordinator`, for `reason`.
    pub(super) fn hand_back(
        &self,
        courier: &Courier<'_>,
        coordinator: PeerKey,
        (job, index): (JobId, u32),
        reason: RejectReason,
    ) {
        let in_flight = InFlight::new(&self.handing_back);
        let net = courier.net.clone();
        courier.handle.spawn(async move {
            let request = TaskRequest::HandBack { job, index, reason };
            if let Err(e) = net.task(coordinator, request).await {
                tracing::debug!(%job, index, "the hand-back did not go through: {e}");
            }
            drop(in_flight);
        });
    }

    /// Whether every receipt was delivered (or given up on) and every
    /// hand-back sent.
    pub(super) fn is_empty(&self) -> bool {
        self.handing_back.load(Ordering::Acquire) == 0 && lock(&self.queues).is_empty()
    }

    /// Hands a kept receipt to its coordinator's sender (starting one if
    /// none runs).
    fn enqueue(&self, courier: &Courier<'_>, item: Queued) {
        let coordinator = item.item.coordinator;
        let mut queues = lock(&self.queues);
        match queues.entry(coordinator) {
            std::collections::hash_map::Entry::Occupied(mut queue) => {
                queue.get_mut().push_back(item);
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(VecDeque::from([item]));
                courier.handle.spawn(deliver_to(
                    self.clone(),
                    Sender {
                        key: courier.key.clone(),
                        net: courier.net.clone(),
                        store: courier.store.clone(),
                    },
                    coordinator,
                ));
            }
        }
    }
}

/// Bytes a receipt adds to a batch, with room for its framing (and, sent
/// the old way, its own signature).
fn receipt_bytes(queued: &Queued) -> usize {
    queued.bytes + 128
}

/// What a sender needs of its own.
struct Sender {
    key: SigningKey,
    net: NetHandle,
    store: Store,
}

impl Sender {
    /// `batch` as one request, signed: a lone receipt alone (it may be too
    /// large for a batch); several under one signature, or each under its
    /// own for a coordinator that did not take a batch so (`split`).
    fn request(&self, batch: &[Queued], split: bool) -> TaskRequest {
        match batch {
            [one] => TaskRequest::Result(Signed::sign(&one.item.receipt, &self.key)),
            _ if split => TaskRequest::Results(
                batch
                    .iter()
                    .map(|q| Signed::sign(&q.item.receipt, &self.key))
                    .collect(),
            ),
            _ => TaskRequest::SignedResults(Signed::sign(
                &ReceiptBatch::new(batch.iter().map(|q| q.item.receipt.clone()).collect()),
                &self.key,
            )),
        }
    }
}

/// Sends `coordinator`'s receipts until each is acknowledged (or refused,
/// or its job expires), a batch at a time; ends when its queue is empty.
/// A batch under one signature that does not go through is sent again
/// with a signature per receipt, as long as this sender runs: a
/// coordinator of an older version does not read the first kind (and a
/// batch that failed for any other reason costs only the signatures).
async fn deliver_to(deliveries: Deliveries, sender: Sender, coordinator: PeerKey) {
    let Sender { net, store, .. } = &sender;
    let mut batch: Vec<Queued> = Vec::new();
    let mut backoff = Duration::from_millis(250);
    let mut split = false;
    loop {
        {
            let mut queues = lock(&deliveries.queues);
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
        let request = sender.request(&batch, split);
        let one_signature = matches!(request, TaskRequest::SignedResults(_));
        let verdicts = match net.task(coordinator, request).await {
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
                split |= one_signature;
                let now = now_ms();
                batch.retain(|Queued { item, .. }| {
                    let keep = now <= item.expires_ms;
                    if !keep {
                        tracing::warn!(job = %item.job, index = item.index, "result not delivered before the job expired: {e}");
                        forget(store, item);
                    }
                    keep
                });
                tracing::debug!(coordinator = %coordinator.short(), "{} result(s) not delivered yet: {e}", batch.len());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(3));
                continue;
            }
        };
        let mut again = Vec::new();
        for (queued, verdict) in batch.drain(..).zip(verdicts) {
            let item = &queued.item;
            match verdict {
                None => tracing::debug!(job = %item.job, index = item.index, "result acknowledged"),
                // Not taken for now (the coordinator could not store it):
                // kept, and sent again after a while.
                Some(reason) if reason.is_transient() && now_ms() <= item.expires_ms => {
                    tracing::debug!(
                        job = %item.job,
                        index = item.index,
                        "the coordinator did not take the result yet ({}); kept",
                        reason.describe()
                    );
                    again.push(queued);
                    continue;
                }
                Some(reason) => tracing::warn!(
                    job = %item.job,
                    index = item.index,
                    "the coordinator refused the result: {}",
                    reason.describe()
                ),
            }
            forget(store, item);
        }
        if again.is_empty() {
            backoff = Duration::from_millis(250);
        } else {
            batch = again;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(3));
        }
    }
}

/// Drops a delivered (or undeliverable) receipt from the outbox.
fn forget(store: &Store, item: &Outboxed) {
    let key = outbox_key(&item.job, item.index, item.attempt);
    if let Err(e) = store.remove_record(Records::Outbox, &key) {
        tracing::warn!("cannot clear the outbox: {e:#}");
    }
}

#[cfg(test)]
mod tests;
