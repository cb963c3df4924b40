//! Readings of the host: its load without corral and free memory (sysinfo,
//! `/proc`), AC or battery (sysfs), and a thread's CPU time. Plain sync
//! calls, safe to run in `spawn_blocking`.

use std::path::Path;
use std::time::Duration;

use super::{HostSample, LoadSource};

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
    use std::time::Instant;

    use super::*;

    /// The daemon may move its readings off the event loop
    /// (`spawn_blocking`), which needs them `Send + 'static`.
    #[test]
    fn system_load_can_move_to_a_blocking_thread() {
        fn send_static<T: Send + 'static>() {}
        send_static::<SystemLoad>();
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
