//! Placement policies: corral's (the real `corral-scheduler` batch state
//! machine, driven exactly as the daemon's coordinator drives it) and the
//! baselines it is compared with. The baselines push every task to a device
//! as soon as it arrives (the device queues it), as schedulers without late
//! binding do; corral keeps a device at most one task beyond its slots.
//!
//! This file holds the [`Policy`] trait and the names; corral's policy is in
//! `corral`, the baselines in `push`.

mod corral;
mod push;

pub use corral::Corral;
pub use push::Push;

use crate::world::{Accepted, Micros, Placed, View, Why};
use push::Kind;

/// Every policy's name, in table order.
pub const NAMES: [&str; 5] = [
    "corral",
    "random",
    "round_robin",
    "least_loaded",
    "power_of_two",
];

/// What the world asks of a placement policy.
pub trait Policy {
    /// Its name in tables.
    fn name(&self) -> &'static str;
    /// A job of `tasks` tasks arrived.
    fn job_arrived(&mut self, job: u32, tasks: u32);
    /// A placement round.
    fn place(&mut self, view: &mut View<'_>, now: Micros) -> Placed;
    /// A result of `task` came back from `device`.
    fn on_result(&mut self, job: u32, task: u32, device: u32) -> Accepted;
    /// A run of `task` on `device` came to nothing, for the reason `why`.
    /// Returns tasks given up.
    fn on_lost(&mut self, job: u32, task: u32, device: u32, why: Why) -> Vec<(u32, u32)>;
    /// An advert of `device` arrived (`join`: it was not in the view).
    fn on_advert(&mut self, device: u32, join: bool) {
        let _ = (device, join);
    }
    /// Tasks a device of `slots` slots accepts at once (running + queued).
    fn worker_holds(&self, slots: u16) -> usize;
}

/// A policy by name.
pub fn by_name(name: &str, devices: usize, seed: u64) -> Option<Box<dyn Policy>> {
    let kind = match name {
        "corral" => return Some(Box::new(Corral::new(devices))),
        "random" => Kind::Random,
        "round_robin" => Kind::RoundRobin,
        "least_loaded" => Kind::LeastLoaded,
        "power_of_two" => Kind::PowerOfTwo,
        _ => return None,
    };
    Some(Box::new(Push::new(kind, devices, seed)))
}
