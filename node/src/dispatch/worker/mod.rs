//! The worker side of `/corral/task/1`: every offer is checked (offered by
//! its submitter, submitter trusted — before any signature is verified —
//! then the signature, off the event loop, expiry, replay, limits,
//! engine, owner policy, leaving, free slots) and refused with a reason
//! code the submitter sees; an accepted task fetches its module, trees and input by
//! hash (hash-checked, cached), runs in a fresh sandbox on one of the
//! runner threads (one per slot), and its signed receipt is kept in the
//! store and sent, batched with others that end at the same time, until the
//! coordinator acknowledges it. A job's only task streams its output while
//! it runs. A task that cannot run here, or that the device gives up (the
//! owner came back, `corral leave`), goes back to its coordinator with a
//! `HandBack` and its reason. While it holds a task it says so to the
//! coordinator every few seconds (`heartbeat`), which keeps the task's
//! lease.
//!
//! The rooms: [`Worker`] (here) is the event loop's side; `admission`
//! judges offers; `inputs` finds or fetches what a task reads; `runner`
//! runs tasks on the runner threads in a `workdir`; `outbox` keeps and
//! delivers receipts and hand-backs; `live` streams a running task's output; `ctx` and
//! `task` are what they share.

mod admission;
mod ctx;
mod heartbeat;
mod inputs;
mod invariants;
mod live;
mod outbox;
mod runner;
mod task;
mod workdir;

#[cfg(test)]
mod proptest;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use corral_protocol::envelope::Signed;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::RejectReason;

use crate::runtime::{StopReason, StopSignal};

use admission::{Admission, DiskRoom, Held};
pub use admission::{Gate, VerifiedManifest, verify_manifest};
pub use ctx::{WorkerCtx, WorkerEvent, events_capacity};
pub use outbox::Deliveries;
use task::Assignment;
pub use task::RunQueue;

/// A task held here, running or waiting for its inputs or a slot.
struct Running {
    attempt: u32,
    /// Who offered it: the only peer that may cancel it.
    coordinator: PeerKey,
    cancel: Arc<StopSignal>,
    /// Set (with `cancel`) when the task is given back to its coordinator.
    hand_back: Arc<std::sync::OnceLock<RejectReason>>,
    /// Set when a runner thread takes it.
    started: Arc<AtomicBool>,
    /// Its disk limit: room on the work dir promised to it.
    disk_bytes: u64,
    /// What its job needs, kept by the size bound while it is held.
    needs: Vec<corral_protocol::hash::ContentHash>,
}

/// What the cheap checks made of an offer ([`Worker::screen`]).
#[derive(Debug)]
pub enum Screened {
    /// Refused before any signature was verified.
    Refused(RejectReason),
    /// Its manifest was verified before and a task holds it: judge it now
    /// with [`Worker::on_offer_checked`].
    Known(Arc<JobManifest>),
    /// Its signature must be verified first, off the event loop
    /// ([`verify_manifest`]), then given to [`Worker::on_verified`].
    Verify,
}

/// The worker's state, owned by the event loop.
pub struct Worker {
    ctx: Arc<WorkerCtx>,
    admission: Admission,
    running: HashMap<(JobId, u32), Running>,
}

impl Worker {
    /// A worker with `slots` task slots (a runner thread each); re-sends
    /// receipts left in the outbox.
    pub fn new(ctx: Arc<WorkerCtx>, slots: u16, max_memory: Option<u64>) -> anyhow::Result<Self> {
        for n in 0..slots.max(1) {
            let ctx = ctx.clone();
            std::thread::Builder::new()
                .name(format!("corral-run-{n}"))
                .spawn(move || runner::runner(&ctx, n))
                .context("cannot start a runner thread")?;
        }
        ctx.deliveries.resend_stored(&ctx.courier());
        Ok(Self {
            ctx,
            admission: Admission::new(slots, max_memory),
            running: HashMap::new(),
        })
    }

    /// Tasks held (running, or queued: waiting for inputs or a slot).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Tasks accepted but not yet started on a runner: waiting for their
    /// inputs or for a slot (at most the slots plus `MAX_AHEAD`, so
    /// counting is cheap).
    pub fn queued(&self) -> usize {
        self.running
            .values()
            .filter(|r| !r.started.load(Ordering::Relaxed))
            .count()
    }

    /// The blobs the tasks held here need (kept by the size bound).
    pub fn pinned_blobs(&self) -> impl Iterator<Item = corral_protocol::hash::ContentHash> + '_ {
        self.running.values().flat_map(|r| r.needs.iter().copied())
    }

    /// Free slots, as advertised.
    pub fn slots_free(&self) -> u16 {
        self.admission
            .slots()
            .saturating_sub(u16::try_from(self.running.len()).unwrap_or(u16::MAX))
    }

    /// The cheap checks of an offer from `from` (it offers its own job, and
    /// is trusted), with no signature verified: refused, known, or to be
    /// verified off the loop.
    pub fn screen(&self, from: PeerKey, signed: &Signed<JobManifest>, gate: &Gate<'_>) -> Screened {
        match self.admission.screen(&self.ctx, from, signed, gate) {
            Err(reason) => {
                tracing::info!(from = %from.short(), reason = reason.describe(), "offer refused");
                Screened::Refused(reason)
            }
            Ok(Some(manifest)) => Screened::Known(manifest),
            Ok(None) => Screened::Verify,
        }
    }

    /// What [`verify_manifest`] made of a screened offer's manifest: the
    /// manifest to judge its tasks with (its signature remembered), or why
    /// every task of the offer is refused.
    pub fn on_verified(
        &mut self,
        signed: &Signed<JobManifest>,
        verdict: Result<VerifiedManifest, RejectReason>,
    ) -> Result<Arc<JobManifest>, RejectReason> {
        let VerifiedManifest { manifest, digest } = verdict?;
        let manifest = Arc::new(manifest);
        self.admission.verified(signed, digest, &manifest);
        Ok(manifest)
    }

    /// Screens an offer's manifest ([`Worker::screen`]) and, if it must
    /// be, verifies it here rather than off the loop: for a manifest no
    /// peer can make this node verify (its own job's), and for tests.
    pub fn screen_and_verify(
        &mut self,
        from: PeerKey,
        signed: &Signed<JobManifest>,
        gate: &Gate<'_>,
    ) -> Result<Arc<JobManifest>, RejectReason> {
        match self.screen(from, signed, gate) {
            Screened::Refused(reason) => Err(reason),
            Screened::Known(manifest) => Ok(manifest),
            Screened::Verify => self.on_verified(signed, verify_manifest(signed, gate.now_ms)),
        }
    }

    /// Judges an offer from `from`, verifying its manifest here: what the
    /// event loop does in three steps ([`Worker::screen`],
    /// [`verify_manifest`] off the loop, [`Worker::on_offer_checked`]).
    #[cfg(test)]
    pub(super) fn on_offer(
        &mut self,
        from: PeerKey,
        signed: &Signed<JobManifest>,
        index: u32,
        attempt: u32,
        gate: &Gate<'_>,
    ) -> Result<(), RejectReason> {
        let manifest = self.screen_and_verify(from, signed, gate)?;
        self.on_offer_checked(from, manifest, index, attempt, gate)
    }

    /// Judges an offer from `from` of task `index` of `manifest`, screened
    /// and verified; an accepted task starts at once, a refused one gets
    /// the reason.
    pub fn on_offer_checked(
        &mut self,
        from: PeerKey,
        manifest: Arc<JobManifest>,
        index: u32,
        attempt: u32,
        gate: &Gate<'_>,
    ) -> Result<(), RejectReason> {
        let running = &self.running;
        let ctx = &self.ctx;
        let slots = self.admission.slots();
        let checked =
            self.admission
                .check(&self.ctx, manifest, (index, attempt), gate, |manifest| {
                    Held {
                        this: running.contains_key(&(manifest.job, index)),
                        count: running.len(),
                        disk_promised: admission::promised(
                            running.values().map(|r| r.disk_bytes),
                            slots,
                        ),
                        disk: DiskRoom::of(&ctx.blobs.tmp_dir()),
                    }
                });
        match checked {
            Ok(manifest) => {
                tracing::debug!(job = %manifest.job, index, attempt, "offer accepted");
                self.admission.remember(manifest.job, index, attempt);
                self.start(manifest, index, attempt, from);
                Ok(())
            }
            Err(reason) => {
                tracing::info!(from = %from.short(), index, reason = reason.describe(), "offer refused");
                Err(reason)
            }
        }
    }

    /// Takes on an accepted task: straight to a runner if all it needs is
    /// here, else fetching it first.
    fn start(&mut self, manifest: Arc<JobManifest>, index: u32, attempt: u32, from: PeerKey) {
        let cancel = Arc::new(StopSignal::new());
        let hand_back = Arc::new(std::sync::OnceLock::new());
        let started = Arc::new(AtomicBool::new(false));
        self.running.insert(
            (manifest.job, index),
            Running {
                attempt,
                coordinator: from,
                cancel: cancel.clone(),
                hand_back: hand_back.clone(),
                started: started.clone(),
                disk_bytes: manifest.limits.disk_bytes,
                needs: crate::blobs::needed_by(&manifest, Some(index)),
            },
        );
        // Its lease at the coordinator goes on while it is held here.
        self.ctx.handle.spawn(heartbeat::beat(
            self.ctx.net.clone(),
            (manifest.job, index, attempt),
            from,
            Arc::downgrade(&started),
            heartbeat::INTERVAL,
        ));
        // The only task of a job is what `corral run` shows as it
        // runs: its output goes to the coordinator as it comes.
        let live = (manifest.task_count() == 1).then(|| {
            let live = live::Live::default();
            self.ctx.handle.spawn(live::stream_output(
                self.ctx.net.clone(),
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
            started,
            live,
        };
        // Everything it needs is here (the common case once a
        // job's module is): straight to a runner, no task between.
        match inputs::local_inputs(&self.ctx.blobs, &task) {
            Some(prepared) => self.ctx.runs.push(task, prepared),
            None => {
                tokio::spawn(runner::fetch_then_queue(self.ctx.clone(), task));
            }
        }
    }

    /// The coordinator no longer wants task `index` of `job`: stopped if
    /// `from` is the peer that offered it (whose offer was checked then),
    /// ignored from anyone else.
    pub fn on_cancel(&mut self, from: PeerKey, job: JobId, index: u32) {
        if let Some(running) = self.running.get(&(job, index))
            && running.coordinator == from
        {
            running.cancel.stop(StopReason::Cancelled);
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
                running.cancel.stop(StopReason::HandedBack);
                // The coordinator does not count a handed-back run as an
                // attempt, so it may offer this one again with its number.
                self.admission.forget(job, index, running.attempt);
                given += 1;
            }
        }
        given
    }

    /// The device is leaving (`corral leave`, DESIGN §9): from now on
    /// every offer is refused with `Draining`. Tasks held here go on; the
    /// daemon lets them finish within its grace period, then gives the
    /// rest back with [`Worker::hand_back_all`]`(Draining)`.
    pub fn drain(&mut self) {
        self.admission.drain();
    }

    /// Whether [`Worker::drain`] was called.
    pub fn draining(&self) -> bool {
        self.admission.draining()
    }

    /// Nothing left to do here: no task running or queued, every receipt
    /// acknowledged (or given up on) and every hand-back sent. A leaving
    /// daemon may disconnect once it is.
    pub fn idle(&self) -> bool {
        self.running.is_empty() && self.ctx.deliveries.is_empty()
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
