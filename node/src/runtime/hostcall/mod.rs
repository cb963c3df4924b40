//! Engine-neutral pieces of the host calls corral answers itself instead of
//! the WASI implementations: those that may wait (`poll_oneoff` on a clock,
//! `fd_read` on a stdin that can block). wasmtime-wasi and wasmi_wasi wait
//! in one blocking call, where neither the epoch nor fuel can reach them;
//! these wait for at most the run's deadline and wake when it is stopped.
//!
//! The rooms: this file holds a run's [`HostState`] and its [`Limit`];
//! `poll.rs` reads `poll_oneoff`'s subscriptions from guest memory and
//! writes its events; `read.rs` is `fd_read` on stdin; `stdin.rs` the
//! stdin stream a reader thread fills.

pub(crate) mod poll;
pub(crate) mod read;
pub(crate) mod stdin;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use self::stdin::StdinStream;
use super::stop::{StopReason, StopSignal};
use super::{RunSpec, Stdin};

/// Why a host call ends the run instead of returning to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Halt {
    /// The run's wall-clock deadline passed.
    #[error("the run timed out")]
    Timeout,
    /// Another thread stopped the run.
    #[error("{}", .0.message())]
    Stopped(StopReason),
}

impl wasmi_core::HostError for Halt {}

/// When a run must end: its deadline, and the signal that stops it early.
#[derive(Clone, Debug)]
pub(crate) struct Limit {
    /// The wall-clock deadline.
    pub(crate) deadline: Instant,
    /// Given by whoever may stop the run.
    pub(crate) stop: Option<Arc<StopSignal>>,
}

/// The longest a wait on stdin goes between looks at the stop signal (the
/// stdin stream and the stop signal have a condition variable each).
const SLICE: Duration = Duration::from_millis(10);

impl Limit {
    /// Whether the run must end now, and why.
    pub(crate) fn check(&self) -> Result<(), Halt> {
        if Instant::now() >= self.deadline {
            return Err(Halt::Timeout);
        }
        match self.stop.as_ref().and_then(|s| s.reason()) {
            Some(reason) => Err(Halt::Stopped(reason)),
            None => Ok(()),
        }
    }

    /// Waits until `wake` (none: no clock), or until `stdin` (if given)
    /// has bytes or its end to read, whichever comes first; fails if the
    /// run must end before.
    pub(crate) fn wait(
        &self,
        wake: Option<Instant>,
        stdin: Option<&StdinStream>,
    ) -> Result<(), Halt> {
        loop {
            self.check()?;
            let now = Instant::now();
            if wake.is_some_and(|w| now >= w) || stdin.is_some_and(StdinStream::readable) {
                return Ok(());
            }
            let until = wake.map_or(self.deadline, |w| w.min(self.deadline));
            let span = until.saturating_duration_since(now);
            match (stdin, &self.stop) {
                (Some(stdin), _) => stdin.wait_readable(span.min(SLICE)),
                (None, Some(stop)) => {
                    stop.wait(span);
                }
                (None, None) => std::thread::sleep(span),
            }
        }
    }
}

/// What corral's own host calls need of a run, kept in its store.
pub(crate) struct HostState {
    /// When the run must end.
    pub(crate) limit: Limit,
    /// The guest's stdin when reading it may block (a stream), else none
    /// (the WASI implementation answers).
    pub(crate) stdin: Option<StdinStream>,
    /// The origin of the guest's monotonic clock: the WASI context's
    /// creation (both implementations count from it), taken just after it,
    /// so an absolute monotonic wake-up is never early.
    pub(crate) monotonic_origin: Instant,
    /// Whether `poll_oneoff` answers subscriptions on stdio itself (always
    /// ready): for a WASI implementation that cannot poll its pipes.
    pub(crate) ready_stdio: bool,
    /// The fd the stdin stream is at: 0 until the guest closes or
    /// renumbers it (the number may then be given to a file, which must
    /// not read from the stream).
    pub(crate) stdin_fd: Option<u32>,
}

impl HostState {
    /// A run's state, made just after its WASI context (whose creation is
    /// the origin of the guest's monotonic clock).
    pub(crate) fn new(spec: &RunSpec, deadline: Instant, ready_stdio: bool) -> Self {
        Self {
            limit: Limit {
                deadline,
                stop: spec.cancel.clone(),
            },
            stdin: match &spec.stdin {
                Stdin::Inherit => Some(StdinStream::process()),
                Stdin::Stream(stream) => Some(stream.clone()),
                Stdin::Empty | Stdin::Bytes(_) => None,
            },
            monotonic_origin: Instant::now(),
            ready_stdio,
            stdin_fd: Some(0),
        }
    }

    /// The stdin stream, if the guest's `fd` is where it is now.
    pub(crate) fn stdin_at(&self, fd: u32) -> Option<&StdinStream> {
        self.stdin.as_ref().filter(|_| self.stdin_fd == Some(fd))
    }

    /// The guest closed `fd`: if it was stdin, the stream is no longer at any fd.
    pub(crate) fn fd_closed(&mut self, fd: u32) {
        if self.stdin_fd == Some(fd) {
            self.stdin_fd = None;
        }
    }

    /// The guest renumbered `from` onto `to`: stdin moves with it, or is
    /// closed when another fd replaces it.
    pub(crate) fn fd_renumbered(&mut self, from: u32, to: u32) {
        if from == to {
            return;
        }
        if self.stdin_fd == Some(from) {
            self.stdin_fd = Some(to);
        } else if self.stdin_fd == Some(to) {
            self.stdin_fd = None;
        }
    }
}
