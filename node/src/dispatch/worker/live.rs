//! A running task's output streamed to its coordinator as the guest writes
//! it (a job's only task: what `corral run` shows while it runs).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::messages::{MAX_LIVE_CHUNK, TaskRequest};

use crate::dispatch::NetHandle;
use crate::runtime::LiveOutput;

/// How often a running task's new output is sent.
const LIVE_INTERVAL: Duration = Duration::from_millis(50);

/// A running task's output on its way to the coordinator.
#[derive(Clone, Default)]
pub(super) struct Live {
    /// What the guest wrote so far.
    pub(super) output: LiveOutput,
    /// Set once the run is over (the receipt carries the rest).
    pub(super) ended: Arc<AtomicBool>,
}

/// Sends what a task writes to its coordinator as it writes it, until the
/// run ends. Each message says where its bytes start, so the coordinator
/// keeps them in order; a message lost with the connection only means the
/// submitter sees that output when the receipt comes.
pub(super) async fn stream_output(
    net: NetHandle,
    (job, index, attempt): (JobId, u32, u32),
    coordinator: PeerKey,
    live: Live,
) {
    let (mut stdout_at, mut stderr_at) = (0usize, 0usize);
    loop {
        // Read `ended` first: bytes written before the end are then read.
        let ended = live.ended.load(Ordering::Acquire);
        let (stdout, stderr) = live.output.read(stdout_at, stderr_at, MAX_LIVE_CHUNK);
        if stdout.is_empty() && stderr.is_empty() {
            if ended {
                return;
            }
            tokio::time::sleep(LIVE_INTERVAL).await;
            continue;
        }
        let sent = (stdout.len(), stderr.len());
        let request = TaskRequest::Output {
            job,
            index,
            attempt,
            stdout_at: stdout_at as u64,
            stderr_at: stderr_at as u64,
            stdout,
            stderr,
        };
        stdout_at += sent.0;
        stderr_at += sent.1;
        if let Err(e) = net.task(coordinator, request).await {
            tracing::debug!(%job, index, "live output not delivered: {e}");
        }
    }
}
