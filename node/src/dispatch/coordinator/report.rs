//! A job's record as `corral job` and job.json show it, built from the job
//! (with or without its tasks).

use std::collections::BTreeMap;

use corral_protocol::ids::{JobId, PeerKey};
use corral_protocol::manifest::TaskSet;
use corral_protocol::receipt::TaskStatus;
use corral_scheduler::batch::TaskState;

use super::Job;
use super::records::TaskRunState;
use crate::job::report::{DeviceCount, FileReport, JobReport, Refusal, RunReport, TaskReport};

/// progress bar does not need every task of a large job on every change).
pub(super) fn report_of(
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
    report.cooled_off = job
        .lapses
        .iter()
        .map(|(peer, (count, reason))| Refusal {
            peer: name(peer),
            reason: reason.clone(),
            count: *count,
        })
        .collect();
    report.mismatches = job.tasks.iter().filter(|t| t.mismatch).count() as u32;
    report.seq = job.seq;
    report.wall_us = job
        .started
        .zip(job.ended)
        .map(|(s, e)| u64::try_from(e.duration_since(s).as_micros()).unwrap_or(u64::MAX));
    report
}
