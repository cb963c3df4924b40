//! A run's disk quota: the bytes and files it may add to its writable
//! preopens, all of them together, charged at the host-call layer *before*
//! a write, a create or a growth is performed, so a single call cannot
//! overshoot. A call that would cross the limit is not performed: it traps,
//! and the run ends as `disk_limit`.
//!
//! Only what the task adds is counted: the quota starts at zero whatever
//! the writable directories already hold. A write is charged what it may
//! add to the file's apparent size (a sparse write far out is charged all
//! the way out); truncating and deleting give bytes and files back, never
//! below zero. The engines hook it in where they build their WASI context:
//! `quota/interp.rs` wraps wasi-common's directories and files for wasmi,
//! `jit/quota.rs` shadows the write-ish WASI functions on wasmtime's linker.

pub(crate) mod interp;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::Limits;

/// The message of the trap that ends a run at its disk limit.
pub(crate) const DISK_LIMIT: &str =
    "disk limit: the task tried to add more than its --disk or --files";

/// A call refused because it would cross the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{DISK_LIMIT}")]
pub(crate) struct Exceeded;

/// What one run may still add. Cheap to clone: every wrapped directory and
/// file of the run shares one.
#[derive(Clone, Debug)]
pub(crate) struct Quota(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Whether the run has a writable preopen at all: without one nothing
    /// can be charged, and the JIT skips the quota's bookkeeping. (The
    /// interpreter wraps only writable trees, so it never needs to ask.)
    watching: bool,
    max_bytes: u64,
    max_files: u64,
    bytes: AtomicU64,
    files: AtomicU64,
    hit: AtomicBool,
}

impl Quota {
    /// A fresh quota for a run with these limits, which has a writable
    /// preopen or not (`watching`).
    pub(crate) fn new(limits: &Limits, watching: bool) -> Self {
        Self(Arc::new(Inner {
            watching,
            max_bytes: limits.disk_bytes,
            max_files: limits.files,
            bytes: AtomicU64::new(0),
            files: AtomicU64::new(0),
            hit: AtomicBool::new(false),
        }))
    }

    /// Whether the run has a writable preopen, so that writes may be charged.
    #[cfg_attr(not(feature = "jit"), expect(dead_code))]
    pub(crate) fn watching(&self) -> bool {
        self.0.watching
    }

    /// Whether a call of this run was refused: the run ends as `disk_limit`.
    pub(crate) fn hit(&self) -> bool {
        self.0.hit.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes, or refuses (and remembers it) if they do not fit.
    pub(crate) fn charge_bytes(&self, n: u64) -> Result<(), Exceeded> {
        self.charge(&self.0.bytes, self.0.max_bytes, n)
    }

    /// Gives `n` bytes back (a truncation, a short write, a delete).
    pub(crate) fn credit_bytes(&self, n: u64) {
        credit(&self.0.bytes, n);
    }

    /// Takes one new file (or directory or link), or refuses.
    pub(crate) fn charge_file(&self) -> Result<(), Exceeded> {
        self.charge(&self.0.files, self.0.max_files, 1)
    }

    /// Gives a file back (its creation failed, or it was deleted).
    pub(crate) fn credit_file(&self) {
        credit(&self.0.files, 1);
    }

    fn charge(&self, used: &AtomicU64, max: u64, n: u64) -> Result<(), Exceeded> {
        let fits = used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
            now.checked_add(n).filter(|after| *after <= max)
        });
        match fits {
            Ok(_) => Ok(()),
            Err(_) => {
                self.0.hit.store(true, Ordering::Relaxed);
                Err(Exceeded)
            }
        }
    }
}

fn credit(used: &AtomicU64, n: u64) {
    // Never below zero: what was there before the run is not the task's to
    // give back.
    let _ = used.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
        Some(now.saturating_sub(n))
    });
}

/// What writing `len` bytes at `start` adds to a file of `size` bytes.
pub(crate) fn growth(size: u64, start: u64, len: u64) -> u64 {
    start.saturating_add(len).saturating_sub(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(bytes: u64, files: u64) -> Quota {
        Quota::new(
            &Limits {
                disk_bytes: bytes,
                files,
                ..Limits::default()
            },
            true,
        )
    }

    #[test]
    fn a_charge_that_would_cross_the_limit_is_refused_whole() {
        let q = quota(100, 2);
        assert_eq!(q.charge_bytes(60), Ok(()));
        assert!(!q.hit());
        assert_eq!(q.charge_bytes(41), Err(Exceeded));
        assert!(q.hit());
        assert_eq!(q.charge_bytes(40), Ok(()), "the refused 41 was not taken");
        assert_eq!(q.charge_bytes(u64::MAX), Err(Exceeded), "no overflow");
    }

    #[test]
    fn files_are_counted_and_given_back() {
        let q = quota(100, 2);
        assert_eq!(q.charge_file(), Ok(()));
        assert_eq!(q.charge_file(), Ok(()));
        assert_eq!(q.charge_file(), Err(Exceeded));
        q.credit_file();
        assert_eq!(q.charge_file(), Ok(()));
    }

    #[test]
    fn credits_never_go_below_zero() {
        let q = quota(100, 2);
        q.credit_bytes(1000);
        assert_eq!(q.charge_bytes(101), Err(Exceeded));
        assert_eq!(q.charge_bytes(100), Ok(()));
    }

    #[test]
    fn growth_is_what_a_write_adds_past_the_end() {
        assert_eq!(growth(0, 0, 10), 10);
        assert_eq!(growth(100, 0, 10), 0, "an overwrite adds nothing");
        assert_eq!(growth(100, 95, 10), 5);
        assert_eq!(
            growth(0, 1 << 40, 1),
            (1 << 40) + 1,
            "sparse: apparent size"
        );
        assert_eq!(growth(0, u64::MAX, 10), u64::MAX);
    }
}
