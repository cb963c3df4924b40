//! What the coordinator tells about its jobs: `corral job` (a job's record,
//! with or without its tasks) and `corral jobs` (every job, newest first).

use std::collections::BTreeMap;

use corral_protocol::codec;
use corral_protocol::envelope::Signed;
use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::{JobManifest, TaskSet};
use corral_protocol::receipt::TaskStatus;
use corral_scheduler::batch::TaskState;

use super::records::{JobRecord, TaskRecord, TaskRunState};
use super::{Coordinator, Job};
use crate::clock::Clock;
use crate::job::report::{DeviceCount, FileReport, JobReport, RunReport, TaskReport};
use crate::store::Records;

impl<C: Clock> Coordinator<C> {
    /// `corral job ID --json` (and OUT/job.json); `name` names the devices
    /// running its tasks.
    pub fn report(&self, id: &JobId, name: &dyn Fn(&PeerKey) -> String) -> Option<JobReport> {
        let loaded;
        let job = match self.jobs.get(id) {
            Some(job) => job,
            None => {
                loaded = self.load_finished(id)?;
                &loaded
            }
        };
        Some(report_of(*id, job, true, name, self.clock.now_ms()))
    }

    /// A job's counts, devices and refusals without its tasks, while it is
    /// in memory.
    pub fn summary(&self, id: &JobId, name: &dyn Fn(&PeerKey) -> String) -> Option<JobReport> {
        self.jobs
            .get(id)
            .map(|job| report_of(*id, job, false, name, self.clock.now_ms()))
    }

    /// `corral jobs`: every job this node coordinated, newest first.
    pub fn list(&self) -> Vec<serde_json::Value> {
        let mut jobs: Vec<(u64, serde_json::Value)> = self
            .store
            .scan_records::<JobRecord>(Records::Jobs, b"")
            .into_iter()
            .filter_map(|(key, record)| {
                let id = JobId::from_bytes(key.as_slice().try_into().ok()?);
                let (state, total, done, failed) = match self.jobs.get(&id) {
                    Some(job) => {
                        let done = job
                            .tasks
                            .iter()
                            .filter(|t| t.state == TaskRunState::Done)
                            .count();
                        let failed = job
                            .tasks
                            .iter()
                            .filter(|t| t.state == TaskRunState::Failed)
                            .count();
                        (job.record.state, job.tasks.len(), done, failed)
                    }
                    None => {
                        let tasks = self
                            .store
                            .scan_records::<TaskRecord>(Records::Tasks, id.as_bytes());
                        let done = tasks
                            .iter()
                            .filter(|(_, t)| t.state == TaskRunState::Done)
                            .count();
                        let failed = tasks
                            .iter()
                            .filter(|(_, t)| t.state == TaskRunState::Failed)
                            .count();
                        let total = codec::from_canonical_bytes::<Signed<JobManifest>>(
                            &record.signed,
                            codec::MAX_MANIFEST_BYTES + 1024,
                        )
                        .ok()
                        .and_then(|s| s.verify_signature_from(&self.me).ok())
                        .map_or(0, |m| m.task_count() as usize);
                        (record.state, total, done, failed)
                    }
                };
                Some((
                    record.created_ms,
                    serde_json::json!({
                        "id": id.to_string(),
                        "state": state,
                        "module": record.module_name,
                        "created_ms": record.created_ms,
                        "tasks_total": total,
                        "tasks_done": done,
                        "tasks_failed": failed,
                    }),
                ))
            })
            .collect();
        jobs.sort_by_key(|(created, _)| std::cmp::Reverse(*created));
        jobs.into_iter().map(|(_, v)| v).collect()
    }
}

/// progress bar does not need every task of a large job on every change).
fn report_of(
    id: JobId,
    job: &Job,
    with_tasks: bool,
    name: &dyn Fn(&PeerKey) -> String,
    now_ms: u64,
) -> JobReport {
    let mut devices: BTreeMap<String, DeviceCount> = BTreeMap::new();
    let mut tasks = Vec::with_capacity(if with_tasks { job.tasks.len() } else { 0 });
    let (mut done, mut failed) = (0u32, 0u32);
    let input_name = |i: u32| match &job.manifest.tasks {
        TaskSet::Inputs(inputs) => inputs.get(i as usize).map(|s| s.name.clone()),
        TaskSet::Count(_) => None,
    };
    for (i, (record, task)) in job.tasks.iter().zip(job.batch.tasks()).enumerate() {
        if let TaskState::Running(on) = &task.state {
            for peer in on.keys() {
                devices.entry(name(peer)).or_default().running += 1;
            }
        }
        let winner = record.winner.and_then(|w| record.runs.get(w));
        if let Some(run) = winner {
            devices.entry(run.name.clone()).or_default().done += 1;
        }
        // As reported: done means it exited 0; any other end is a failure.
        let state = match (record.state, winner) {
            (TaskRunState::Done, Some(run)) if run.status == (TaskStatus::Exited { code: 0 }) => {
                TaskRunState::Done
            }
            (TaskRunState::Done | TaskRunState::Failed, _) => TaskRunState::Failed,
            (other, _) => other,
        };
        match state {
            TaskRunState::Done => done += 1,
            TaskRunState::Failed => failed += 1,
            TaskRunState::Queued | TaskRunState::Running => {}
        }
        if !with_tasks {
            continue;
        }
        let (exit_code, message) = match winner.map(|r| &r.status) {
            Some(TaskStatus::Exited { code }) => (Some(*code), None),
            Some(TaskStatus::Trapped { message }) => (None, Some(message.clone())),
            _ => (None, None),
        };
        let verified = job.record.verify > 1;
        tasks.push(TaskReport {
            index: i as u32,
            state,
            exit_code,
            reason: winner.map_or_else(
                || {
                    if state == TaskRunState::Failed {
                        "not_run"
                    } else {
                        ""
                    }
                    .to_string()
                },
                |r| r.status.reason_code().to_string(),
            ),
            message: message.or_else(|| {
                (state == TaskRunState::Failed && winner.is_none())
                    .then(|| record.reason.clone())
                    .flatten()
            }),
            input: input_name(i as u32),
            peer: winner.map(|r| r.name.clone()).unwrap_or_default(),
            engine: winner
                .map(|r| r.engine.name().to_string())
                .unwrap_or_default(),
            arch: winner.map(|r| r.arch.clone()).unwrap_or_default(),
            attempts: record.attempts.max(task.attempts),
            duration_ms: winner.map_or(0, |r| r.duration_ms),
            stdout_sha256: winner.map(|r| r.stdout.to_hex()).unwrap_or_default(),
            stderr_sha256: winner.map(|r| r.stderr.to_hex()).unwrap_or_default(),
            output_truncated: winner.is_some_and(|r| r.truncated),
            files: winner
                .map(|r| {
                    r.files
                        .iter()
                        .map(|f| FileReport {
                            path: f.path.clone(),
                            size: f.size,
                            sha256: f.hash.to_hex(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            runs: if verified {
                record
                    .runs
                    .iter()
                    .enumerate()
                    .map(|(n, r)| RunReport {
                        peer: r.name.clone(),
                        arch: r.arch.clone(),
                        engine: r.engine.name().to_string(),
                        stdout_sha256: r.stdout.to_hex(),
                        kept: record.winner == Some(n),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            mismatch: record.mismatch,
        });
    }
    let duration_ms = job
        .record
        .finished_ms
        .unwrap_or(now_ms)
        .saturating_sub(job.record.created_ms);
    let mut report = JobReport::new(
        id.to_string(),
        job.manifest.module_hash.to_hex(),
        duration_ms,
        tasks,
    );
    report.tasks_total = u32::try_from(job.tasks.len()).unwrap_or(u32::MAX);
    report.tasks_done = done;
    report.tasks_failed = failed;
    report.state = job.record.state;
    report.devices = devices;
    report.refusals = job.refusals.clone();
    report.mismatches = job.tasks.iter().filter(|t| t.mismatch).count() as u32;
    report.seq = job.seq;
    report.wall_us = job
        .started
        .zip(job.ended)
        .map(|(s, e)| u64::try_from(e.duration_since(s).as_micros()).unwrap_or(u64::MAX));
    report
}
