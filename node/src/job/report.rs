//! `job.json` and `corral job ID --json`: the record of a job and each task
//! (DESIGN §9). Fields may be added, never renamed.

use serde::{Deserialize, Serialize};

/// Where a job stands. Stored and reported as its lowercase name
/// (`running`, `completed`, `failed`, `cancelled`), as the string form
/// before it was written, so records of an older daemon read as they are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Tasks to place or running.
    Running,
    /// Every task exited 0.
    Completed,
    /// Over, with a task that did not exit 0 (or never ran).
    Failed,
    /// Cancelled by its submitter.
    Cancelled,
}

impl JobState {
    /// Its name in records, `corral job` and `corral jobs`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a task stands (coordinator records and reports). Stored and
/// reported as its lowercase name, as the string form before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskRunState {
    /// Waiting for a device.
    #[default]
    Queued,
    /// Offered to (or running on) a device.
    Running,
    /// A result was kept.
    Done,
    /// Given up on.
    Failed,
}

impl TaskRunState {
    /// Its name in records and in `corral job`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskRunState::Queued => "queued",
            TaskRunState::Running => "running",
            TaskRunState::Done => "done",
            TaskRunState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for TaskRunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The whole job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobReport {
    /// Job id (32 hex digits).
    pub id: String,
    /// `completed` when every task exited 0, `failed` otherwise (`running`
    /// and `cancelled` for jobs on the mesh).
    pub state: JobState,
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
    /// Devices cooled off for letting a task's lease lapse (no result in
    /// the time the job's runs show), with the last reason and how often.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cooled_off: Vec<Refusal>,
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
    /// `done` (exited 0) or `failed` (`queued` and `running` while a job on
    /// the mesh runs).
    pub state: TaskRunState,
    /// The module's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// Why it ended: `exit`, `trap`, `timeout`, `memory_limit`, `output_limit`,
    /// `disk_limit`.
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
        let tasks_done = u32::try_from(
            tasks
                .iter()
                .filter(|t| t.state == TaskRunState::Done)
                .count(),
        )
        .unwrap_or(u32::MAX);
        let tasks_failed = tasks_total - tasks_done;
        Self {
            id,
            state: if tasks_failed == 0 {
                JobState::Completed
            } else {
                JobState::Failed
            },
            tasks_total,
            tasks_done,
            tasks_failed,
            module_sha256,
            duration_ms,
            tasks,
            devices: Default::default(),
            refusals: Vec::new(),
            mismatches: 0,
            cooled_off: Vec::new(),
            wall_us: None,
            seq: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(value: &impl Serialize) -> String {
        serde_json::to_string(value).expect("a state serializes")
    }

    #[test]
    fn states_are_the_documented_lowercase_strings() {
        for (state, name) in [
            (JobState::Running, "running"),
            (JobState::Completed, "completed"),
            (JobState::Failed, "failed"),
            (JobState::Cancelled, "cancelled"),
        ] {
            assert_eq!(json(&state), format!("\"{name}\""));
            assert_eq!(format!("{state}"), name);
            let back: JobState = serde_json::from_str(&format!("\"{name}\"")).expect("parses");
            assert_eq!(back, state);
        }
        for (state, name) in [
            (TaskRunState::Queued, "queued"),
            (TaskRunState::Running, "running"),
            (TaskRunState::Done, "done"),
            (TaskRunState::Failed, "failed"),
        ] {
            assert_eq!(json(&state), format!("\"{name}\""));
            assert_eq!(format!("{state:<8}|"), format!("{name:<8}|"));
        }
    }
}
