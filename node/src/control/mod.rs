//! The control socket between the CLI and the daemon (`$DATA_DIR/corral.sock`,
//! mode 0600): one JSON request per line, one JSON response per line, each
//! carrying the control protocol version so a CLI meeting a daemon of another
//! version says so clearly.

pub mod client;
pub mod server;

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
        spec: Box<crate::dispatch::coordinator::SubmitSpec>,
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
}
