//! The epoch ticker: one thread advancing the engines' epoch every
//! [`TICK`] while a run goes on (so a run's deadline callback can check its
//! clock and cancel flag), asleep while none does, and the guard a run holds.

use std::sync::{Arc, Condvar, Mutex};

use wasmtime::Engine;

use crate::runtime::TICK;
use crate::sync::lock;

/// What the epoch ticker advances, and whether it needs to: an idle daemon
/// has no run to time out, so its ticker sleeps instead of waking 200 times
/// a second (which, on a small device, costs power, and on any device
/// competes with the event loop for a core).
#[derive(Default)]
pub(super) struct Ticker {
    /// The engines it advances, added to as they are made.
    pub(super) engines: Mutex<Vec<Engine>>,
    /// Runs going on now, and whether the engine is gone.
    state: Mutex<TickState>,
    wake: Condvar,
}

#[derive(Default)]
struct TickState {
    runs: usize,
    closed: bool,
}

pub(super) type Ticking = Arc<Ticker>;

impl Ticker {
    /// Marks a run as going on until the guard is dropped.
    pub(super) fn run(&self) -> TickGuard<'_> {
        lock(&self.state).runs += 1;
        self.wake.notify_one();
        TickGuard(self)
    }

    /// Ends the ticker thread: the engines are gone.
    pub(super) fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_one();
    }
}

/// A run the epoch ticker keeps ticking for.
pub(super) struct TickGuard<'a>(&'a Ticker);

impl Drop for TickGuard<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.runs = state.runs.saturating_sub(1);
    }
}

/// One thread per engine set advances the engines' epoch every [`TICK`]
/// while a run goes on; each tick a running store's deadline callback checks
/// its clock and cancel flag. With no run it sleeps until one starts.
pub(super) fn spawn_epoch_ticker(ticker: Ticking) {
    let spawned = std::thread::Builder::new()
        .name("corral-epoch".into())
        .spawn(move || {
            loop {
                {
                    let mut state = lock(&ticker.state);
                    while state.runs == 0 && !state.closed {
                        state = ticker.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                    if state.closed {
                        return;
                    }
                }
                std::thread::sleep(TICK);
                for engine in lock(&ticker.engines).iter() {
                    engine.increment_epoch();
                }
            }
        });
    if let Err(e) = spawned {
        // Without the ticker timeouts cannot fire; say so loudly.
        tracing::error!("cannot start the epoch ticker thread, timeouts will not work: {e}");
    }
}
