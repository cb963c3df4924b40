//! One request as one task on the mesh, from a client of the local daemon:
//! the body into the data dir's blob store (the daemon shares it; not
//! synced to disk, as a batch's inputs are: it matters only while the
//! request waits, and a torn copy fails its hash check), a
//! one-task job submitted over the control socket, long polls (`Watch`)
//! until it ends — each answered the moment the job changes, no fixed
//! sleep — and the task's stdout read from the blob store, where the
//! daemon put it on the way to the job's record. The job is then
//! forgotten: a server's requests do not pile up in `corral jobs`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::manifest::{EngineReq, Limits};
use corral_protocol::receipt::TaskStatus;

use crate::blobs::BlobStore;
use crate::control::client::call_async;
use crate::control::{Request, SubmitSpec};
use crate::job::report::{JobReport, JobState, TaskReport};

/// Longest one control exchange may take (a `Watch` waits at most a
/// second in the daemon).
const CALL_WAIT: Duration = Duration::from_secs(10);
/// Longest a `Watch` waits in the daemon before it answers anyway.
const WATCH_MS: u64 = 1000;

/// How to reach the daemon and its blob store.
#[derive(Clone)]
pub struct Mesh {
    /// The data dir (its control socket).
    pub data_dir: PathBuf,
    /// Its blob store.
    pub blobs: BlobStore,
}

/// One task to run.
#[derive(Clone, Debug)]
pub struct TaskSpec {
    /// The module's blob (already here).
    pub module: ContentHash,
    /// argv[0].
    pub name: String,
    /// The whole environment.
    pub env: Vec<(String, String)>,
    /// Its limits.
    pub limits: Limits,
}

/// How a task ended, as the server needs it.
#[derive(Debug)]
pub enum Ended {
    /// It exited with this code, having written `stdout`.
    Exited {
        /// Its exit code.
        code: i32,
        /// Its stdout, whole.
        stdout: Vec<u8>,
        /// The device that ran it.
        device: String,
    },
    /// A trap or a limit stopped it (`reason` and `message` as in the job
    /// record: `trap`, `timeout`, `memory_limit`, …).
    Stopped {
        /// Why.
        reason: String,
        /// The trap's message, when it trapped.
        message: Option<String>,
        /// The device that ran it.
        device: String,
    },
    /// No device ran it (refused everywhere, given up on, cancelled).
    NotRun {
        /// What the job record says.
        why: String,
    },
    /// It did not end in time: it was cancelled.
    TimedOut,
}

impl Mesh {
    /// Runs one task with `stdin` and waits for its end, at most `wait`
    /// (past it the job is cancelled).
    pub async fn run(
        &self,
        task: &TaskSpec,
        stdin: Vec<u8>,
        wait: Duration,
    ) -> anyhow::Result<(String, Ended)> {
        let started = std::time::Instant::now();
        let stdin = if stdin.is_empty() {
            None
        } else {
            let blobs = self.blobs.clone();
            Some(
                tokio::task::spawn_blocking(move || blobs.put_bytes_unsynced(&stdin))
                    .await
                    .context("the blob store's thread failed")??,
            )
        };
        let spec = SubmitSpec {
            module: task.module,
            module_name: task.name.clone(),
            args: Vec::new(),
            env: task.env.clone(),
            tasks: 1,
            inputs: Vec::new(),
            dirs: Vec::new(),
            limits: task.limits,
            engine: EngineReq::Any,
            verify: 1,
            stdin,
            output: false,
        };
        let answer = call_async(
            &self.data_dir,
            Request::Submit {
                spec: Box::new(spec),
            },
            CALL_WAIT,
        )
        .await?;
        let id = answer["job"]
            .as_str()
            .context("the daemon did not return a job id")?
            .to_string();
        let submitted = started.elapsed();
        tracing::debug!(job = %id, "a request's job is submitted");
        let ended = match tokio::time::timeout(wait, self.follow(&id)).await {
            Ok(report) => {
                let over = started.elapsed();
                let ended = self.ended(report?, task.limits.output_bytes).await?;
                tracing::debug!(job = %id, ?submitted, ?over, read = ?started.elapsed(), "request task");
                ended
            }
            Err(_) => {
                let cancel = Request::Cancel { id: id.clone() };
                if let Err(e) = call_async(&self.data_dir, cancel, CALL_WAIT).await {
                    tracing::warn!(job = %id, "cannot cancel a request's job: {e:#}");
                }
                Ended::TimedOut
            }
        };
        // The answer is taken: the job need not stay in `corral jobs`.
        // Forgotten beside the reply, not before it.
        let (data_dir, job) = (self.data_dir.clone(), id.clone());
        tokio::spawn(async move {
            let forget = Request::Forget { id: job.clone() };
            if let Err(e) = call_async(&data_dir, forget, CALL_WAIT).await {
                tracing::info!(%job, "a request's job stays in the records: {e:#}");
            }
        });
        Ok((id, ended))
    }

    /// Waits for job `id` to end; its whole record.
    async fn follow(&self, id: &str) -> anyhow::Result<JobReport> {
        let mut seq = u64::MAX;
        loop {
            let watch = Request::Watch {
                id: id.to_string(),
                seq,
                wait_ms: WATCH_MS,
                summary: false,
            };
            let value = call_async(&self.data_dir, watch, CALL_WAIT).await?;
            let report: JobReport = serde_json::from_value(value)
                .context("the daemon's job record is not understood")?;
            if report.state != JobState::Running {
                return Ok(report);
            }
            seq = report.seq;
        }
    }

    /// What the job's one task came to, its stdout read (at most
    /// `max_output` bytes: the task's own cap).
    async fn ended(&self, report: JobReport, max_output: u64) -> anyhow::Result<Ended> {
        let Some(task) = report.tasks.into_iter().next() else {
            anyhow::bail!("the job has no task");
        };
        let TaskReport {
            exit_code,
            reason,
            message,
            peer,
            stdout_sha256,
            ..
        } = task;
        let code = match exit_code {
            Some(code) => code,
            None if TaskStatus::is_stop_code(&reason) => {
                return Ok(Ended::Stopped {
                    reason,
                    message,
                    device: peer,
                });
            }
            None => {
                return Ok(Ended::NotRun {
                    why: message.unwrap_or(reason),
                });
            }
        };
        let hash: ContentHash = stdout_sha256
            .parse()
            .context("bad stdout hash in the job record")?;
        let blobs = self.blobs.clone();
        let stdout = tokio::task::spawn_blocking(move || blobs.read(&hash, max_output))
            .await
            .context("the blob store's thread failed")??;
        Ok(Ended::Exited {
            code,
            stdout,
            device: peer,
        })
    }
}
