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

/// Most blobs one [`Request::Lacking`] may ask about.
pub const MAX_LACKING_ASK: usize = 16_384;

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
    /// The recent runs of the tasks this node coordinates that changed
    /// after `since` (all with 0), and tasks started and finished per
    /// second: the live page's timeline.
    Timeline {
        /// The sequence number the caller has seen.
        #[serde(default)]
        since: u64,
    },
    /// Change this device's `--share` policy while it runs (until the
    /// daemon restarts with its own `--share`).
    ShareSet {
        /// The new policy.
        share: crate::capacity::Share,
    },
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
    /// Remove a job that has ended from this node's records (`corral
    /// serve` does, for each request's job once it has the answer).
    Forget {
        /// Its id.
        id: String,
    },
    /// Which of these blobs the daemon's store lacks (not there, or
    /// corrupt); those it holds it makes durable. The CLI asks before it
    /// writes a job's blobs into the data dir, and writes only those: the
    /// daemon checks a blob once in its life, a `corral run` would check
    /// it on every run.
    Lacking {
        /// The blobs, at most [`MAX_LACKING_ASK`].
        blobs: Vec<ContentHash>,
    },
    /// Take in and spread a module record this node signed (its module's
    /// blob is already in the data dir).
    ModulePublish {
        /// The signed record's canonical bytes, hex.
        record: String,
    },
    /// The module records this node knows.
    Modules,
    /// Resolve a module reference among the records this node knows, with
    /// its trust list; with `fetch`, also make sure the module's blob is in
    /// the data dir (fetched from a publisher or a peer that has it).
    ModuleResolve {
        /// `name`, `name@1.2.3`, `name@^1.2`, …
        reference: String,
        /// Fetch the blob if it is not here.
        fetch: bool,
    },
}

impl Request {
    /// Whether this is one of the module requests (answered by the
    /// daemon's module book).
    pub fn is_module_request(&self) -> bool {
        matches!(
            self,
            Request::ModulePublish { .. } | Request::Modules | Request::ModuleResolve { .. }
        )
    }
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

/// Parses one request line as the daemon reads it: its control version
/// first (a client of another version gets [`ErrorCode::Version`], not a
/// parse error), then the request.
pub fn parse_request(line: &str) -> Result<Request, ControlError> {
    let version: Option<u32> = serde_json::from_str::<serde_json::Value>(line)
        .ok()
        .and_then(|v| v.get("v")?.as_u64())
        .and_then(|v| u32::try_from(v).ok());
    match version {
        Some(CONTROL_VERSION) => {}
        Some(other) => {
            return Err(ControlError::new(
                ErrorCode::Version,
                format!(
                    "this daemon speaks control protocol v{CONTROL_VERSION}, the CLI sent v{other}: \
                     use the same corral version for both"
                ),
            ));
        }
        None => {
            return Err(ControlError::bad_request(
                "not a control request (no version)",
            ));
        }
    }
    serde_json::from_str::<Envelope<Request>>(line)
        .map(|envelope| envelope.body)
        .map_err(|e| ControlError::bad_request(format!("bad control request: {e}")))
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

#[cfg(test)]
mod tests {
    use corral_protocol::manifest::{EngineReq, Limits};

    use super::*;

    #[test]
    fn lines_of_another_version_or_none_are_refused_with_a_code() {
        let ok = parse_request(r#"{"v":1,"cmd":"job","id":"x"}"#);
        assert_eq!(ok, Ok(Request::Job { id: "x".into() }));
        let code = |line: &str| parse_request(line).map_err(|e| e.code).err();
        assert_eq!(code(r#"{"v":2,"cmd":"status"}"#), Some(ErrorCode::Version));
        assert_eq!(code(r#"{"cmd":"status"}"#), Some(ErrorCode::BadRequest));
        assert_eq!(code(r#"{"v":1,"cmd":"nope"}"#), Some(ErrorCode::BadRequest));
        assert_eq!(code("not json"), Some(ErrorCode::BadRequest));
    }

    /// The seeds of the `control_line` fuzz target (node/fuzz/corpus): one
    /// line of each request and two responses; run by hand after a change:
    /// `cargo test -p corral-node --lib -- --ignored control_fuzz_seeds`.
    #[test]
    #[ignore = "writes files; run by hand to refresh the fuzz seeds"]
    fn control_fuzz_seeds() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/control_line");
        std::fs::create_dir_all(&dir).expect("corpus dir");
        let hash = ContentHash::of(b"module");
        let spec = SubmitSpec {
            module: hash,
            module_name: "primes.wasm".into(),
            args: vec!["{task}".into()],
            env: vec![("LANG".into(), "C".into())],
            tasks: 4,
            inputs: vec![("a.txt".into(), hash)],
            dirs: Vec::new(),
            limits: Limits::default(),
            engine: EngineReq::Any,
            verify: 2,
            stdin: Some(hash),
            output: true,
        };
        let requests = [
            Request::Status,
            Request::Peers,
            Request::Leave,
            Request::TrustAdd {
                key: "ab".repeat(32),
                name: "pi".into(),
            },
            Request::TrustRemove {
                key: "ab".repeat(32),
            },
            Request::TrustList,
            Request::Submit {
                spec: Box::new(spec),
            },
            Request::Jobs,
            Request::Job { id: "j1".into() },
            Request::Watch {
                id: "j1".into(),
                seq: 3,
                wait_ms: 1000,
                summary: true,
            },
            Request::Output {
                id: "j1".into(),
                stdout_from: 0,
                stderr_from: 7,
            },
            Request::Cancel { id: "j1".into() },
            Request::Forget { id: "j1".into() },
            Request::ModulePublish {
                record: "00".repeat(8),
            },
            Request::Modules,
            Request::ModuleResolve {
                reference: "render@^1.2".into(),
                fetch: true,
            },
            Request::Lacking {
                blobs: vec![hash, ContentHash::of(b"")],
            },
        ];
        for (i, body) in requests.into_iter().enumerate() {
            let line = serde_json::to_string(&Envelope {
                v: CONTROL_VERSION,
                body,
            })
            .expect("json");
            std::fs::write(dir.join(format!("request{i:02}")), format!("{line}\n")).expect("seed");
        }
        let responses = [
            r#"{"v":1,"ok":true,"data":{"name":"pi","peers":[1,2.5,null]}}"#,
            r#"{"v":1,"ok":false,"error":"no such job","code":"not_found"}"#,
        ];
        for (i, line) in responses.into_iter().enumerate() {
            std::fs::write(dir.join(format!("response{i}")), line).expect("seed");
        }
    }
}
