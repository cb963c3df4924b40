//! CPU cgroups that hold a host (or its running daemon) to a share of one
//! CPU: a slow device.

use std::path::PathBuf;

use super::Lan;

/// A CPU cgroup made for a slow host.
pub struct CpuGroup {
    /// The file a process writes its pid to to join it.
    pub procs: PathBuf,
    /// Shell commands that mount its hierarchy at the usual place under a
    /// fresh /sys.
    pub mount: String,
}

/// Creates a CPU cgroup limited to `pct` percent of one CPU (cgroup v1's
/// cpu controller or cgroup v2's cpu.max). It is removed when the test
/// process ends only if empty; names are unique per LAN.
pub fn cpu_cgroup(name: &str, pct: u32) -> CpuGroup {
    let quota = u64::from(pct) * 1000;
    let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
    if v1.join("cpu.cfs_quota_us").exists() {
        let dir = v1.join(format!("corral-{name}"));
        std::fs::create_dir_all(&dir).expect("cgroup v1 dir");
        std::fs::write(dir.join("cpu.cfs_period_us"), "100000").expect("period");
        std::fs::write(dir.join("cpu.cfs_quota_us"), quota.to_string()).expect("quota");
        // The hierarchy's mount point and controllers as mounted here (cpu
        // alone, or with cpuacct, behind a `cpu` symlink): mounting it again
        // needs the same set.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let (point, controllers) = corral_node::capacity::cgroup_mounts(&mounts)
            .into_iter()
            .find(|m| m.has_v1_cpu())
            .map(|m| (m.point.display().to_string(), m.controllers.join(",")))
            .unwrap_or_else(|| ("/sys/fs/cgroup/cpu".into(), "cpu".into()));
        return CpuGroup {
            procs: dir.join("cgroup.procs"),
            mount: format!(
                "mount -t tmpfs cgroup /sys/fs/cgroup && mkdir -p {point} \
                 && mount -t cgroup -o {controllers} cgroup {point}"
            ),
        };
    }
    let v2 = PathBuf::from("/sys/fs/cgroup");
    let controllers = std::fs::read_to_string(v2.join("cgroup.controllers")).unwrap_or_default();
    assert!(
        controllers.split_whitespace().any(|c| c == "cpu"),
        "no cgroup CPU controller (v1 /sys/fs/cgroup/cpu or v2 cpu) to hold a slow host"
    );
    let _ = std::fs::write(v2.join("cgroup.subtree_control"), "+cpu");
    let dir = v2.join(format!("corral-{name}"));
    std::fs::create_dir_all(&dir).expect("cgroup v2 dir");
    std::fs::write(dir.join("cpu.max"), format!("{quota} 100000")).expect("cpu.max");
    CpuGroup {
        procs: dir.join("cgroup.procs"),
        mount: "mount -t cgroup2 cgroup2 /sys/fs/cgroup".into(),
    }
}

impl Lan {
    /// Holds host i's running daemon to `pct` percent of one CPU from now
    /// on: a cgroup limit set under it, as an owner or a container manager
    /// might. The daemon cannot read this limit (`ip netns exec` gave it a
    /// /sys without the cgroup hierarchy); only its runs can show it.
    pub fn throttle(&self, i: usize, pct: u32) {
        let pid = self.pid(i).expect("the daemon runs");
        let group = cpu_cgroup(&self.hosts[i].ns, pct);
        std::fs::write(&group.procs, pid.to_string()).expect("the daemon moves into the cgroup");
    }
}
