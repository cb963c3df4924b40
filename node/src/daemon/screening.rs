//! Offers coming in, cheap checks first (DESIGN §7): on the loop, an
//! offer is screened (offered by its submitter, trusted) with no signature
//! verified; a manifest whose signature is not known yet is verified on a
//! blocking thread (a bounded number at once), and its tasks are judged
//! once it is back on the loop — or, a small one now and then, on the loop
//! at once (see [`INLINE_EVERY`](super::state::INLINE_EVERY)).

use std::sync::Arc;
use std::time::Instant;

use corral_protocol::envelope::Signed;
use corral_protocol::ids::PeerKey;
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::{RejectReason, TaskRef, TaskResponse};
use tokio::sync::mpsc;

use super::node::Node;
use super::state::{OfferVerified, Reply};
use crate::clock::now_ms;
use crate::dispatch::worker::{Gate, Screened, verify_manifest};

/// Most manifests being verified at once; an offer past it is refused as
/// `Busy` (it costs the task no attempt, and is offered again).
pub(super) const MAX_VERIFYING: usize = 4;

impl Node {
    /// Whether `manifest` may be verified on the loop now.
    fn may_verify_inline(&mut self, manifest: &Signed<JobManifest>) -> bool {
        self.inline
            .take(Instant::now(), manifest.payload_bytes().len())
    }

    /// The gate an offer is judged by now.
    fn gate_now<'a>(&self, trusted: &'a dyn Fn(&PeerKey) -> bool) -> Gate<'a> {
        Gate {
            now_ms: now_ms(),
            trusted,
            owner: self.policy.state(),
        }
    }

    /// An offer of `tasks` of `manifest` from `from`: refused or judged at
    /// once when the cheap checks settle it or the manifest is known, else
    /// verified off the loop first ([`Node::on_offer_verified`]).
    pub(super) fn on_offer(
        &mut self,
        from: PeerKey,
        manifest: Signed<JobManifest>,
        tasks: Vec<TaskRef>,
        single: bool,
        reply: Reply,
    ) {
        let store = &self.store;
        let trusted = |k: &PeerKey| store.is_trusted(k).unwrap_or(false);
        let screened = self
            .worker
            .screen(from, &manifest, &self.gate_now(&trusted));
        match screened {
            Screened::Refused(reason) => {
                self.answer_offer(Err(reason), &tasks, from, single, reply)
            }
            Screened::Known(known) => self.answer_offer(Ok(known), &tasks, from, single, reply),
            Screened::Verify if self.may_verify_inline(&manifest) => {
                let verdict = verify_manifest(&manifest, now_ms());
                self.on_offer_verified(OfferVerified {
                    from,
                    manifest,
                    verdict,
                    tasks,
                    single,
                    reply,
                });
            }
            Screened::Verify => {
                let Ok(permit) = self.verifying.clone().try_acquire_owned() else {
                    tracing::debug!(peer = %from.short(), "too many manifests being verified: offer refused as busy");
                    self.answer_offer(Err(RejectReason::Busy), &tasks, from, single, reply);
                    return;
                };
                let tx = self.verified_tx.clone();
                tokio::spawn(async move {
                    let now = now_ms();
                    let checked = tokio::task::spawn_blocking(move || {
                        let verdict = verify_manifest(&manifest, now);
                        (manifest, verdict)
                    })
                    .await;
                    drop(permit);
                    let Ok((manifest, verdict)) = checked else {
                        return;
                    };
                    let _ = tx
                        .send(OfferVerified {
                            from,
                            manifest,
                            verdict,
                            tasks,
                            single,
                            reply,
                        })
                        .await;
                });
            }
        }
    }

    /// The manifest of this node's own job, offered to its own worker:
    /// verified here (this node signed it; no peer can make it do this).
    pub(super) fn own_manifest(
        &mut self,
        signed: &Signed<JobManifest>,
    ) -> Result<Arc<JobManifest>, RejectReason> {
        let store = &self.store;
        let trusted = |k: &PeerKey| store.is_trusted(k).unwrap_or(false);
        let gate = self.gate_now(&trusted);
        self.worker.screen_and_verify(self.me, signed, &gate)
    }

    /// A manifest verified off the loop: its tasks are judged now.
    pub(super) fn on_offer_verified(&mut self, verified: OfferVerified) {
        let OfferVerified {
            from,
            manifest,
            verdict,
            tasks,
            single,
            reply,
        } = verified;
        let checked = self.worker.on_verified(&manifest, verdict);
        self.answer_offer(checked, &tasks, from, single, reply);
    }

    /// Judges each task of an offer whose manifest is `checked`, and
    /// answers it.
    fn answer_offer(
        &mut self,
        checked: Result<Arc<JobManifest>, RejectReason>,
        tasks: &[TaskRef],
        from: PeerKey,
        single: bool,
        reply: Reply,
    ) {
        let verdicts: Vec<Option<RejectReason>> = match checked {
            Err(reason) => vec![Some(reason); tasks.len()],
            Ok(manifest) => tasks
                .iter()
                .map(|t| {
                    self.judge_offer(from, manifest.clone(), t.index, t.attempt)
                        .err()
                })
                .collect(),
        };
        let response = match (single, verdicts.as_slice()) {
            (true, [None]) => TaskResponse::Accepted,
            (true, [Some(reason)]) => TaskResponse::Rejected(*reason),
            _ => TaskResponse::Each(verdicts),
        };
        self.respond(reply, response);
    }
}

/// The channel verified offers come back to the loop by.
pub(super) fn channel() -> (mpsc::Sender<OfferVerified>, mpsc::Receiver<OfferVerified>) {
    mpsc::channel(MAX_VERIFYING)
}
