//! This device's capacity and its owner's policy (DESIGN §5, §8): the host's
//! load without corral, free memory, AC or battery, and whether to accept
//! work (`--share idle|always|never`) with hysteresis so it does not flap.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use corral_protocol::capacity::OwnerState;

/// `--share`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
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

/// Above this load (for `BUSY_SAMPLES` readings in a row) the owner is busy.
const BUSY_LOAD_PCT: f32 = 50.0;
/// Below this load (for `IDLE_SAMPLES` readings in a row) the owner is away.
const IDLE_LOAD_PCT: f32 = 25.0;
const BUSY_SAMPLES: u32 = 2;
const IDLE_SAMPLES: u32 = 5;

/// The owner policy with hysteresis: quick to step back when the owner comes
/// back, slow to take work again.
#[derive(Debug)]
pub struct OwnerPolicy {
    share: Share,
    state: OwnerState,
    high: u32,
    low: u32,
}

impl OwnerPolicy {
    /// A policy starting idle (or busy for `--share never`).
    pub fn new(share: Share) -> Self {
        Self {
            share,
            state: if share == Share::Never {
                OwnerState::Busy
            } else {
                OwnerState::Idle
            },
            high: 0,
            low: 0,
        }
    }

    /// The current state.
    pub fn state(&self) -> OwnerState {
        self.state
    }

    /// Marks the device as leaving; no reading changes that.
    pub fn drain(&mut self) {
        self.state = OwnerState::Draining;
    }

    /// Feeds one reading; returns the (possibly new) state.
    pub fn update(&mut self, sample: HostSample) -> OwnerState {
        if self.state == OwnerState::Draining {
            return self.state;
        }
        match self.share {
            Share::Always => self.state = OwnerState::Idle,
            Share::Never => self.state = OwnerState::Busy,
            Share::Idle => {
                let busy_now = sample.on_battery || sample.load_pct > BUSY_LOAD_PCT;
                let idle_now = !sample.on_battery && sample.load_pct < IDLE_LOAD_PCT;
                self.high = if busy_now { self.high + 1 } else { 0 };
                self.low = if idle_now { self.low + 1 } else { 0 };
                if self.state == OwnerState::Idle
                    && (self.high >= BUSY_SAMPLES || sample.on_battery)
                {
                    self.state = OwnerState::Busy;
                } else if self.state == OwnerState::Busy && self.low >= IDLE_SAMPLES {
                    self.state = OwnerState::Idle;
                }
            }
        }
        self.state
    }
}

/// The real host, through sysinfo and `/sys/class/power_supply`.
pub struct SystemLoad {
    system: Option<sysinfo::System>,
    me: sysinfo::Pid,
    cores: f32,
    /// A test switch (`CORRAL_TEST_HOST_LOAD=FILE`): the host's load is the
    /// number in FILE, read at every sample, instead of the CPU's; the rest
    /// of the owner policy (hysteresis, grace period, hand-back) is real.
    load_file: Option<std::path::PathBuf>,
}

impl SystemLoad {
    /// Starts measuring (the first reading covers the time since this call).
    pub fn new() -> Self {
        // Without a readable /proc the load is reported as 0: the policy
        // then follows --share alone.
        let mut system = sysinfo::System::new().ok();
        if let Some(s) = system.as_mut() {
            s.refresh_cpu_usage();
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f32;
        // Only builds with the `test-hooks` feature (the tests') honour it.
        let load_file = if cfg!(feature = "test-hooks") {
            std::env::var_os("CORRAL_TEST_HOST_LOAD").map(std::path::PathBuf::from)
        } else {
            None
        };
        if load_file.is_some() {
            tracing::warn!(
                "CORRAL_TEST_HOST_LOAD: the host load is read from a file (a test switch)"
            );
        }
        Self {
            system,
            me: sysinfo::Pid::from_u32(std::process::id()),
            cores,
            load_file,
        }
    }

    /// Free memory, MiB.
    pub fn free_memory_mib(&mut self) -> u32 {
        let Some(system) = self.system.as_mut() else {
            return 0;
        };
        system.refresh_memory();
        u32::try_from(system.available_memory() / (1024 * 1024)).unwrap_or(u32::MAX)
    }
}

impl Default for SystemLoad {
    fn default() -> Self {
        Self::new()
    }
}

impl LoadSource for SystemLoad {
    fn sample(&mut self) -> HostSample {
        if let Some(file) = &self.load_file {
            let load = std::fs::read_to_string(file)
                .ok()
                .and_then(|t| t.trim().parse::<f32>().ok())
                .unwrap_or(0.0);
            return HostSample {
                load_pct: load.clamp(0.0, 100.0),
                on_battery: false,
            };
        }
        let (total, own) = match self.system.as_mut() {
            Some(system) => {
                system.refresh_cpu_usage();
                system.refresh_processes(sysinfo::ProcessesToUpdate::Some(&[self.me]), true);
                // corral's own share: its process CPU is in percent of one core.
                let own = system
                    .process(self.me)
                    .map_or(0.0, |p| p.cpu_usage() / self.cores);
                (system.global_cpu_usage(), own)
            }
            None => (0.0, 0.0),
        };
        HostSample {
            load_pct: (total - own).clamp(0.0, 100.0),
            on_battery: on_battery(Path::new("/sys/class/power_supply")),
        }
    }
}

/// True when the host has a battery and no mains supply online.
pub fn on_battery(power_supply: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(power_supply) else {
        return false;
    };
    let mut has_battery = false;
    let mut mains_online = false;
    for entry in entries.flatten() {
        let kind = std::fs::read_to_string(entry.path().join("type")).unwrap_or_default();
        match kind.trim() {
            "Battery" => has_battery = true,
            "Mains" | "USB" => {
                let online =
                    std::fs::read_to_string(entry.path().join("online")).unwrap_or_default();
                mains_online |= online.trim() == "1";
            }
            _ => {}
        }
    }
    has_battery && !mains_online
}

/// The CPUs this process may use by its cgroup's CPU bandwidth limit (a
/// systemd `CPUQuota=`, a container's `--cpus`): the least over its own
/// group and every parent, under cgroup v2 (`cpu.max`) or v1's cpu
/// controller (`cpu.cfs_quota_us` / `cpu.cfs_period_us`), or `None` without
/// a limit.
fn cgroup_cpus() -> Option<f64> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let (mount, mut dir, version) = cpu_cgroup_dir(&mounts, &own)?;
    let mut least: Option<f64> = None;
    loop {
        let cpus = match version {
            Cgroup::V2 => std::fs::read_to_string(dir.join("cpu.max"))
                .ok()
                .and_then(|max| parse_cpu_max(&max)),
            Cgroup::V1 => {
                let quota = std::fs::read_to_string(dir.join("cpu.cfs_quota_us"));
                let period = std::fs::read_to_string(dir.join("cpu.cfs_period_us"));
                match (quota, period) {
                    (Ok(q), Ok(p)) => parse_cpu_max(&format!("{} {}", q.trim(), p.trim())),
                    _ => None,
                }
            }
        };
        if let Some(cpus) = cpus {
            least = Some(least.map_or(cpus, |l| l.min(cpus)));
        }
        if dir == mount || !dir.pop() {
            return least;
        }
    }
}

/// Which cgroup hierarchy holds the CPU limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cgroup {
    V1,
    V2,
}

/// A cgroup hierarchy as mounted here (a line of `/proc/self/mountinfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    /// The hierarchy's path shown at the mount point (`/`, or a container's
    /// own group).
    pub root: PathBuf,
    /// Where it is mounted.
    pub point: PathBuf,
    /// cgroup v1's controllers (e.g. `cpu`, `cpuacct`); empty for v2.
    pub controllers: Vec<String>,
    /// cgroup v2.
    pub v2: bool,
}

/// The cgroup hierarchies in `mountinfo` ("ID PARENT MAJ:MIN ROOT
/// MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER-OPTIONS").
pub fn cgroup_mounts(mountinfo: &str) -> Vec<CgroupMount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (front, back) = line.split_once(" - ")?;
            let mut front = front.split(' ').skip(3);
            let (root, point) = (front.next()?, front.next()?);
            let mut back = back.split(' ');
            let (fstype, options) = (back.next()?, back.nth(1).unwrap_or(""));
            let v2 = match fstype {
                "cgroup2" => true,
                "cgroup" => false,
                _ => return None,
            };
            let controllers = if v2 {
                Vec::new()
            } else {
                options
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                    .map(String::from)
                    .collect()
            };
            Some(CgroupMount {
                root: PathBuf::from(unescape(root)),
                point: PathBuf::from(unescape(point)),
                controllers,
                v2,
            })
        })
        .collect()
}

impl CgroupMount {
    /// A v1 hierarchy with the cpu controller.
    pub fn has_v1_cpu(&self) -> bool {
        self.controllers.iter().any(|c| c == "cpu")
    }
}

/// Where this process's CPU cgroup is: the hierarchy's mount point, the
/// process's group directory under it, and the version, from
/// `/proc/self/mountinfo` and `/proc/self/cgroup`. A v1 hierarchy with the
/// cpu controller wins over v2 (on a hybrid host v2 has no cpu controller).
fn cpu_cgroup_dir(mountinfo: &str, own: &str) -> Option<(PathBuf, PathBuf, Cgroup)> {
    let mut v2 = None;
    for mount in cgroup_mounts(mountinfo) {
        let version = match (mount.v2, mount.has_v1_cpu()) {
            (true, _) => Cgroup::V2,
            (false, true) => Cgroup::V1,
            (false, false) => continue,
        };
        // The process's path in that hierarchy ("ID:CONTROLLERS:PATH"; v2 is
        // "0::PATH").
        let path = own.lines().find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            let wanted = match version {
                Cgroup::V2 => controllers.is_empty(),
                Cgroup::V1 => controllers.split(',').any(|c| c == "cpu"),
            };
            wanted.then_some(path)
        });
        let Some(path) = path else { continue };
        // A mount of a sub-tree (a container's view) shows paths below its
        // root.
        let path = Path::new(path);
        let below = path.strip_prefix(&mount.root).unwrap_or(path);
        let dir = mount.point.join(below.strip_prefix("/").unwrap_or(below));
        match version {
            Cgroup::V1 => return Some((mount.point, dir, version)),
            Cgroup::V2 => v2 = v2.or(Some((mount.point, dir, version))),
        }
    }
    v2
}

/// A mountinfo field with its octal escapes (`\040` for a space) undone.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cores this process may run on (its CPU affinity), before any
/// bandwidth limit (which `available_parallelism` already rounds down).
fn cores_allowed() -> Option<usize> {
    let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).ok()?;
    let count = (0..nix::sched::CpuSet::count())
        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
        .count();
    (count > 0).then_some(count)
}

/// `cpu.max` ("QUOTA PERIOD" in microseconds, or "max PERIOD") as CPUs.
fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    (quota > 0.0 && period > 0.0).then(|| quota / period)
}

/// What one of `slots` slots gets here of the CPU it was calibrated on
/// (see [`slot_share`]): from this process's CPU affinity and cgroup.
pub fn slot_share_here(slots: u16) -> f64 {
    let cores = cores_allowed()
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    slot_share(slots, cores, cgroup_cpus())
}

/// What one slot gets of the CPU it was calibrated on: all of it, unless
/// the slots share fewer CPUs (a cgroup limit of `cpus`, or fewer cores
/// than slots).
pub fn slot_share(slots: u16, cores: usize, cpus: Option<f64>) -> f64 {
    let usable = cpus.map_or(cores as f64, |c| c.min(cores as f64));
    (usable / f64::from(slots.max(1))).min(1.0)
}

/// Runs shorter than this say little about the CPU (a thread's wake-up
/// and the clock's grain are a large part of them).
const SHARE_MIN_RUN: Duration = Duration::from_millis(50);
/// Run time that moves the estimate halfway to what it showed: the
/// estimate follows the last few seconds of running, however they were cut
/// into tasks.
const SHARE_HALF_LIFE: Duration = Duration::from_millis(500);
/// A run still going is counted a second at a time (a task of an hour on
/// a device slowed in its first minute shows it then, not at its end).
const SHARE_SAMPLE: Duration = Duration::from_secs(1);
/// An estimate older than this is dropped: the device may be another one
/// by now (its owner's load, a cgroup limit changed), and the share read
/// at start-up is used again until a run says otherwise.
const SHARE_MAX_AGE: Duration = Duration::from_secs(600);

/// What the tasks run here show of a slot's share of a core: the CPU time
/// a task's thread got over the wall time it ran. A device throttled after
/// start-up (a cgroup limit set later, other work on its cores, `--share
/// always` while its owner works) advertises what its slots do now, not
/// what they did when corral started. Frequency changes (thermal limits)
/// are not seen: a throttled core's CPU time still counts in full.
///
/// Runs still going are counted a second at a time ([`RunShare::sample`]),
/// the rest when they end.
#[derive(Clone, Debug, Default)]
pub struct RunShare {
    estimate: Option<(f64, Instant)>,
    /// The runs going now, by thread id: when each was last counted (its
    /// start at first) and the thread's CPU time then.
    running: HashMap<i32, (Instant, Duration)>,
}

impl RunShare {
    /// A run starts on thread `tid` at `at`, the thread having used `cpu`.
    pub fn started(&mut self, tid: i32, at: Instant, cpu: Duration) {
        self.running.insert(tid, (at, cpu));
    }

    /// The run on thread `tid` ended at `at`, the thread having used `cpu`:
    /// what [`RunShare::sample`] had not counted of it is counted.
    pub fn ended(&mut self, tid: i32, at: Instant, cpu: Duration) {
        let (from, cpu_from) = self.running.remove(&tid).unwrap_or((at, cpu));
        self.observe(
            cpu.saturating_sub(cpu_from),
            at.saturating_duration_since(from),
            at,
        );
    }

    /// Counts the runs going for [`SHARE_SAMPLE`] or more since they were
    /// last counted, up to `now` (a thread's CPU time from `cpu_of`), and
    /// returns the share runs showed lately, if any did.
    pub fn sample(
        &mut self,
        now: Instant,
        cpu_of: impl Fn(i32) -> Option<Duration>,
    ) -> Option<f64> {
        let mut counted = Vec::new();
        for (&tid, (since, cpu)) in &mut self.running {
            if now.saturating_duration_since(*since) < SHARE_SAMPLE {
                continue;
            }
            // The proc file counts to the tick: the next count starts from
            // what it said.
            if let Some(used) = cpu_of(tid) {
                counted.push((
                    used.saturating_sub(*cpu),
                    now.saturating_duration_since(*since),
                ));
                (*since, *cpu) = (now, used);
            }
        }
        for (cpu, wall) in counted {
            self.observe(cpu, wall, now);
        }
        self.current(now)
    }

    /// Adds a run that got `cpu` of CPU time over `wall`, ended at `now`.
    fn observe(&mut self, cpu: Duration, wall: Duration, now: Instant) {
        if wall < SHARE_MIN_RUN {
            return;
        }
        let share = (cpu.as_secs_f64() / wall.as_secs_f64()).clamp(0.01, 1.0);
        let weight = 1.0 - 0.5f64.powf(wall.as_secs_f64() / SHARE_HALF_LIFE.as_secs_f64());
        let blended = match self.current(now) {
            Some(old) => old + weight * (share - old),
            None => share,
        };
        self.estimate = Some((blended, now));
    }

    /// The share runs showed lately, if any did.
    pub fn current(&self, now: Instant) -> Option<f64> {
        self.estimate
            .filter(|(_, at)| now.saturating_duration_since(*at) <= SHARE_MAX_AGE)
            .map(|(share, _)| share)
    }
}

/// CPU time used so far by the calling thread.
pub fn thread_cpu_time() -> Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(Duration::ZERO, Duration::from)
}

/// CPU time used so far by thread `tid` of this process, from
/// `/proc/self/task/TID/stat` (to the kernel's 10 ms tick).
pub fn thread_cpu_time_of(tid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    parse_stat_cpu(&stat)
}

/// utime + stime of a `/proc/…/stat` line, in the clock ticks of the
/// proc ABI (USER_HZ, 100 a second on every Linux architecture).
fn parse_stat_cpu(stat: &str) -> Option<Duration> {
    // The command name, in parentheses, may hold spaces: count fields from
    // after its closing one (field 3, the state, is then the first).
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_teach_a_slot_its_share_of_a_core_and_old_lessons_expire() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut share = RunShare::default();
        assert_eq!(share.current(t0), None);
        // Too short to say anything.
        share.observe(ms(2), ms(20), t0);
        assert_eq!(share.current(t0), None);
        // A run held to a fifth of a core, then half a second with all of
        // it: halfway there.
        share.observe(ms(100), ms(500), t0);
        assert!((share.current(t0).expect("learnt") - 0.2).abs() < 1e-9);
        share.observe(ms(500), ms(500), t0 + ms(500));
        let blended = share.current(t0 + ms(500)).expect("learnt");
        assert!((blended - 0.6).abs() < 1e-9, "{blended}");
        // The same half second cut into five tasks weighs the same.
        let mut cut = RunShare::default();
        cut.observe(ms(100), ms(500), t0);
        for _ in 0..5 {
            cut.observe(ms(100), ms(100), t0);
        }
        assert!((cut.current(t0).expect("learnt") - 0.6).abs() < 1e-9);
        // More CPU than wall time (the clocks' grain) is a whole core.
        let mut full = RunShare::default();
        full.observe(ms(101), ms(100), t0);
        assert_eq!(full.current(t0), Some(1.0));
        // Nothing run for long: forgotten.
        let later = t0 + ms(500) + SHARE_MAX_AGE + ms(1);
        assert_eq!(share.current(later), None);
        // A fresh run after that starts over rather than blending.
        share.observe(ms(300), ms(600), later);
        assert_eq!(share.current(later), Some(0.5));
    }

    #[test]
    fn a_run_still_going_is_counted_a_second_at_a_time_and_the_rest_at_its_end() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let mut share = RunShare::default();
        share.started(7, t0, ms(40));
        // Not a second yet: nothing to count.
        assert_eq!(share.sample(t0 + ms(900), |_| Some(ms(500))), None);
        // Two seconds at a fifth of a core.
        let seen = share.sample(t0 + ms(2000), |tid| (tid == 7).then_some(ms(440)));
        assert!((seen.expect("counted") - 0.2).abs() < 1e-9, "{seen:?}");
        // Half a second more with a whole core, counted at its end only
        // from the last sample: halfway from 0.2 to 1.
        share.ended(7, t0 + ms(2500), ms(940));
        let ended = share.current(t0 + ms(2500)).expect("counted");
        assert!((ended - 0.6).abs() < 1e-9, "{ended}");
        // Ended runs are no longer sampled.
        assert_eq!(share.sample(t0 + ms(9000), |_| Some(ms(0))), Some(ended));
    }

    #[test]
    fn a_thread_s_cpu_time_is_read_from_proc_as_from_its_own_clock() {
        // The command name may hold spaces and parentheses.
        let line = "4242 (corral (run) 0) R 1 2 3 4 5 6 7 8 9 10 250 37 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu(line), Some(Duration::from_millis(2870)));
        assert_eq!(parse_stat_cpu("4242 (x) R 1 2"), None);
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let own = thread_cpu_time();
        let tid = nix::unistd::gettid().as_raw();
        let read = thread_cpu_time_of(tid).expect("/proc/self/task/TID/stat");
        let gap = own.abs_diff(read);
        assert!(
            gap <= Duration::from_millis(30),
            "own clock {own:?}, /proc {read:?}"
        );
    }

    #[test]
    fn a_thread_that_sleeps_uses_little_cpu_time_and_one_that_spins_uses_it() {
        let start = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(60));
        let slept = thread_cpu_time() - start;
        let start = thread_cpu_time();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(60) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let spun = thread_cpu_time() - start;
        assert!(slept < Duration::from_millis(20), "slept: {slept:?}");
        assert!(spun > slept, "spun {spun:?}, slept {slept:?}");
    }

    #[test]
    fn a_cgroup_cpu_limit_is_read_as_cpus_and_shared_by_the_slots() {
        assert_eq!(parse_cpu_max("25000 100000\n"), Some(0.25));
        assert_eq!(parse_cpu_max("150000 100000"), Some(1.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max(""), None);
        assert_eq!(parse_cpu_max("0 100000"), None);
        // One slot held to a quarter of a CPU runs at a quarter speed.
        assert_eq!(slot_share(1, 2, Some(0.25)), 0.25);
        // Two slots in 1.5 CPUs: three quarters each.
        assert_eq!(slot_share(2, 4, Some(1.5)), 0.75);
        // No limit, a slot per core: full speed; more slots than cores share.
        assert_eq!(slot_share(2, 2, None), 1.0);
        assert_eq!(slot_share(4, 2, None), 0.5);
        // A limit above the cores changes nothing.
        assert_eq!(slot_share(2, 2, Some(8.0)), 1.0);
    }

    #[test]
    fn the_cpu_cgroup_is_found_under_v1_v2_and_a_container_s_view() {
        // A hybrid host: v2 mounted without controllers, v1's cpu beside it.
        let hybrid = "25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n\
                      26 25 0:24 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                      32 25 0:29 / /sys/fs/cgroup/cpu,cpuacct rw shared:9 - cgroup cgroup rw,cpu,cpuacct\n\
                      33 25 0:30 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset\n";
        let own = "3:cpuset:/\n2:cpu,cpuacct:/corral-h3\n0::/user.slice\n";
        assert_eq!(
            cpu_cgroup_dir(hybrid, own),
            Some((
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/corral-h3"),
                Cgroup::V1
            ))
        );
        // Pure v2.
        let v2 = "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cpu_cgroup_dir(v2, "0::/system.slice/corral.service\n"),
            Some((
                PathBuf::from("/sys/fs/cgroup"),
                PathBuf::from("/sys/fs/cgroup/system.slice/corral.service"),
                Cgroup::V2
            ))
        );
        // A container sees its own group as the mount's root.
        let container = "700 600 0:26 /docker/abc /sys/fs/cgroup ro - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cpu_cgroup_dir(container, "0::/docker/abc\n").map(|(_, dir, _)| dir),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        // A path that only shares the root's leading characters is not below it.
        assert_eq!(
            cpu_cgroup_dir(container, "0::/docker/abcdef\n").map(|(_, dir, _)| dir),
            Some(PathBuf::from("/sys/fs/cgroup/docker/abcdef"))
        );
        // No cgroup mount with a cpu controller: no limit to read.
        assert_eq!(
            cpu_cgroup_dir(&hybrid.replace("cpu,cpuacct", "cpuacct"), "2:cpuacct:/x\n")
                .map(|(_, _, v)| v),
            None
        );
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
    }

    struct Script(Vec<HostSample>);

    impl LoadSource for Script {
        fn sample(&mut self) -> HostSample {
            self.0.remove(0)
        }
    }

    fn load(pct: f32) -> HostSample {
        HostSample {
            load_pct: pct,
            on_battery: false,
        }
    }

    #[test]
    fn the_owner_coming_back_stops_work_quickly_and_it_resumes_slowly() {
        let mut source = Script(
            [10.0, 80.0, 80.0, 10.0, 10.0, 10.0, 10.0, 10.0]
                .into_iter()
                .map(load)
                .collect(),
        );
        let mut policy = OwnerPolicy::new(Share::Idle);
        let states: Vec<_> = (0..8).map(|_| policy.update(source.sample())).collect();
        use OwnerState::{Busy, Idle};
        assert_eq!(states, [Idle, Idle, Busy, Busy, Busy, Busy, Busy, Idle]);
    }

    #[test]
    fn a_load_hovering_at_the_threshold_does_not_flap() {
        let mut policy = OwnerPolicy::new(Share::Idle);
        let mut changes = 0;
        let mut last = policy.state();
        for i in 0..100 {
            let s = policy.update(load(if i % 2 == 0 { 55.0 } else { 45.0 }));
            changes += usize::from(s != last);
            last = s;
        }
        assert!(changes <= 1, "{changes} changes");
    }

    #[test]
    fn battery_makes_the_owner_busy_at_once() {
        let mut policy = OwnerPolicy::new(Share::Idle);
        assert_eq!(
            policy.update(HostSample {
                load_pct: 0.0,
                on_battery: true
            }),
            OwnerState::Busy
        );
    }

    #[test]
    fn always_and_never_ignore_the_load_and_draining_sticks() {
        let mut always = OwnerPolicy::new(Share::Always);
        assert_eq!(always.update(load(100.0)), OwnerState::Idle);
        let mut never = OwnerPolicy::new(Share::Never);
        assert_eq!(never.update(load(0.0)), OwnerState::Busy);
        always.drain();
        assert_eq!(always.update(load(0.0)), OwnerState::Draining);
    }

    #[test]
    fn power_supply_is_read_from_sysfs_layout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mk = |name: &str, kind: &str, online: Option<&str>| {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).expect("mkdir");
            std::fs::write(d.join("type"), kind).expect("type");
            if let Some(o) = online {
                std::fs::write(d.join("online"), o).expect("online");
            }
        };
        mk("BAT0", "Battery\n", None);
        mk("AC", "Mains\n", Some("0\n"));
        assert!(on_battery(dir.path()));
        std::fs::write(dir.path().join("AC/online"), "1\n").expect("plug in");
        assert!(!on_battery(dir.path()));
        assert!(!on_battery(&dir.path().join("missing")));
    }
}
