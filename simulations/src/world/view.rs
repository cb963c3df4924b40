//! The policy's side of the world: what a policy may see ([`View`], [`Seen`])
//! and what it answers ([`Place`], [`Placed`], [`Accepted`], [`Why`]).

use std::collections::BTreeSet;

/// A device as the coordinator last heard of it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    /// In the view (an advert arrived and no departure was noticed since).
    pub known: bool,
    /// Its owner was away at the last advert (it shares).
    pub idle: bool,
    /// Tasks running or queued there at the last advert.
    pub load: u32,
}

/// What a policy may look at: static device facts and the coordinator's
/// view. Never the ground truth (except through `probe`, which costs bytes).
pub struct View<'a> {
    /// Per device: speed of one slot.
    pub speed: &'a [u64],
    /// Per device: slots.
    pub slots: &'a [u16],
    /// Per device: what the coordinator heard last.
    pub seen: &'a [Seen],
    /// Devices known and idle per the view, in index order.
    pub eligible: &'a BTreeSet<u32>,
    /// Devices that joined or left `eligible` since the last round (in
    /// the order it happened; a device may appear more than once).
    pub changed: &'a [u32],
    pub(super) truth_load: &'a [u32],
    pub(super) probes: &'a mut u64,
}

impl View<'_> {
    /// Asks a device for its current load (a real round trip in a real
    /// system: counted as probe bytes).
    pub fn probe(&mut self, device: u32) -> u32 {
        *self.probes += 1;
        self.truth_load[device as usize]
    }
}

/// A placement: run task `task` of job `job` on `device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The job.
    pub job: u32,
    /// The task.
    pub task: u32,
    /// The device.
    pub device: u32,
}

/// Why a run came to nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// The device was busy (its owner is back, or no slot): it refused or
    /// handed the task back.
    Busy,
    /// The device left, crashed or could not be reached.
    Lost,
}

/// What a policy's placement round produced.
#[derive(Default)]
pub struct Placed {
    /// Offers to send.
    pub places: Vec<Place>,
    /// Runs to cancel.
    pub cancels: Vec<Place>,
    /// Tasks the policy gave up on.
    pub given_up: Vec<(u32, u32)>,
}

/// What a result led to.
#[derive(Default)]
pub struct Accepted {
    /// The result is the task's (first) result.
    pub accepted: bool,
    /// Other copies to cancel.
    pub cancels: Vec<Place>,
}
