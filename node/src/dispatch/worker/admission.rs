//! Judging an offer: the cheap checks first (the submitter offering its
//! own job, and trusted), then the manifest's signature (verified off the
//! event loop; which signatures held is remembered, the manifests only as
//! long as a task holds them), replays, limits, engine, owner policy, free
//! slots and room on disk — refused with a reason code the submitter sees.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Weak};

use corral_protocol::capacity::OwnerState;
use corral_protocol::envelope::{EnvelopeError, Signed};
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::JobManifest;
use corral_protocol::messages::RejectReason;
use corral_scheduler::batch::MAX_AHEAD;

use super::ctx::WorkerCtx;
use crate::runtime::MAX_MODULE_BYTES;

/// Most (job, task, attempt) offers remembered to refuse replays.
pub(super) const MAX_SEEN: usize = 200_000;
/// Most verified signatures remembered to skip re-verifying every offer of
/// a job (each a signature, a digest and a weak reference: about 150
/// bytes).
pub(super) const MAX_VERIFIED: usize = 1024;
/// Largest manifest whose digest is checked on the event loop when its
/// signature is known (hashing it costs less than the hop to a blocking
/// thread); a larger one is verified off the loop again.
const DIGEST_ON_LOOP_BYTES: usize = 64 * 1024;

/// What the worker needs to know about this node to judge an offer.
pub struct Gate<'a> {
    /// The clock.
    pub now_ms: u64,
    /// Whether a submitter is trusted.
    pub trusted: &'a dyn Fn(&PeerKey) -> bool,
    /// The owner policy's state.
    pub owner: OwnerState,
}

/// What the worker holds when an offer comes.
pub(super) struct Held {
    /// Whether this task of this job is held already.
    pub(super) this: bool,
    /// How many tasks are held (running or waiting).
    pub(super) count: usize,
    /// Room on disk the tasks held may take beside a new one ([`promised`]).
    pub(super) disk_promised: u64,
    /// Room on the work directory's file system (`None`: not known).
    pub(super) disk: Option<DiskRoom>,
}

/// Room on a file system, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct DiskRoom {
    /// Free for an unprivileged user now.
    pub(super) available: u64,
    /// The file system's size.
    pub(super) total: u64,
}

/// Never promised to tasks: 5 % of the work directory's file system stays
/// free for the store, the blobs and the host, but at least
/// [`DISK_RESERVE_MIN`] and at most [`DISK_RESERVE_MAX`] (5 % of a large
/// disk is more than the host needs, and would refuse every task on a
/// disk that is merely well used).
const DISK_RESERVE_MIN: u64 = 256 * 1024 * 1024;
/// See [`DISK_RESERVE_MIN`].
const DISK_RESERVE_MAX: u64 = 2 * 1024 * 1024 * 1024;

/// The room on disk that tasks held with these disk limits may take while
/// a new task runs: at most `slots` tasks run at once (each slot's work
/// directory is emptied before its next task), so the largest `slots - 1`
/// of them beside the new one.
pub(super) fn promised(limits: impl Iterator<Item = u64>, slots: u16) -> u64 {
    let mut limits: Vec<u64> = limits.collect();
    limits.sort_unstable_by(|a, b| b.cmp(a));
    limits
        .iter()
        .take(usize::from(slots.saturating_sub(1)))
        .fold(0, |sum, n| sum.saturating_add(*n))
}

impl DiskRoom {
    /// The room on the file system holding `path` (or, while it is not
    /// made yet, its nearest existing ancestor).
    // The counts are 32 bits on 32-bit ARM (a Pi): the conversions are not
    // useless there.
    #[allow(clippy::useless_conversion)]
    pub(super) fn of(path: &std::path::Path) -> Option<Self> {
        let stat = path
            .ancestors()
            .find_map(|dir| nix::sys::statvfs::statvfs(dir).ok())?;
        let block = u64::from(stat.fragment_size());
        Some(Self {
            available: u64::from(stat.blocks_available()).saturating_mul(block),
            total: u64::from(stat.blocks()).saturating_mul(block),
        })
    }

    /// Whether a task that may add `need` bytes fits beside tasks already
    /// promised `promised`: `Busy` while it does not fit now,
    /// `LimitsTooLarge` if it could never fit here.
    pub(super) fn admit(self, need: u64, promised: u64) -> Result<(), RejectReason> {
        let reserve = (self.total / 20).clamp(DISK_RESERVE_MIN, DISK_RESERVE_MAX);
        if need > self.total.saturating_sub(reserve) {
            return Err(RejectReason::LimitsTooLarge);
        }
        let room = self
            .available
            .saturating_sub(reserve)
            .saturating_sub(promised);
        if need > room {
            return Err(RejectReason::Busy);
        }
        Ok(())
    }
}

/// The worker's memory for judging offers: its limits, the offers it took
/// (to refuse replays) and the manifests it verified.
pub(super) struct Admission {
    /// Set once the device is leaving: every offer is refused.
    draining: bool,
    slots: u16,
    max_memory: Option<u64>,
    seen: HashSet<(JobId, u32, u32)>,
    seen_order: VecDeque<(JobId, u32, u32)>,
    /// By signature: the digest of the payload it signed and the manifest
    /// (whose submitter is its signer), as long as a task holds it (not the manifest itself:
    /// one with a million inputs is megabytes, and an offer refused leaves
    /// nothing behind).
    verified: HashMap<[u8; 64], Verified>,
    /// The manifest verified last, kept while no task holds it: a job
    /// offered in rounds to a full worker is not verified every round.
    last: Option<Arc<JobManifest>>,
}

/// A signature that held.
struct Verified {
    digest: ContentHash,
    manifest: Weak<JobManifest>,
}

impl Admission {
    /// Judging for `slots` slots and at most `max_memory` bytes a task.
    pub(super) fn new(slots: u16, max_memory: Option<u64>) -> Self {
        Self {
            draining: false,
            slots,
            max_memory,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            verified: HashMap::new(),
            last: None,
        }
    }

    /// Refuses every offer from now on, with `Draining`.
    pub(super) fn drain(&mut self) {
        self.draining = true;
    }

    /// Whether offers are refused because the device is leaving.
    pub(super) fn draining(&self) -> bool {
        self.draining
    }

    /// How many verified manifests are cached.
    #[cfg(test)]
    pub(super) fn verified_count(&self) -> usize {
        self.verified.len()
    }

    /// Whether the offer of attempt `attempt` of task `index` of `job` is
    /// remembered (and would be refused as a replay).
    pub(super) fn remembers(&self, job: JobId, index: u32, attempt: u32) -> bool {
        self.seen.contains(&(job, index, attempt))
    }

    /// How many offers are remembered, and how many manifests cached.
    pub(super) fn sizes(&self) -> (usize, usize) {
        (self.seen.len(), self.verified.len())
    }

    /// The task slots.
    pub(super) fn slots(&self) -> u16 {
        self.slots
    }

    /// The cheap checks of an offer from `from`, before any signature is
    /// verified: only the submitter's own daemon coordinates its jobs (a
    /// signed manifest relayed by someone else is not an offer), and the
    /// submitter must be trusted. The manifest, if its signature was
    /// verified before and a task still holds it; `None` if it must be
    /// verified ([`verify_manifest`], off the event loop).
    pub(super) fn screen(
        &self,
        ctx: &WorkerCtx,
        from: PeerKey,
        signed: &Signed<JobManifest>,
        gate: &Gate<'_>,
    ) -> Result<Option<Arc<JobManifest>>, RejectReason> {
        // The signer is only claimed here; verifying binds it.
        let signer = *signed.signer();
        if from != signer || (signer != ctx.me && !(gate.trusted)(&signer)) {
            return Err(RejectReason::NotTrusted);
        }
        // Known by its signature, signer and payload (hashed here only if
        // small: else verified again off the loop).
        let known = self
            .verified
            .get(signed.signature())
            .filter(|_| signed.payload_bytes().len() <= DIGEST_ON_LOOP_BYTES)
            .filter(|v| v.digest == ContentHash::of(signed.payload_bytes()))
            .and_then(|v| v.manifest.upgrade())
            .filter(|manifest| &manifest.submitter == signed.signer());
        Ok(known)
    }

    /// Remembers that `signed`'s signature holds for `manifest`, whose
    /// payload has `digest`.
    pub(super) fn verified(
        &mut self,
        signed: &Signed<JobManifest>,
        digest: ContentHash,
        manifest: &Arc<JobManifest>,
    ) {
        if self.verified.len() >= MAX_VERIFIED {
            self.verified.retain(|_, v| v.manifest.strong_count() > 0);
        }
        if self.verified.len() >= MAX_VERIFIED {
            self.verified.clear();
        }
        self.verified.insert(
            *signed.signature(),
            Verified {
                digest,
                manifest: Arc::downgrade(manifest),
            },
        );
        self.last = Some(manifest.clone());
    }

    /// How many verified manifests are held by a task (and so kept).
    #[cfg(test)]
    pub(super) fn manifests_held(&self) -> usize {
        self.verified
            .values()
            .filter(|v| v.manifest.strong_count() > 0)
            .count()
    }

    /// Judges an offer of task `index` (attempt `attempt`) of `manifest`,
    /// screened ([`Admission::screen`]) and verified: the manifest, or why
    /// it is refused.
    pub(super) fn check(
        &mut self,
        ctx: &WorkerCtx,
        manifest: Arc<JobManifest>,
        (index, attempt): (u32, u32),
        gate: &Gate<'_>,
        held: impl Fn(&JobManifest) -> Held,
    ) -> Result<Arc<JobManifest>, RejectReason> {
        // Verified a while ago, maybe: its time may be up since.
        if gate.now_ms >= manifest.expires_ms {
            return Err(RejectReason::Expired);
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
        if ctx.engine_for(manifest.engine).is_none() {
            return Err(RejectReason::EngineUnavailable);
        }
        match gate.owner {
            _ if self.draining => return Err(RejectReason::Draining),
            OwnerState::Idle => {}
            OwnerState::Draining => return Err(RejectReason::Draining),
            _ => return Err(RejectReason::OwnerBusy),
        }
        let held = held(&manifest);
        if held.this {
            return Err(RejectReason::Busy);
        }
        // Late binding: a few tasks may wait beyond the free slots (a
        // coordinator keeps one there, or up to MAX_AHEAD of very short
        // tasks that would otherwise leave a slot idle between offers).
        if held.count >= usize::from(self.slots) + usize::from(MAX_AHEAD) {
            return Err(RejectReason::Busy);
        }
        // A task never fills the worker's disk: its limit must fit in the
        // free room beside the limits of the tasks held.
        if let Some(room) = held.disk {
            room.admit(manifest.limits.disk_bytes, held.disk_promised)?;
        }
        Ok(manifest)
    }

    /// Remembers an accepted offer, to refuse it if it comes again.
    pub(super) fn remember(&mut self, job: JobId, index: u32, attempt: u32) {
        if self.seen.insert((job, index, attempt)) {
            self.seen_order.push_back((job, index, attempt));
            while self.seen_order.len() > MAX_SEEN {
                if let Some(old) = self.seen_order.pop_front() {
                    self.seen.remove(&old);
                }
            }
        }
    }

    /// Forgets an offer (its task was given back: the coordinator does not
    /// count that run as an attempt, so it may offer it again as is).
    pub(super) fn forget(&mut self, job: JobId, index: u32, attempt: u32) {
        self.seen.remove(&(job, index, attempt));
    }
}

/// A manifest whose signature held, with the digest of its payload.
#[derive(Debug)]
pub struct VerifiedManifest {
    pub(super) manifest: JobManifest,
    pub(super) digest: ContentHash,
}

/// Verifies an offered manifest's signature and contents (its submitter
/// must be its signer; not expired) and hashes its payload: the costly
/// checks, for a blocking thread. Why it is refused, else.
pub fn verify_manifest(
    signed: &Signed<JobManifest>,
    now_ms: u64,
) -> Result<VerifiedManifest, RejectReason> {
    let manifest = signed.verify(now_ms).map_err(|e| match e {
        EnvelopeError::Expired { .. } | EnvelopeError::NotYetValid { .. } => RejectReason::Expired,
        EnvelopeError::BadKey
        | EnvelopeError::BadSignature(_)
        | EnvelopeError::WrongSigner { .. }
        | EnvelopeError::SignerMismatch { .. } => RejectReason::BadSignature,
        _ => RejectReason::Malformed,
    })?;
    Ok(VerifiedManifest {
        manifest,
        digest: ContentHash::of(signed.payload_bytes()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024 * 1024;

    #[test]
    fn a_task_is_admitted_only_while_its_disk_limit_fits_beside_the_others() {
        let room = DiskRoom {
            available: 10 * GIB,
            total: 20 * GIB,
        };
        // 5 % of 20 GiB is kept back: 9 GiB for tasks.
        assert_eq!(room.admit(GIB, 0), Ok(()));
        assert_eq!(room.admit(9 * GIB, 0), Ok(()));
        assert_eq!(room.admit(9 * GIB + 1, 0), Err(RejectReason::Busy));
        assert_eq!(room.admit(GIB, 8 * GIB), Ok(()));
        assert_eq!(room.admit(GIB, 8 * GIB + 1), Err(RejectReason::Busy));
        // More than the whole file system could ever give.
        assert_eq!(
            room.admit(19 * GIB + 1, 0),
            Err(RejectReason::LimitsTooLarge)
        );
    }

    #[test]
    fn a_big_disk_keeps_back_at_most_the_maximum_reserve() {
        // 5 % of a 252 GiB disk would keep 12.6 GiB back and refuse every
        // task on a host with 7 GiB free (a build machine after a build).
        let room = DiskRoom {
            available: 7 * GIB,
            total: 252 * GIB,
        };
        assert_eq!(room.admit(GIB, 0), Ok(()));
        assert_eq!(room.admit(5 * GIB, 0), Ok(()));
        assert_eq!(room.admit(5 * GIB + 1, 0), Err(RejectReason::Busy));
    }

    #[test]
    fn only_as_many_tasks_as_slots_are_counted_beside_a_new_one() {
        let held = [GIB, 3 * GIB, 2 * GIB, 5 * GIB];
        assert_eq!(promised(held.into_iter(), 1), 0);
        assert_eq!(promised(held.into_iter(), 3), 8 * GIB);
        assert_eq!(promised(held.into_iter(), 16), 11 * GIB);
        assert_eq!(promised([u64::MAX, 1].into_iter(), 4), u64::MAX);
    }

    #[test]
    fn a_small_disk_keeps_at_least_the_minimum_reserve() {
        let room = DiskRoom {
            available: 300 * 1024 * 1024,
            total: GIB,
        };
        assert_eq!(room.admit(44 * 1024 * 1024, 0), Ok(()));
        assert_eq!(room.admit(45 * 1024 * 1024, 0), Err(RejectReason::Busy));
        let full = DiskRoom {
            available: 0,
            total: GIB,
        };
        assert_eq!(full.admit(1, 0), Err(RejectReason::Busy));
    }

    #[test]
    fn the_room_of_a_real_directory_is_known() {
        let dir = tempfile::tempdir().expect("tempdir");
        let room = DiskRoom::of(dir.path()).expect("statvfs");
        assert!(room.total > 0 && room.available <= room.total, "{room:?}");
        let later = DiskRoom::of(&dir.path().join("not/made/yet")).expect("an ancestor's");
        assert_eq!(later.total, room.total);
    }
}
