//! The signal another thread gives a run to stop early, and why: the
//! coordinator cancelled the task, or the worker hands it back to its
//! coordinator (the owner came back, the device is leaving). Guest code sees
//! it at the next epoch tick or fuel slice; a host call waiting on a clock
//! or on stdin is woken by it at once.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::sync::lock;

/// Why a run was told to stop before its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The coordinator no longer wants the task.
    Cancelled,
    /// The worker gives the task back to its coordinator.
    HandedBack,
}

impl StopReason {
    /// The trap message a run stopped for this reason ends with.
    pub fn message(self) -> &'static str {
        match self {
            StopReason::Cancelled => "cancelled: the task is no longer wanted",
            StopReason::HandedBack => "handed back: the task is given back to its coordinator",
        }
    }

    fn code(self) -> u8 {
        match self {
            StopReason::Cancelled => 1,
            StopReason::HandedBack => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(StopReason::Cancelled),
            2 => Some(StopReason::HandedBack),
            _ => None,
        }
    }
}

/// A stop signal shared by a run and whoever may stop it. Reading it is one
/// relaxed atomic load (the epoch callback and fuel slices do it); the first
/// reason given is the one kept.
#[derive(Debug, Default)]
pub struct StopSignal {
    reason: AtomicU8,
    lock: Mutex<()>,
    wake: Condvar,
}

impl StopSignal {
    /// A signal not given yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tells the run to stop for `reason` and wakes it if it waits in a host
    /// call. Whether this call gave the signal (false: it was given before,
    /// and its first reason stands).
    pub fn stop(&self, reason: StopReason) -> bool {
        let given = self
            .reason
            .compare_exchange(0, reason.code(), Ordering::Relaxed, Ordering::Relaxed)
            .is_ok();
        // Taking the lock orders this after a waiter's check of the reason
        // and before its wait: the notification cannot be missed.
        drop(lock(&self.lock));
        self.wake.notify_all();
        given
    }

    /// Why the run was told to stop, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        StopReason::from_code(self.reason.load(Ordering::Relaxed))
    }

    /// Whether the run was told to stop.
    pub fn is_stopped(&self) -> bool {
        self.reason().is_some()
    }

    /// Waits up to `span` for the signal; its reason if given.
    pub(crate) fn wait(&self, span: Duration) -> Option<StopReason> {
        let guard = lock(&self.lock);
        if let Some(reason) = self.reason() {
            return Some(reason);
        }
        let _unused = self
            .wake
            .wait_timeout(guard, span)
            .unwrap_or_else(|e| e.into_inner());
        self.reason()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;

    #[test]
    fn the_first_reason_stands() {
        let signal = StopSignal::new();
        assert_eq!(signal.reason(), None);
        assert!(signal.stop(StopReason::HandedBack));
        assert!(!signal.stop(StopReason::Cancelled));
        assert_eq!(signal.reason(), Some(StopReason::HandedBack));
    }

    #[test]
    fn a_waiter_wakes_when_the_signal_is_given() {
        let signal = Arc::new(StopSignal::new());
        let giver = signal.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            giver.stop(StopReason::Cancelled);
        });
        let mut reason = None;
        while reason.is_none() && started.elapsed() < Duration::from_secs(30) {
            reason = signal.wait(Duration::from_secs(30));
        }
        thread.join().expect("giver");
        assert_eq!(reason, Some(StopReason::Cancelled));
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
