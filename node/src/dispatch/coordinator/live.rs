//! Streamed output of a single-task job while it runs, for `corral run`:
//! kept in order per run, capped, and read back from an offset.

use corral_protocol::ids::{JobId, PeerKey};
use corral_scheduler::batch::TaskState;

use super::Coordinator;
use crate::clock::Clock;
use crate::control::wire::StreamedOutput;

/// What the running task of a single-task job has written so far.
pub(super) struct LiveRun {
    /// The run: its device and when it was placed there (a lost run's
    /// attempt number is given back, so a device running the task anew
    /// may use the same number).
    pub(super) peer: PeerKey,
    pub(super) started_ms: u64,
    /// Counts the runs that streamed: a new one starts the output over.
    pub(super) run: u32,
    pub(super) stdout: Vec<u8>,
    pub(super) stderr: Vec<u8>,
}

/// Most streamed bytes kept per stream of a running task (the receipt
/// carries the whole output, up to the job's cap).
const MAX_LIVE_BYTES: usize = 16 * 1024 * 1024;
/// Most streamed bytes of each stream handed to `corral run` per call.
pub const MAX_LIVE_READ: usize = 256 * 1024;

impl<C: Clock> Coordinator<C> {
    /// Output streamed by the run of a single-task job on `from`. Kept in
    /// order (a chunk must start where the last one ended); the first run
    /// to stream owns the output until it stops running, and a later run
    /// (another device's, or the same device's anew) starts it over.
    pub fn on_output(
        &mut self,
        from: PeerKey,
        id: JobId,
        index: u32,
        (stdout_at, stdout): (u64, &[u8]),
        (stderr_at, stderr): (u64, &[u8]),
    ) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if !job.is_live() || job.manifest.task_count() != 1 || index != 0 {
            return;
        }
        // Output is a sign of life: the run's lease starts again (a
        // device that does not hold the task is ignored).
        job.batch.on_alive(0, &from, self.clock.now_ms());
        let started = |peer: &PeerKey| match &job.batch.tasks()[0].state {
            TaskState::Running(on) => on.get(peer).copied(),
            _ => None,
        };
        let Some(started_ms) = started(&from) else {
            return;
        };
        let fresh = |run| LiveRun {
            peer: from,
            started_ms,
            run,
            stdout: Vec::new(),
            stderr: Vec::new(),
        };
        match &job.live {
            None => job.live = Some(fresh(1)),
            Some(live) if live.peer == from && live.started_ms == started_ms => {}
            // Another device's run still owns the output.
            Some(live) if live.peer != from && started(&live.peer) == Some(live.started_ms) => {
                return;
            }
            // The owner's run is gone (its device left, or runs the task
            // anew): this run's output starts over.
            Some(live) => job.live = Some(fresh(live.run + 1)),
        }
        let Some(live) = job.live.as_mut() else {
            return;
        };
        let cap = usize::try_from(job.manifest.limits.output_bytes)
            .unwrap_or(usize::MAX)
            .min(MAX_LIVE_BYTES);
        let mut changed = false;
        for (buf, at, bytes) in [
            (&mut live.stdout, stdout_at, stdout),
            (&mut live.stderr, stderr_at, stderr),
        ] {
            if at == buf.len() as u64 && !bytes.is_empty() {
                let room = cap.saturating_sub(buf.len());
                buf.extend_from_slice(&bytes[..bytes.len().min(room)]);
                changed = true;
            }
        }
        if changed {
            job.seq += 1;
        }
    }

    /// A single-task job's streamed output from the given offsets, while it
    /// runs (`None` when nothing streamed, or the job is not here).
    pub fn live_output(
        &self,
        id: &JobId,
        stdout_from: u64,
        stderr_from: u64,
        name: impl Fn(&PeerKey) -> String,
    ) -> Option<StreamedOutput> {
        let live = self.jobs.get(id)?.live.as_ref()?;
        let from = |buf: &[u8], at: u64| {
            let start = usize::try_from(at).unwrap_or(usize::MAX).min(buf.len());
            buf[start..buf.len().min(start + MAX_LIVE_READ)].to_vec()
        };
        Some(StreamedOutput {
            run: live.run,
            peer: name(&live.peer),
            stdout: from(&live.stdout, stdout_from),
            stderr: from(&live.stderr, stderr_from),
        })
    }
}
