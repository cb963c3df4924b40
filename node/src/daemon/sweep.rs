//! The size bound's sweep (`corral up --cache-size`): now and then, off the
//! loop, the blob store, trees, work dirs and compiled modules are brought
//! under the bound, least recently used first, keeping every blob a job
//! this node coordinates or a task it holds needs, and the modules it
//! published.

use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use super::node::Node;

/// How often the sweep runs.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Node {
    /// Starts a sweep on a blocking thread, unless one still runs.
    pub(super) fn sweep_cache(&mut self) {
        if self.sweeping.0.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut pins = self.coord.pinned_blobs();
        pins.extend(self.worker.pinned_blobs());
        // A publisher keeps the modules it published: others fetch them
        // from it.
        pins.extend(self.published_modules());
        let blobs = self.blobs.clone();
        let compiled = self.config.data_dir.join("cache").join("modules");
        let limit = self.config.cache_size;
        let sweeping = self.sweeping.clone();
        tokio::task::spawn_blocking(move || {
            let swept = blobs.sweep(Some(&compiled), &pins, limit, SystemTime::now());
            if swept.removed > 0 {
                tracing::info!(
                    removed = swept.removed,
                    before = swept.before,
                    after = swept.after,
                    limit,
                    "cache swept, least recently used first"
                );
            }
            if swept.after > limit {
                tracing::info!(
                    held = swept.after,
                    limit,
                    "the cache is over --cache-size with what live jobs need or just used"
                );
            }
            sweeping.0.store(false, Ordering::Release);
        });
    }
}
