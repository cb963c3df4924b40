//! `job.json` and `corral job ID --json`: the record of a job and each task
//! (DESIGN §9). Fields may be added, never renamed.

use serde::{Deserialize, Serialize};

/// The whole job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReport {
    /// Job id (32 hex digits).
    pub id: String,
    /// `completed` when every task exited 0, `failed` otherwise.
    pub state: String,
    /// Number of tasks.
    pub tasks_total: u32,
    /// Tasks that exited 0.
    pub tasks_done: u32,
    /// Tasks that ended any other way.
    pub tasks_failed: u32,
    /// sha256 of the module.
    pub module_sha256: String,
    /// Wall-clock time of the whole job.
    pub duration_ms: u64,
    /// Each task, by index.
    pub tasks: Vec<TaskReport>,
    /// Tasks done and running per device (jobs run on the mesh).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub devices: std::collections::BTreeMap<String, DeviceCount>,
    /// Offers refused, per device and reason (jobs run on the mesh).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refusals: Vec<Refusal>,
    /// Tasks whose runs disagreed (with `--verify`).
    #[serde(default)]
    pub mismatches: u32,
    /// Submit to end on the coordinator's monotonic clock, microseconds
    /// (jobs submitted since the daemon started).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_us: Option<u64>,
    /// Changes every time the job does (`corral run` waits for a change).
    #[serde(default)]
    pub seq: u64,
}

/// One task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReport {
    /// Task index, 0-based.
    pub index: u32,
    /// `done` (exited 0) or `failed`.
    pub state: String,
    /// The module's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why it ended: `exit`, `trap`, `timeout`, `memory_limit`, `output_limit`.
    pub reason: String,
    /// The trap message, when it trapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The input file of this task (`--inputs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// The device that ran it.
    pub peer: String,
    /// `jit` or `interp`.
    pub engine: String,
    /// CPU architecture of that device.
    pub arch: String,
    /// How many times it was started.
    pub attempts: u32,
    /// Run time on the device.
    pub duration_ms: u64,
    /// sha256 of the captured stdout.
    pub stdout_sha256: String,
    /// sha256 of the captured stderr.
    pub stderr_sha256: String,
    /// The guest wrote more output than the cap.
    pub output_truncated: bool,
    /// Files it wrote, at their guest paths.
    pub files: Vec<FileReport>,
    /// With `--verify`: every run of the task, on distinct devices.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<RunReport>,
    /// With `--verify`: two runs disagreed (the majority was kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mismatch: bool,
}

/// One run of a verified task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// The device.
    pub peer: String,
    /// Its CPU architecture.
    pub arch: String,
    /// `jit` or `interp`.
    pub engine: String,
    /// sha256 of its stdout.
    pub stdout_sha256: String,
    /// Whether its result is the one kept.
    pub kept: bool,
}

/// A device's share of a job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCount {
    /// Tasks it finished (results kept).
    pub done: u32,
    /// Tasks it runs now.
    pub running: u32,
}

/// A refusal of an offer, as the submitter sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The device.
    pub peer: String,
    /// Why, in words.
    pub reason: String,
    /// How many times.
    pub count: u32,
}

/// A file a task wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileReport {
    /// Guest path, e.g. `/output/count.txt`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// sha256 of the contents.
    pub sha256: String,
}

impl JobReport {
    /// Builds the summary from the tasks.
    pub fn new(
        id: String,
        module_sha256: String,
        duration_ms: u64,
        tasks: Vec<TaskReport>,
    ) -> Self {
        let tasks_total = u32::try_from(tasks.len()).unwrap_or(u32::MAX);
        let tasks_done =
            u32::try_from(tasks.iter().filter(|t| t.state == "done").count()).unwrap_or(u32::MAX);
        let tasks_failed = tasks_total - tasks_done;
        Self {
            id,
            state: if tasks_failed == 0 {
                "completed"
            } else {
                "failed"
            }
            .to_string(),
            tasks_total,
            tasks_done,
            tasks_failed,
            module_sha256,
            duration_ms,
            tasks,
            devices: Default::default(),
            refusals: Vec::new(),
            mismatches: 0,
            wall_us: None,
            seq: 0,
        }
    }
}
