//! Scenario files (`simulations/scenarios/*.toml`): the devices, their
//! owners, churn, gossip, the network and the jobs. Every number is bounded
//! and checked; a bad file gets an error naming the field.

use serde::Deserialize;

/// Most devices a scenario may have.
pub const MAX_DEVICES: u32 = 100_000;
/// Most tasks over all jobs.
pub const MAX_TASKS: u64 = 10_000_000;

/// A whole scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name, for tables and plots.
    pub name: String,
    /// What it shows.
    #[serde(default)]
    pub description: String,
    /// The seed when `--seed` is not given.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Device classes and how many of each.
    pub classes: Vec<Class>,
    /// Owners using their devices.
    #[serde(default)]
    pub owners: Owners,
    /// Devices joining, leaving and crashing.
    #[serde(default)]
    pub churn: Churn,
    /// Capacity gossip.
    #[serde(default)]
    pub gossip: Gossip,
    /// Message latency and scheduling cadence.
    #[serde(default)]
    pub network: Network,
    /// The jobs.
    pub jobs: Vec<JobSpec>,
}

fn default_seed() -> u64 {
    1
}

/// A kind of device.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Class {
    /// e.g. `pi-zero-2`.
    pub name: String,
    /// How many.
    pub count: u32,
    /// Calibrated speed of one slot (a desktop JIT is about 100).
    pub speed: u32,
    /// Task slots.
    pub slots: u16,
    /// `jit` or `interp`: what the class runs on (its `speed` already says
    /// how fast; the simulator runs each task once, with no `--verify`).
    #[serde(default = "default_engine")]
    pub engine: String,
    /// CPU architecture.
    #[serde(default = "default_arch")]
    pub arch: String,
}

fn default_engine() -> String {
    "jit".into()
}

fn default_arch() -> String {
    "x86_64".into()
}

/// Owners alternate between away (the device shares) and at the device (it
/// does not); each spell is exponentially distributed. Missing fields take
/// their `Default`.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Owners {
    /// Mean time an owner stays at the device, seconds (0: owners never come).
    pub mean_busy_s: f64,
    /// Mean time the device is left idle, seconds.
    pub mean_idle_s: f64,
    /// Seconds a running task may go on after the owner is back before it is
    /// handed back to the coordinator.
    pub grace_s: f64,
}

impl Default for Owners {
    fn default() -> Self {
        Self {
            mean_busy_s: 0.0,
            mean_idle_s: 3600.0,
            grace_s: 0.0,
        }
    }
}

/// Devices come and go.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Churn {
    /// Departures per device per hour (0: none).
    pub leaves_per_device_hour: f64,
    /// Of those, the share that crash (no goodbye; found out after
    /// `gossip.detect_s`) rather than leave gracefully.
    pub crash_fraction: f64,
    /// Mean time away before the device comes back, seconds.
    pub mean_away_s: f64,
}

impl Default for Churn {
    fn default() -> Self {
        Self {
            leaves_per_device_hour: 0.0,
            crash_fraction: 0.0,
            mean_away_s: 300.0,
        }
    }
}

/// Capacity adverts: how often, how late, how lossy.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Gossip {
    /// Seconds between a device's adverts.
    pub interval_s: f64,
    /// Mean delay from a device to the coordinator's view, milliseconds.
    pub delay_ms: f64,
    /// Chance that an advert never arrives.
    pub loss: f64,
    /// Seconds until a crashed device is out of the view (missed adverts).
    pub detect_s: f64,
    /// Gossipsub mesh degree: each advert is sent on by every device to
    /// this many others.
    pub mesh_degree: u32,
}

impl Default for Gossip {
    fn default() -> Self {
        Self {
            interval_s: 1.0,
            delay_ms: 20.0,
            loss: 0.0,
            detect_s: 3.0,
            mesh_degree: 6,
        }
    }
}

/// The network between coordinator and workers.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// One-way message latency, milliseconds.
    pub latency_ms: f64,
    /// The coordinator places work at most this often, milliseconds.
    pub schedule_every_ms: f64,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            latency_ms: 1.0,
            schedule_every_ms: 20.0,
        }
    }
}

/// A stream of batch jobs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// How many jobs of this kind.
    #[serde(default = "one")]
    pub count: u32,
    /// Tasks per job.
    pub tasks: u32,
    /// When the first arrives, seconds.
    #[serde(default)]
    pub start_s: f64,
    /// Mean time between arrivals (exponential), seconds.
    #[serde(default)]
    pub interarrival_s: f64,
    /// Task sizes, in seconds on a speed-100 slot.
    pub size: Size,
}

fn one() -> u32 {
    1
}

/// A distribution of task sizes (seconds on a speed-100 slot).
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "dist", rename_all = "snake_case", deny_unknown_fields)]
pub enum Size {
    /// Uniform between `min` and `max`.
    Uniform {
        /// Smallest.
        min: f64,
        /// Largest.
        max: f64,
    },
    /// `small` with chance `1 - p_large`, else `large`.
    Bimodal {
        /// The common size.
        small: f64,
        /// The rare size.
        large: f64,
        /// Chance of `large`.
        p_large: f64,
    },
    /// Pareto with scale `min` and shape `alpha`, capped at `max`.
    Pareto {
        /// Scale (the smallest size).
        min: f64,
        /// Shape (smaller: heavier tail).
        alpha: f64,
        /// Cap.
        max: f64,
    },
}

/// A scenario that does not make sense, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    field: String,
    reason: String,
}

fn check(ok: bool, field: &str, reason: &str) -> Result<(), Invalid> {
    if ok {
        Ok(())
    } else {
        Err(Invalid {
            field: field.into(),
            reason: reason.into(),
        })
    }
}

fn finite(v: f64, lo: f64, hi: f64, field: &str) -> Result<(), Invalid> {
    check(
        v.is_finite() && v >= lo && v <= hi,
        field,
        &format!("{v} is not in {lo}..={hi}"),
    )
}

impl Scenario {
    /// Parses and checks a scenario file's text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let scenario: Self = toml::from_str(text)?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Every bound, with the field that broke it.
    pub fn validate(&self) -> Result<(), Invalid> {
        check(
            !self.name.is_empty() && self.name.len() <= 64,
            "name",
            "must be 1..=64 characters",
        )?;
        check(!self.classes.is_empty(), "classes", "at least one class")?;
        let mut devices = 0u64;
        for (i, c) in self.classes.iter().enumerate() {
            let f = |s: &str| format!("classes[{i}].{s}");
            check(
                !c.name.is_empty() && c.name.len() <= 32,
                &f("name"),
                "1..=32 characters",
            )?;
            check(
                (1..=1_000_000).contains(&c.speed),
                &f("speed"),
                "must be 1..=1000000",
            )?;
            check((1..=256).contains(&c.slots), &f("slots"), "must be 1..=256")?;
            check(
                c.engine == "jit" || c.engine == "interp",
                &f("engine"),
                "must be jit or interp",
            )?;
            devices += u64::from(c.count);
        }
        check(
            (1..=u64::from(MAX_DEVICES)).contains(&devices),
            "classes",
            &format!("{devices} devices in all; must be 1..={MAX_DEVICES}"),
        )?;
        finite(self.owners.mean_busy_s, 0.0, 1e7, "owners.mean_busy_s")?;
        finite(self.owners.mean_idle_s, 1.0, 1e7, "owners.mean_idle_s")?;
        finite(self.owners.grace_s, 0.0, 1e5, "owners.grace_s")?;
        finite(
            self.churn.leaves_per_device_hour,
            0.0,
            100.0,
            "churn.leaves_per_device_hour",
        )?;
        finite(self.churn.crash_fraction, 0.0, 1.0, "churn.crash_fraction")?;
        finite(self.churn.mean_away_s, 1.0, 1e7, "churn.mean_away_s")?;
        finite(self.gossip.interval_s, 0.01, 3600.0, "gossip.interval_s")?;
        finite(self.gossip.delay_ms, 0.0, 60_000.0, "gossip.delay_ms")?;
        finite(self.gossip.loss, 0.0, 0.99, "gossip.loss")?;
        finite(self.gossip.detect_s, 0.0, 3600.0, "gossip.detect_s")?;
        check(
            (1..=64).contains(&self.gossip.mesh_degree),
            "gossip.mesh_degree",
            "must be 1..=64",
        )?;
        finite(self.network.latency_ms, 0.0, 60_000.0, "network.latency_ms")?;
        finite(
            self.network.schedule_every_ms,
            0.1,
            60_000.0,
            "network.schedule_every_ms",
        )?;
        check(!self.jobs.is_empty(), "jobs", "at least one job")?;
        let mut tasks = 0u64;
        for (i, j) in self.jobs.iter().enumerate() {
            let f = |s: &str| format!("jobs[{i}].{s}");
            check(
                (1..=100_000).contains(&j.count),
                &f("count"),
                "must be 1..=100000",
            )?;
            check(
                (1..=10_000_000).contains(&j.tasks),
                &f("tasks"),
                "must be 1..=10000000",
            )?;
            finite(j.start_s, 0.0, 1e7, &f("start_s"))?;
            finite(j.interarrival_s, 0.0, 1e7, &f("interarrival_s"))?;
            match j.size {
                Size::Uniform { min, max } => {
                    finite(min, 1e-6, 1e6, &f("size.min"))?;
                    finite(max, min, 1e6, &f("size.max"))?;
                }
                Size::Bimodal {
                    small,
                    large,
                    p_large,
                } => {
                    finite(small, 1e-6, 1e6, &f("size.small"))?;
                    finite(large, 1e-6, 1e6, &f("size.large"))?;
                    finite(p_large, 0.0, 1.0, &f("size.p_large"))?;
                }
                Size::Pareto { min, alpha, max } => {
                    finite(min, 1e-6, 1e6, &f("size.min"))?;
                    finite(alpha, 0.1, 100.0, &f("size.alpha"))?;
                    finite(max, min, 1e6, &f("size.max"))?;
                }
            }
            tasks += u64::from(j.count) * u64::from(j.tasks);
        }
        check(
            tasks <= MAX_TASKS,
            "jobs",
            &format!("{tasks} tasks in all; at most {MAX_TASKS}"),
        )?;
        Ok(())
    }
}
