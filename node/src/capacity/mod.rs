//! This device's capacity and its owner's policy (DESIGN §5, §8): the host's
//! load without corral, free memory, AC or battery, and whether to accept
//! work (`--share idle|always|never`) with hysteresis so it does not flap.
//!
//! The rooms: the owner policy with hysteresis (`owner.rs`), readings
//! of the host from `/proc`, sysinfo and sysfs (`probe.rs`), the cgroup and
//! affinity limits a slot runs under (`cgroup.rs`), and the share of a core
//! that runs show (`run_share.rs`). The readings are plain sync functions
//! (`SystemLoad` is `Send + 'static`), so a caller may run them off its
//! event loop, in `spawn_blocking`.

mod cgroup;
mod owner;
mod probe;
mod run_share;

pub use cgroup::{CgroupMount, cgroup_mounts, slot_share, slot_share_here};
pub use owner::OwnerPolicy;
pub use probe::{SystemLoad, on_battery, thread_cpu_time, thread_cpu_time_of};
pub use run_share::RunShare;

/// `--share`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Share {
    /// Only while the owner is away (low load, on AC).
    Idle,
    /// Always, whatever the owner does.
    Always,
    /// Never: this device only submits.
    Never,
}

/// One reading of the host.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostSample {
    /// CPU use of everything but corral, percent of all cores.
    pub load_pct: f32,
    /// Running on battery.
    pub on_battery: bool,
}

/// Where readings come from (the real host, or a test's script).
pub trait LoadSource {
    /// Takes a reading.
    fn sample(&mut self) -> HostSample;
}
