//! Locking shared by the node's threads.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking its data even if a thread panicked while holding
/// it: every structure behind these locks stays consistent between
/// statements, and a panicked runner must not stop the daemon.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
