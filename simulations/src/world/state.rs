//! The world's ground truth, one record per event kind, run, device and job:
//! what the coordinator's view lags behind.

use std::collections::{BTreeSet, VecDeque};

use rand_chacha::ChaCha8Rng;

use super::clock::Micros;
use super::view::Why;

/// Something that happens at an instant; ties break by push order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Event {
    JobArrives(u32),
    OfferArrives(u32),
    RunEnds(u32),
    ResultArrives(u32),
    RefusalArrives(u32),
    LossArrives(u32),
    /// Every device of one gossip slot sends its advert.
    Gossip(u32),
    /// The adverts of one round of a slot arrive (batch id).
    GossipArrives(u64),
    /// A returning device's first advert.
    Rejoin(u32, u32),
    OwnerToggles(u32),
    HandBack(u32, u64),
    Departs(u32),
    DepartureNoticed(u32, u32),
    Returns(u32),
    Tick,
}

/// Where a run (one copy of a task sent to one device) is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RunState {
    Travelling,
    Queued,
    Running,
    Finished,
    Dropped,
}

/// One copy of a task offered to one device.
#[derive(Clone, Debug)]
pub(super) struct Run {
    pub(super) job: u32,
    pub(super) task: u32,
    pub(super) device: u32,
    pub(super) epoch: u32,
    pub(super) state: RunState,
    /// Why it came to nothing, once it did.
    pub(super) why: Why,
    /// The coordinator still waits to hear about it.
    pub(super) open: bool,
}

/// A device as it really is (the coordinator sees it through gossip).
pub(super) struct Device {
    pub(super) present: bool,
    pub(super) owner_busy: bool,
    /// Bumps on every departure: events of an earlier life are ignored.
    pub(super) epoch: u32,
    pub(super) running: BTreeSet<u32>,
    pub(super) queue: VecDeque<u32>,
    pub(super) owner_spell: u64,
    pub(super) rng: ChaCha8Rng,
    pub(super) adverts: u64,
}

impl Device {
    /// Every run on the device, running or waiting.
    pub(super) fn held(&self) -> Vec<u32> {
        self.running.iter().chain(&self.queue).copied().collect()
    }
}

/// A job that has arrived.
pub(super) struct Job {
    pub(super) arrival: Micros,
    pub(super) done: Vec<bool>,
    pub(super) remaining: u32,
    pub(super) finished: Option<Micros>,
    pub(super) given_up: u32,
}
