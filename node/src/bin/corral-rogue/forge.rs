//! `forge` mode: for every job named in an offer, a self-signed receipt
//! with stdout `FORGED` for every task of the job (offered or not), sent to
//! the coordinator at once, each under its own signature; a little later
//! the same receipts again (a replay) and receipts for attempts that were
//! never placed, each lot under one signature (a batch, as workers send).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use corral_node::identity::NodeKey;
use corral_protocol::envelope::{Signed, SigningKey};
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::{MAX_BATCH, TaskRequest};
use corral_protocol::receipt::{Captured, EngineKind, ReceiptBatch, TaskReceipt, TaskStatus};
use libp2p::{PeerId, Swarm};

use super::flood::RogueBehaviour;
use super::say;

/// What every forged receipt says the task printed.
const FORGED: &[u8] = b"FORGED\n";
/// How long after the first receipts their replay goes out.
const REPLAY_AFTER: Duration = Duration::from_secs(2);

/// Forges receipts under the rogue's own key.
pub(crate) struct Forger {
    me: PeerKey,
    key: SigningKey,
    jobs: HashSet<JobId>,
    replays: Vec<Replay>,
}

struct Replay {
    due: Instant,
    to: PeerId,
    receipts: Vec<TaskReceipt>,
    unplaced: Vec<TaskReceipt>,
}

impl Forger {
    /// A forger signing with `key`.
    pub(crate) fn new(key: &NodeKey) -> Self {
        Self {
            me: key.peer_key(),
            key: key.signing_key(),
            jobs: HashSet::new(),
            replays: Vec::new(),
        }
    }

    fn receipt(&self, job: JobId, index: u32, attempt: u32) -> TaskReceipt {
        TaskReceipt {
            job,
            index,
            attempt,
            worker: self.me,
            status: TaskStatus::Exited { code: 0 },
            stdout: Captured::new(FORGED.to_vec(), false),
            stderr: Captured::new(Vec::new(), false),
            files: Vec::new(),
            engine: EngineKind::Jit,
            arch: std::env::consts::ARCH.into(),
            duration_ms: 1,
        }
    }

    /// An offer of `offered` (index, attempt) of `manifest` came from `from`:
    /// forge receipts for every task of the job, the first time it is named,
    /// and for the offered attempts every time.
    pub(crate) fn forge(
        &mut self,
        swarm: &mut Swarm<RogueBehaviour>,
        from: PeerId,
        manifest: &Signed<JobManifest>,
        offered: &[(u32, u32)],
    ) {
        let Ok(job) = manifest.verify_signature_from(manifest.signer()) else {
            say("FORGE_SKIP the manifest does not open");
            return;
        };
        let mut receipts: Vec<TaskReceipt> = offered
            .iter()
            .map(|&(index, attempt)| self.receipt(job.job, index, attempt))
            .collect();
        if self.jobs.insert(job.job) {
            // Tasks never offered to it: attempt 1 of each.
            receipts.extend(
                (0..job.task_count())
                    .filter(|i| !offered.iter().any(|&(o, _)| o == *i))
                    .map(|index| self.receipt(job.job, index, 1)),
            );
        }
        let unplaced = offered
            .iter()
            .map(|&(index, attempt)| self.receipt(job.job, index, attempt + 1))
            .collect();
        say(&format!(
            "FORGED {} receipts for job {} to {from}",
            receipts.len(),
            job.job
        ));
        for chunk in receipts.chunks(MAX_BATCH) {
            let signed = chunk.iter().map(|r| Signed::sign(r, &self.key)).collect();
            send(swarm, from, TaskRequest::Results(signed));
        }
        self.replays.push(Replay {
            due: Instant::now() + REPLAY_AFTER,
            to: from,
            receipts,
            unplaced,
        });
    }

    /// Sends the replays that are due.
    pub(crate) fn replay_due(&mut self, swarm: &mut Swarm<RogueBehaviour>) {
        let now = Instant::now();
        let (due, later): (Vec<Replay>, Vec<Replay>) =
            self.replays.drain(..).partition(|r| r.due <= now);
        self.replays = later;
        for replay in due {
            say(&format!(
                "REPLAYED {} receipts and {} for unplaced attempts",
                replay.receipts.len(),
                replay.unplaced.len()
            ));
            for lot in [&replay.receipts, &replay.unplaced] {
                for chunk in lot.chunks(MAX_BATCH) {
                    let batch = ReceiptBatch::new(chunk.to_vec());
                    let request = TaskRequest::SignedResults(Signed::sign(&batch, &self.key));
                    send(swarm, replay.to, request);
                }
            }
        }
    }
}

fn send(swarm: &mut Swarm<RogueBehaviour>, to: PeerId, request: TaskRequest) {
    swarm.behaviour_mut().core.task.send_request(&to, request);
}
