//! The runner threads (one per slot): each takes ready tasks off the
//! [`RunQueue`](super::task::RunQueue) and runs them one after the other in
//! a fresh sandbox, collects the files they wrote, signs the receipt and
//! hands it to the outbox — or gives the task back.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::manifest::{GUEST_INPUT, GUEST_OUTPUT, preopen_key};
use corral_protocol::messages::RejectReason;
use corral_protocol::receipt::{Captured, MAX_FILES, OutputFile, TaskReceipt, TaskStatus};
use corral_protocol::tree::{MAX_TREE_BYTES, TreeListing};

use super::ctx::{WorkerCtx, WorkerEvent};
use super::inputs::{compiled_for, fetch_inputs, shared_tree};
use super::outbox::Outboxed;
use super::task::{Assignment, Prepared};
use super::workdir::WorkDir;
use crate::blobs::BlobStore;
use crate::runtime::{Limits, Preopen, RunSpec, Stdin};
use crate::sync::lock;

/// Longest trap message kept in a receipt.
const MAX_TRAP_MESSAGE: usize = 1024;

/// A runner thread: runs ready tasks one after the other, for as long as
/// the daemon lives. A slot goes from one task to the next without waiting
/// for the event loop.
pub(super) fn runner(ctx: &Arc<WorkerCtx>, n: u16) {
    let work = WorkDir::new(ctx.blobs.tmp_dir().join(format!("run-{n}")));
    let tid = nix::unistd::gettid().as_raw();
    loop {
        let (task, prepared) = ctx.runs.pop();
        task.started.store(true, Ordering::Relaxed);
        let result = if task.cancel.is_stopped() {
            Ok(None)
        } else {
            tracing::debug!(job = %task.manifest.job, index = task.index, "running");
            run_blocking(ctx, &work, tid, &task, &prepared).map(|receipt| {
                // Stopped part way: its result is not wanted.
                (!task.cancel.is_stopped()).then_some(receipt)
            })
        };
        finish(ctx, task, result);
    }
}

/// Fetches what an accepted task needs, then queues it for a runner.
pub(super) async fn fetch_then_queue(ctx: Arc<WorkerCtx>, task: Assignment) {
    match fetch_inputs(&ctx, &task).await {
        Ok(prepared) if !task.cancel.is_stopped() => ctx.runs.push(task, prepared),
        Ok(_) => finish(&ctx, task, Ok(None)),
        Err(e) => finish(&ctx, task, Err(e)),
    }
}

/// A task ended: its receipt is kept and sent, or it is given back.
fn finish(ctx: &Arc<WorkerCtx>, task: Assignment, result: anyhow::Result<Option<TaskReceipt>>) {
    let Assignment {
        manifest,
        index,
        attempt,
        coordinator,
        hand_back,
        live,
        ..
    } = task;
    if let Some(live) = live {
        live.ended.store(true, Ordering::Release);
    }
    let job = manifest.job;
    match (result, hand_back.get().copied()) {
        (Ok(Some(receipt)), _) => {
            let item = Outboxed {
                coordinator,
                expires_ms: manifest.expires_ms,
                job,
                index,
                attempt,
                receipt,
            };
            ctx.deliveries.keep(&ctx.courier(), item);
        }
        // Given back (the owner came back, the device is leaving): for that
        // reason, however the run ended.
        (Ok(None) | Err(_), Some(reason)) => {
            tracing::info!(%job, index, "handed back: {}", reason.describe());
            ctx.deliveries
                .hand_back(&ctx.courier(), coordinator, (job, index), reason);
        }
        (Ok(None), None) => tracing::debug!(%job, index, "cancelled"),
        (Err(e), None) => {
            // Could not run it here (a blob would not come, the work
            // directory or the engine failed): hand the task back so it
            // runs elsewhere. Not a transient reason: it costs an attempt.
            tracing::warn!(%job, index, "cannot run the task, handing it back: {e:#}");
            ctx.deliveries.hand_back(
                &ctx.courier(),
                coordinator,
                (job, index),
                RejectReason::InputsUnavailable,
            );
        }
    }
    // Last: the receipt's sender (or the hand-back) wakes the event loop
    // first, and this event is usually taken in the same turn instead of
    // waking it once more on its own.
    if let Err(e) = ctx.events.try_send(WorkerEvent::Finished { job, index }) {
        // Cannot be full (see `events_capacity`); closed only at shutdown.
        tracing::debug!(%job, index, "the end of a task not told to the loop: {e}");
    }
}

/// Runs a task on this runner thread (`tid`).
fn run_blocking(
    ctx: &WorkerCtx,
    work: &WorkDir,
    tid: i32,
    task: &Assignment,
    prepared: &Prepared,
) -> anyhow::Result<TaskReceipt> {
    let (manifest, index, attempt) = (&*task.manifest, task.index, task.attempt);
    let t0 = std::time::Instant::now();
    let compiled = compiled_for(ctx, manifest, &prepared.module)?;
    let (output, input) = work
        .prepare()
        .context("cannot make the task's directory ready")?;
    // The guest's fds from 3: the job's trees as given, then `/input` and
    // `/output` of a batch (DESIGN §6).
    let mut preopens = Vec::with_capacity(manifest.dirs.len() + 2);
    let mut writable: Vec<(String, PathBuf, TreeListing)> = Vec::new();
    for (i, dir) in manifest.dirs.iter().enumerate() {
        if dir.writable {
            let copy = work.root.join(format!("dir{i}"));
            ctx.blobs.materialize(&dir.tree_hash, &copy, true)?;
            // Files come back at the preopen's key: a relative name's
            // under `/<name>`, as receipts carry absolute guest paths.
            writable.push((
                preopen_key(&dir.guest_path),
                copy.clone(),
                ctx.blobs.listing(&dir.tree_hash)?,
            ));
            preopens.push(Preopen {
                host: copy,
                guest: dir.guest_path.clone(),
                writable: true,
            });
        } else {
            preopens.push(Preopen {
                host: shared_tree(&ctx.blobs, &dir.tree_hash)?,
                guest: dir.guest_path.clone(),
                writable: false,
            });
        }
    }
    if let Some((name, blob)) = &prepared.input {
        let target = input.join(name);
        if std::fs::hard_link(blob, &target).is_err() {
            std::fs::copy(blob, &target)?;
        }
        preopens.push(Preopen {
            host: input,
            guest: GUEST_INPUT.into(),
            writable: false,
        });
    }
    if manifest.output {
        preopens.push(Preopen {
            host: output.clone(),
            guest: GUEST_OUTPUT.into(),
            writable: true,
        });
    }
    let spec = RunSpec {
        args: manifest.task_args(index),
        env: manifest
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        stdin: match &prepared.stdin {
            Some(path) => Stdin::Bytes(
                std::fs::read(path)
                    .context("cannot read the task's stdin")?
                    .into(),
            ),
            None => Stdin::Empty,
        },
        passthrough: false,
        preopens,
        limits: Limits {
            timeout: Duration::from_millis(manifest.limits.timeout_ms),
            memory_bytes: manifest.limits.memory_bytes,
            output_bytes: manifest.limits.output_bytes,
            disk_bytes: manifest.limits.disk_bytes,
            files: manifest.limits.files,
        },
        cancel: Some(task.cancel.clone()),
        live: task.live.as_ref().map(|l| l.output.clone()),
    };
    let t1 = std::time::Instant::now();
    // The guest runs on this thread: the CPU time it gets over the time it
    // takes is what a slot gets here now.
    lock(&ctx.share).started(tid, t1, crate::capacity::thread_cpu_time());
    let outcome = ctx.runtime.run(&compiled, &spec);
    let t2 = std::time::Instant::now();
    lock(&ctx.share).ended(tid, t2, crate::capacity::thread_cpu_time());
    let outcome = outcome?;

    // Outer trees first: where nested trees (`/` and `/data`) both hold a
    // path, the inner one's file is kept, as the guest's libc resolves a
    // path to the longest matching preopen; `/output` last of all.
    writable.sort_by_key(|(guest, _, _)| guest.len());
    let mut files = Vec::new();
    for (guest, copy, listing) in &writable {
        files.extend(collect(&ctx.blobs, copy, guest, Some(listing))?.0);
    }
    let left = if manifest.output {
        let (written, left) = collect(&ctx.blobs, &output, GUEST_OUTPUT, None)?;
        files.extend(written);
        left
    } else {
        0
    };
    work.clean
        .set(left == 0 && prepared.input.is_none() && writable.is_empty());
    // Stable: of two files at one path, the one collected last is kept.
    files.reverse();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|later, kept| later.path == kept.path);
    if files.len() > MAX_FILES {
        anyhow::bail!(
            "the task wrote {} files; at most {MAX_FILES} come back",
            files.len()
        );
    }
    tracing::debug!(
        setup_us = (t1 - t0).as_micros() as u64,
        run_us = (t2 - t1).as_micros() as u64,
        collect_us = t2.elapsed().as_micros() as u64,
        "task timings"
    );
    let mut stdout = outcome.stdout;
    if ctx.fault_lie {
        stdout.extend_from_slice(b"(a lie told by a faulty worker)\n");
    }
    let status = match outcome.status {
        TaskStatus::Trapped { mut message } => {
            if message.len() > MAX_TRAP_MESSAGE {
                let mut cut = MAX_TRAP_MESSAGE;
                while !message.is_char_boundary(cut) {
                    cut -= 1;
                }
                message.truncate(cut);
            }
            TaskStatus::Trapped { message }
        }
        other => other,
    };
    Ok(TaskReceipt {
        job: manifest.job,
        index,
        attempt,
        worker: ctx.me,
        status,
        stdout: Captured::new(stdout, outcome.stdout_truncated),
        stderr: Captured::new(outcome.stderr, outcome.stderr_truncated),
        files,
        engine: outcome.engine,
        arch: std::env::consts::ARCH.to_string(),
        duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
    })
}

/// The files under `root` as output files at `guest/…`, stored as blobs;
/// with a listing, only those created or changed. Also how many entries of
/// any kind are under `root`.
fn collect(
    blobs: &BlobStore,
    root: &Path,
    guest: &str,
    listing: Option<&TreeListing>,
) -> anyhow::Result<(Vec<OutputFile>, usize)> {
    let shipped: HashMap<&str, ContentHash> = listing
        .map(|l| l.files.iter().map(|f| (f.path.as_str(), f.hash)).collect())
        .unwrap_or_default();
    let mut files = Vec::new();
    let mut total = 0u64;
    let mut entries = 0;
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
        if entry.depth() > 0 {
            entries += 1;
        }
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry.path().strip_prefix(root).context("walked outside")?;
        let Some(rel) = rel.to_str() else {
            tracing::warn!(
                "an output file name is not UTF-8 and is skipped: {}",
                rel.display()
            );
            continue;
        };
        let (hash, size) = blobs.put_file(entry.path())?;
        if shipped.get(rel) == Some(&hash) {
            continue;
        }
        total = total.saturating_add(size);
        if total > MAX_TREE_BYTES {
            anyhow::bail!("the task wrote more than {MAX_TREE_BYTES} bytes of files");
        }
        files.push(OutputFile {
            path: format!("{}/{rel}", guest.trim_end_matches('/')),
            size,
            hash,
        });
    }
    Ok((files, entries))
}
