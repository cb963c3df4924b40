//! The CPU a slot may use here: this process's affinity and its cgroup's
//! bandwidth limit (cgroup v1 or v2, read from `/proc/self/mountinfo` and
//! `/proc/self/cgroup`), as a share of the core it was calibrated on.

use std::path::{Path, PathBuf};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
