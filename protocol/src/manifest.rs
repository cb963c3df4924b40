//! The job manifest: everything a worker needs to decide whether to run a
//! task and how, signed by the submitter (see [`crate::envelope`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::hash::ContentHash;
use crate::ids::{JobId, Nonce, PeerKey};

/// Most tasks in one job.
pub const MAX_TASKS: u32 = 1_000_000;
/// Most arguments in the template, and most bytes of them together.
pub const MAX_ARGS: usize = 4096;
/// Most bytes of all arguments together.
pub const MAX_ARG_BYTES: usize = 256 * 1024;
/// Most environment variables.
pub const MAX_ENV: usize = 1024;
/// Most bytes of all environment names and values together.
pub const MAX_ENV_BYTES: usize = 256 * 1024;
/// Most shipped directories.
pub const MAX_DIRS: usize = 16;
/// Longest guest path.
pub const MAX_PATH_BYTES: usize = 4096;
/// Largest module.
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;
/// Longest task timeout: a day.
pub const MAX_TIMEOUT_MS: u64 = 24 * 3600 * 1000;
/// Largest memory limit: the whole 32-bit address space.
pub const MAX_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// Largest cap on stdout (and, separately, stderr) per task.
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest disk limit: what one task may add to its writable directories.
/// A peer asking for more is refused; no worker should promise more.
pub const MAX_DISK_BYTES: u64 = 1024 * 1024 * 1024 * 1024;
/// Most files (and directories and links) one task may create.
pub const MAX_FILES: u64 = 1_000_000;
/// Default disk limit per task (`--disk`).
pub const DEFAULT_DISK_BYTES: u64 = 1024 * 1024 * 1024;
/// Default bound on the files one task may create.
pub const DEFAULT_FILES: u64 = 10_000;
/// Most devices one task may be verified on.
pub const MAX_REDUNDANCY: u8 = 8;
/// Longest a manifest may stay valid: a week.
pub const MAX_LIFETIME_MS: u64 = 7 * 24 * 3600 * 1000;

/// Per-task limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall-clock limit, milliseconds.
    pub timeout_ms: u64,
    /// Linear memory limit, bytes.
    pub memory_bytes: u64,
    /// Cap on stdout and on stderr, bytes each.
    pub output_bytes: u64,
    /// Most bytes the task may add to its writable directories, while it runs.
    pub disk_bytes: u64,
    /// Most files, directories and links the task may create, while it runs.
    pub files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout_ms: 3600 * 1000,
            memory_bytes: 1024 * 1024 * 1024,
            output_bytes: 16 * 1024 * 1024,
            disk_bytes: DEFAULT_DISK_BYTES,
            files: DEFAULT_FILES,
        }
    }
}

/// Which engine a job needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EngineReq {
    /// Whatever the worker prefers.
    Any,
    /// A JIT only.
    Jit,
    /// An interpreter only.
    Interp,
}

/// A directory tree shipped with the job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirSpec {
    /// Where the guest sees it.
    pub guest_path: String,
    /// Content hash of the tree's listing.
    pub tree_hash: ContentHash,
    /// Whether each task gets a private writable copy.
    pub writable: bool,
}

/// One input file; a job with inputs runs one task per input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSpec {
    /// File name (no `/`), seen by the guest at `/input/<name>`.
    pub name: String,
    /// Content hash.
    pub hash: ContentHash,
    /// Size in bytes.
    pub size: u64,
}

/// Bytes the guest reads on stdin (a single task's forwarded stdin).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StdinSpec {
    /// Content hash of the bytes.
    pub hash: ContentHash,
    /// Their size.
    pub size: u64,
}

/// Most bytes of forwarded stdin.
pub const MAX_STDIN_BYTES: u64 = 64 * 1024 * 1024;

/// Where the guest finds its output directory: the files a task writes
/// there come back in its receipt (part of the contract between the
/// submitter and the worker).
pub const GUEST_OUTPUT: &str = "/output";
/// Where the guest finds its input (a job over `--inputs`: one file per
/// task, named as the submitter named it).
pub const GUEST_INPUT: &str = "/input";

/// What the tasks of a job iterate over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskSet {
    /// Tasks 0..n.
    Count(u32),
    /// One task per input, in order.
    Inputs(Vec<InputSpec>),
}

/// A job as its submitter signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobManifest {
    /// Manifest format version.
    pub version: u8,
    /// The job.
    pub job: JobId,
    /// Who submitted (and signed) it.
    pub submitter: PeerKey,
    /// The module's hash.
    pub module_hash: ContentHash,
    /// The module's size in bytes.
    pub module_size: u64,
    /// Argument template, with `{task}` and `{input}` placeholders.
    pub args: Vec<String>,
    /// The guest's whole environment, in canonical (sorted) order.
    pub env: BTreeMap<String, String>,
    /// Shipped directories.
    pub dirs: Vec<DirSpec>,
    /// The tasks.
    pub tasks: TaskSet,
    /// Limits of each task.
    pub limits: Limits,
    /// Engine needed.
    pub engine: EngineReq,
    /// Devices each task runs on (1: no verification).
    pub redundancy: u8,
    /// Creation time, unix milliseconds.
    pub created_ms: u64,
    /// Expiry, unix milliseconds.
    pub expires_ms: u64,
    /// Makes the manifest unique.
    pub nonce: Nonce,
    /// What every task reads on stdin (none: end of file at once).
    pub stdin: Option<StdinSpec>,
    /// Whether each task gets a writable [`GUEST_OUTPUT`] preopened after
    /// the shipped directories (and [`GUEST_INPUT`]): a batch's tasks do, a
    /// single pass-through task does not (it sees only `dirs`). A job over
    /// inputs is always a batch.
    pub output: bool,
}

/// A manifest field out of bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid manifest: {field}: {why}")]
pub struct ManifestError {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub why: String,
}

fn bad(field: &'static str, why: impl Into<String>) -> ManifestError {
    ManifestError {
        field,
        why: why.into(),
    }
}

/// Replaces `{task}` with the task index and `{input}` with the input path in
/// each argument of `template`.
pub fn render_args(template: &[String], index: u32, input: Option<&str>) -> Vec<String> {
    let task = index.to_string();
    template
        .iter()
        .map(|arg| {
            let arg = arg.replace("{task}", &task);
            match input {
                Some(path) => arg.replace("{input}", path),
                None => arg,
            }
        })
        .collect()
}

/// Checks that a guest path is absolute, plain and bounded (`/` itself is
/// a guest path: a directory preopened at the guest's root).
pub fn check_guest_path(path: &str) -> Result<(), String> {
    if path.len() > MAX_PATH_BYTES {
        return Err(format!("longer than {MAX_PATH_BYTES} bytes"));
    }
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not absolute"));
    }
    if path.contains('\0') {
        return Err("holds a NUL byte".into());
    }
    if path == "/" {
        return Ok(());
    }
    let parts: Vec<&str> = path[1..].split('/').collect();
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == "." || *p == "..")
    {
        return Err(format!("{path:?} has an empty, `.` or `..` part"));
    }
    Ok(())
}

/// Checks a preopen's guest name as `wasmtime run --dir HOST::GUEST` takes
/// it: an absolute path (see [`check_guest_path`]) or a relative name such
/// as `data`, `.` or `fs-tests.dir` (what `--dir X` gives). Bounded, no NUL,
/// no empty and no `..` part: what a task writes under a relative name
/// comes back under `files/<name>`, which must stay inside the task's
/// directory.
pub fn check_preopen_name(name: &str) -> Result<(), String> {
    if name.starts_with('/') {
        return check_guest_path(name);
    }
    if name.len() > MAX_PATH_BYTES {
        return Err(format!("longer than {MAX_PATH_BYTES} bytes"));
    }
    if name.contains('\0') {
        return Err("holds a NUL byte".into());
    }
    if name.is_empty() {
        return Err("is empty".into());
    }
    let parts: Vec<&str> = name.strip_suffix('/').unwrap_or(name).split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "..") {
        return Err(format!("{name:?} has an empty or `..` part"));
    }
    Ok(())
}

/// Where a preopen's files are kept when they come back: its guest path
/// for an absolute name, `/` + the name without `.` parts for a relative
/// one (`.` is `/`, `fs-tests.dir` is `/fs-tests.dir`). Two preopens with
/// one key cannot both be mounted. `name` must pass [`check_preopen_name`].
pub fn preopen_key(name: &str) -> String {
    if name.starts_with('/') {
        return name.to_string();
    }
    let parts: Vec<&str> = name
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

impl JobManifest {
    /// Number of tasks.
    pub fn task_count(&self) -> u32 {
        match &self.tasks {
            TaskSet::Count(n) => *n,
            TaskSet::Inputs(inputs) => u32::try_from(inputs.len()).unwrap_or(u32::MAX),
        }
    }

    /// The arguments of task `index` (without argv[0]).
    pub fn task_args(&self, index: u32) -> Vec<String> {
        let input = match &self.tasks {
            TaskSet::Inputs(inputs) => inputs
                .get(index as usize)
                .map(|i| format!("/input/{}", i.name)),
            TaskSet::Count(_) => None,
        };
        render_args(&self.args, index, input.as_deref())
    }

    /// Checks every field against its bounds. Expiry is checked by the
    /// envelope, against the verifier's clock.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.version != crate::PROTOCOL_VERSION {
            return Err(bad("version", format!("{} is not supported", self.version)));
        }
        if self.module_size == 0 || self.module_size > MAX_MODULE_BYTES {
            return Err(bad(
                "module_size",
                format!("{} is not in 1..={MAX_MODULE_BYTES}", self.module_size),
            ));
        }
        let arg_bytes: usize = self.args.iter().map(String::len).sum();
        if self.args.len() > MAX_ARGS || arg_bytes > MAX_ARG_BYTES {
            return Err(bad(
                "args",
                format!(
                    "{} arguments of {arg_bytes} bytes is too many",
                    self.args.len()
                ),
            ));
        }
        if self.args.iter().any(|a| a.contains('\0')) {
            return Err(bad("args", "an argument holds a NUL byte"));
        }
        let env_bytes: usize = self.env.iter().map(|(k, v)| k.len() + v.len()).sum();
        if self.env.len() > MAX_ENV || env_bytes > MAX_ENV_BYTES {
            return Err(bad(
                "env",
                format!(
                    "{} variables of {env_bytes} bytes is too many",
                    self.env.len()
                ),
            ));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(bad("env", format!("{key:?} is not a valid variable")));
            }
        }
        if self.dirs.len() > MAX_DIRS {
            return Err(bad(
                "dirs",
                format!("{} directories; at most {MAX_DIRS}", self.dirs.len()),
            ));
        }
        let inputs = matches!(self.tasks, TaskSet::Inputs(_));
        if inputs && !self.output {
            return Err(bad(
                "output",
                "a job over inputs is a batch: it has /output",
            ));
        }
        for (i, dir) in self.dirs.iter().enumerate() {
            check_preopen_name(&dir.guest_path).map_err(|why| bad("dirs", why))?;
            if (inputs && dir.guest_path == GUEST_INPUT)
                || (self.output && dir.guest_path == GUEST_OUTPUT)
            {
                return Err(bad(
                    "dirs",
                    format!("{} is the batch's own preopen", dir.guest_path),
                ));
            }
            let key = preopen_key(&dir.guest_path);
            if self.dirs[..i]
                .iter()
                .any(|d| preopen_key(&d.guest_path) == key)
            {
                return Err(bad("dirs", format!("{} is mounted twice", dir.guest_path)));
            }
        }
        match &self.tasks {
            TaskSet::Count(n) if *n == 0 || *n > MAX_TASKS => {
                return Err(bad("tasks", format!("{n} is not in 1..={MAX_TASKS}")));
            }
            TaskSet::Count(_) => {}
            TaskSet::Inputs(inputs) => {
                if inputs.is_empty() || inputs.len() > MAX_TASKS as usize {
                    return Err(bad(
                        "tasks",
                        format!("{} inputs is not in 1..={MAX_TASKS}", inputs.len()),
                    ));
                }
                for input in inputs {
                    if input.name.is_empty()
                        || input.name.len() > 255
                        || input.name.contains(['/', '\0'])
                        || input.name == "."
                        || input.name == ".."
                    {
                        return Err(bad(
                            "tasks",
                            format!("input name {:?} is not a plain file name", input.name),
                        ));
                    }
                }
            }
        }
        if let Some(stdin) = &self.stdin
            && stdin.size > MAX_STDIN_BYTES
        {
            return Err(bad(
                "stdin",
                format!("{} bytes; at most {MAX_STDIN_BYTES}", stdin.size),
            ));
        }
        let l = &self.limits;
        if l.timeout_ms == 0 || l.timeout_ms > MAX_TIMEOUT_MS {
            return Err(bad(
                "limits.timeout_ms",
                format!("{} is not in 1..={MAX_TIMEOUT_MS}", l.timeout_ms),
            ));
        }
        if l.memory_bytes == 0 || l.memory_bytes > MAX_MEMORY_BYTES {
            return Err(bad(
                "limits.memory_bytes",
                format!("{} is not in 1..={MAX_MEMORY_BYTES}", l.memory_bytes),
            ));
        }
        if l.output_bytes == 0 || l.output_bytes > MAX_OUTPUT_BYTES {
            return Err(bad(
                "limits.output_bytes",
                format!("{} is not in 1..={MAX_OUTPUT_BYTES}", l.output_bytes),
            ));
        }
        if l.disk_bytes == 0 || l.disk_bytes > MAX_DISK_BYTES {
            return Err(bad(
                "limits.disk_bytes",
                format!("{} is not in 1..={MAX_DISK_BYTES}", l.disk_bytes),
            ));
        }
        if l.files == 0 || l.files > MAX_FILES {
            return Err(bad(
                "limits.files",
                format!("{} is not in 1..={MAX_FILES}", l.files),
            ));
        }
        if self.redundancy == 0 || self.redundancy > MAX_REDUNDANCY {
            return Err(bad(
                "redundancy",
                format!("{} is not in 1..={MAX_REDUNDANCY}", self.redundancy),
            ));
        }
        if self.expires_ms <= self.created_ms {
            return Err(bad("expires_ms", "not after created_ms"));
        }
        if self.expires_ms - self.created_ms > MAX_LIFETIME_MS {
            return Err(bad("expires_ms", "more than a week after created_ms"));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;
mod v1;
pub(crate) use v1::read as read_v1;
