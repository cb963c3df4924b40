//! The control protocol's messages (the CLI ↔ daemon JSON lines): what a
//! request may ask, what an answer holds, and the error codes. Low in the
//! house: the daemon's handlers, the coordinator and the CLI all use these
//! types, and this file uses none of theirs.

use corral_protocol::hash::ContentHash;
use corral_protocol::manifest::{DirSpec, EngineReq, Limits};
use serde::{Deserialize, Serialize};

/// The control protocol version.
pub const CONTROL_VERSION: u32 = 1;

/// Longest request line (what the daemon reads from a client).
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Longest response line (what a client reads from its own daemon): a job
/// of a million tasks is a few hundred MB of JSON.
pub const MAX_RESPONSE_BYTES: usize = 512 * 1024 * 1024;

/// The socket's file name in the data dir.
pub const SOCKET_NAME: &str = "corral.sock";

/// A request from the CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Request {
    /// This node.
    Status,
    /// The other devices.
    Peers,
    /// Leave the mesh and exit.
    Leave,
    /// Trust a job submitter.
    TrustAdd {
        /// Its key, hex.
        key: String,
        /// A name for people.
        name: String,
    },
    /// Stop trusting one.
    TrustRemove {
        /// Its key, hex.
        key: String,
    },
    /// List trusted submitters.
    TrustList,
    /// Run a job on the mesh (its blobs are already in the data dir).
    Submit {
        /// The job.
        spec: Box<SubmitSpec>,
    },
    /// The jobs this node coordinates.
    Jobs,
    /// One job's record.
    Job {
        /// Its id.
        id: String,
    },
    /// One job's record once it changes from `seq` (or ends), or after
    /// `wait_ms` at the latest.
    Watch {
        /// Its id.
        id: String,
        /// The change counter the caller has seen.
        seq: u64,
        /// Longest wait.
        wait_ms: u64,
        /// Counts only, no task list (while the job is in memory).
        #[serde(default)]
        summary: bool,
    },
    /// What a running single-task job has written so far, from these
    /// offsets of its stdout and stderr.
    Output {
        /// Its id.
        id: String,
        /// Where to start in stdout.
        stdout_from: u64,
        /// Where to start in stderr.
        stderr_from: u64,
    },
    /// Stop a job.
    Cancel {
        /// Its id.
        id: String,
    },
}

/// A request on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// Control protocol version of the sender.
    pub v: u32,
    /// The message.
    #[serde(flatten)]
    pub body: T,
}

/// A response on the wire.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Response {
    /// Control protocol version of the daemon.
    pub v: u32,
    /// Whether the request succeeded.
    pub ok: bool,
    /// The answer, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<serde_json::Value>,
    /// What went wrong, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of failure it was, for programs (with `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
}

/// What kind of failure a control request met; stable on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is malformed or names something malformed.
    BadRequest,
    /// What it names does not exist here (a job, a key).
    NotFound,
    /// It is understood but refused (a limit, a state that forbids it).
    Refused,
    /// The daemon cannot answer now (shutting down, overloaded).
    Unavailable,
    /// The CLI and the daemon speak different control versions.
    Version,
    /// Something failed inside the daemon (the store, the disk).
    Internal,
}

impl ErrorCode {
    /// Its wire name.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Refused => "refused",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Version => "version",
            ErrorCode::Internal => "internal",
        }
    }
}

/// A control request's failure: a code for programs, a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    /// What kind of failure.
    pub code: ErrorCode,
    /// What failed, on what, and what to do.
    pub message: String,
}

impl ControlError {
    /// A failure of kind `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// Nothing of that name here.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// Understood, refused.
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Refused, message)
    }

    /// A failure inside the daemon.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The daemon cannot answer now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
}

/// What `corral run` asks the daemon to run. Blobs (module, inputs, trees)
/// are already in the data dir's blob store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubmitSpec {
    /// The module's blob.
    pub module: ContentHash,
    /// The module's file name (argv[0]).
    pub module_name: String,
    /// Argument template.
    pub args: Vec<String>,
    /// The guest's environment.
    pub env: Vec<(String, String)>,
    /// `--tasks N` (ignored with inputs).
    pub tasks: u32,
    /// `--inputs`: name and blob of each, in order.
    pub inputs: Vec<(String, ContentHash)>,
    /// `--dir` trees.
    pub dirs: Vec<DirSpec>,
    /// Per-task limits.
    pub limits: Limits,
    /// Engine needed.
    pub engine: EngineReq,
    /// `--verify K` (1: none).
    pub verify: u8,
    /// The blob every task reads on stdin (a single task's forwarded stdin).
    #[serde(default)]
    pub stdin: Option<ContentHash>,
    /// Whether each task gets a writable `/output` after the `--dir`
    /// preopens (and `/input`): a batch's tasks do, a single pass-through
    /// task does not. Absent (an older client): yes, as before.
    #[serde(default = "yes")]
    pub output: bool,
}

fn yes() -> bool {
    true
}

/// Streamed output of a single-task job for `corral run`: the bytes of
/// each stream from the offsets asked for.
#[derive(Debug, Serialize, Deserialize)]
pub struct StreamedOutput {
    /// Which streaming run this is (it changes when the task starts over
    /// on another device).
    pub run: u32,
    /// The device it runs on.
    pub peer: String,
    /// stdout from the offset asked for.
    pub stdout: Vec<u8>,
    /// stderr from the offset asked for.
    pub stderr: Vec<u8>,
}
