//! The result of one task as its worker signs it: how it ended, what it
//! printed (capped), the files it wrote (by hash), where and how it ran.

use serde::{Deserialize, Serialize};

use crate::hash::ContentHash;
use crate::ids::{JobId, PeerKey};
use crate::manifest::{MAX_OUTPUT_BYTES, check_guest_path};

/// Most output files one receipt may list.
pub const MAX_FILES: usize = 10_000;
/// Longest trap message.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// The engine a task ran on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EngineKind {
    /// wasmtime (Cranelift).
    Jit,
    /// wasmi.
    Interp,
}

impl EngineKind {
    /// The stable name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Jit => "jit",
            EngineKind::Interp => "interp",
        }
    }
}

/// Why a task ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskStatus {
    /// The module exited (returned from `_start`: 0, or `proc_exit`).
    Exited {
        /// Its exit code.
        code: i32,
    },
    /// The module trapped.
    Trapped {
        /// The engine's description of the trap.
        message: String,
    },
    /// It ran past its wall-clock limit.
    TimedOut,
    /// It needed more memory than its limit.
    MemoryLimit,
    /// It wrote more to stdout or stderr than the cap.
    OutputLimit,
    /// It tried to add more bytes or files to its writable directories than
    /// its disk limit (the write or create was not performed).
    DiskLimit,
}

impl TaskStatus {
    /// The stable reason name used in `job.json` and on the command line.
    pub fn reason_code(&self) -> &'static str {
        match self {
            TaskStatus::Exited { .. } => "exit",
            TaskStatus::Trapped { .. } => "trap",
            TaskStatus::TimedOut => "timeout",
            TaskStatus::MemoryLimit => "memory_limit",
            TaskStatus::OutputLimit => "output_limit",
            TaskStatus::DiskLimit => "disk_limit",
        }
    }

    /// Whether `code` is the [`reason_code`](Self::reason_code) of a run
    /// that a trap or a limit stopped (every reason but `exit`).
    pub fn is_stop_code(code: &str) -> bool {
        matches!(
            code,
            "trap" | "timeout" | "memory_limit" | "output_limit" | "disk_limit"
        )
    }

    /// Whether the task succeeded (exited 0).
    pub fn is_success(&self) -> bool {
        matches!(self, TaskStatus::Exited { code: 0 })
    }
}

/// A file the task wrote, named by its guest path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Guest path, e.g. `/output/count.txt`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Content hash.
    pub hash: ContentHash,
}

/// A captured stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Captured {
    /// The bytes, at most the job's output cap.
    pub bytes: Vec<u8>,
    /// Hash of `bytes`.
    pub hash: ContentHash,
    /// The guest tried to write more than the cap.
    pub truncated: bool,
}

impl Captured {
    /// Captures `bytes`.
    pub fn new(bytes: Vec<u8>, truncated: bool) -> Self {
        Self {
            hash: ContentHash::of(&bytes),
            bytes,
            truncated,
        }
    }
}

/// The signed result of one attempt at one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskReceipt {
    /// The job.
    pub job: JobId,
    /// The task index.
    pub index: u32,
    /// Which attempt this was (1-based).
    pub attempt: u32,
    /// The worker (and signer).
    pub worker: PeerKey,
    /// How it ended.
    pub status: TaskStatus,
    /// stdout.
    pub stdout: Captured,
    /// stderr.
    pub stderr: Captured,
    /// Files written, sorted by path.
    pub files: Vec<OutputFile>,
    /// Engine used.
    pub engine: EngineKind,
    /// CPU architecture of the worker (e.g. `x86_64`, `aarch64`, `arm`).
    pub arch: String,
    /// Run time, milliseconds.
    pub duration_ms: u64,
}

/// A receipt field out of bounds or inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid receipt: {field}: {why}")]
pub struct ReceiptError {
    /// The field.
    pub field: &'static str,
    /// What is wrong.
    pub why: String,
}

fn bad(field: &'static str, why: impl Into<String>) -> ReceiptError {
    ReceiptError {
        field,
        why: why.into(),
    }
}

impl TaskReceipt {
    /// Checks bounds and that the hashes match the bytes carried.
    pub fn validate(&self) -> Result<(), ReceiptError> {
        if self.attempt == 0 {
            return Err(bad("attempt", "attempts count from 1"));
        }
        for (field, captured) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            if captured.bytes.len() as u64 > MAX_OUTPUT_BYTES {
                return Err(bad(
                    field,
                    format!("{} bytes is over the cap", captured.bytes.len()),
                ));
            }
            if ContentHash::of(&captured.bytes) != captured.hash {
                return Err(bad(field, "hash does not match the bytes"));
            }
        }
        if let TaskStatus::Trapped { message } = &self.status
            && message.len() > MAX_MESSAGE_BYTES
        {
            return Err(bad("status", "trap message too long"));
        }
        if self.files.len() > MAX_FILES {
            return Err(bad(
                "files",
                format!("{} files; at most {MAX_FILES}", self.files.len()),
            ));
        }
        for (i, file) in self.files.iter().enumerate() {
            check_guest_path(&file.path).map_err(|why| bad("files", why))?;
            if i > 0 && self.files[i - 1].path >= file.path {
                return Err(bad("files", "not sorted by path, or a path repeats"));
            }
        }
        if self.arch.is_empty()
            || self.arch.len() > 32
            || !self
                .arch
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(bad(
                "arch",
                format!("{:?} is not an architecture name", self.arch),
            ));
        }
        Ok(())
    }
}

/// Several receipts of one worker signed together, to one coordinator: a
/// signature per message instead of one per task (signing and checking
/// were a fifth of a worker's and a quarter of a coordinator's CPU with
/// tasks of a millisecond). Its receipts come out only through
/// [`crate::envelope::Signed::open_receipts_from`], which checks each one
/// (that the signer made it, and its bounds) on its own, so one bad
/// receipt does not spoil the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptBatch {
    pub(crate) receipts: Vec<TaskReceipt>,
}

impl ReceiptBatch {
    /// A batch of `receipts` (1 to [`crate::messages::MAX_BATCH`] of them,
    /// or it is refused where it arrives).
    pub fn new(receipts: Vec<TaskReceipt>) -> Self {
        Self { receipts }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(worker: PeerKey) -> TaskReceipt {
        TaskReceipt {
            job: JobId::from_bytes([1; 16]),
            index: 3,
            attempt: 1,
            worker,
            status: TaskStatus::Exited { code: 0 },
            stdout: Captured::new(b"task 3/8: 78022 primes\n".to_vec(), false),
            stderr: Captured::new(Vec::new(), false),
            files: vec![OutputFile {
                path: "/output/count.txt".into(),
                size: 6,
                hash: ContentHash::of(b"78022\n"),
            }],
            engine: EngineKind::Jit,
            arch: "x86_64".into(),
            duration_ms: 125,
        }
    }

    #[test]
    fn a_sample_receipt_is_valid() {
        assert_eq!(sample(PeerKey::from_bytes([5; 32])).validate(), Ok(()));
    }

    #[test]
    fn lies_and_bounds_are_caught() {
        let base = sample(PeerKey::from_bytes([5; 32]));
        let mut r = base.clone();
        r.stdout.bytes.push(b'!');
        assert_eq!(r.validate().expect_err("hash").field, "stdout");
        let mut r = base.clone();
        r.files[0].path = "/output/../etc/passwd".into();
        assert_eq!(r.validate().expect_err("path").field, "files");
        let mut r = base.clone();
        r.files.push(r.files[0].clone());
        assert_eq!(r.validate().expect_err("dup").field, "files");
        let mut r = base.clone();
        r.attempt = 0;
        assert_eq!(r.validate().expect_err("attempt").field, "attempt");
        let mut r = base;
        r.arch = "x86 64".into();
        assert_eq!(r.validate().expect_err("arch").field, "arch");
    }

    #[test]
    fn reason_codes_are_stable() {
        let names: Vec<_> = [
            TaskStatus::Exited { code: 1 },
            TaskStatus::Trapped {
                message: String::new(),
            },
            TaskStatus::TimedOut,
            TaskStatus::MemoryLimit,
            TaskStatus::OutputLimit,
            TaskStatus::DiskLimit,
        ]
        .iter()
        .map(TaskStatus::reason_code)
        .collect();
        assert_eq!(
            names,
            [
                "exit",
                "trap",
                "timeout",
                "memory_limit",
                "output_limit",
                "disk_limit"
            ]
        );
        for name in &names {
            assert_eq!(TaskStatus::is_stop_code(name), *name != "exit", "{name}");
        }
        assert!(!TaskStatus::is_stop_code("refused"));
    }
}
