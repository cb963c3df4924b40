//! `corral run` on the mesh (`corral jobs`, `job`, `results` and `cancel` are
//! in `cmd/jobs.rs`).
//! The CLI puts the job's blobs (module, inputs, trees) into the data dir's
//! blob store, hands the job to the local daemon over the control socket,
//! follows it, and writes the results from the blob store (DESIGN §3, §9).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::manifest::EngineReq;
use indicatif::{ProgressBar, ProgressStyle};

use super::{EXIT_TRAP, UsageError};
use crate::blobs::{BlobStore, FileHashes};
use crate::cli::RunArgs;
use crate::control::Request;
use crate::control::client;
use crate::control::wire::{StreamedOutput, SubmitSpec};
use crate::job::outdir::OutDir;
use crate::job::plan::JobPlan;
use crate::job::report::{JobReport, JobState, TaskRunState};
use crate::runtime::EngineChoice;

/// Longest the CLI waits for news of the job before asking again.
const WATCH_MS: u64 = 500;

/// Without a daemon the command cannot be carried out as given: a usage error
/// (exit 2), so it is never mistaken for a task's own exit code 1.
fn no_daemon(data_dir: &Path) -> anyhow::Error {
    anyhow::Error::new(super::UsageError(format!(
        "no corral daemon is running for {}: start one with `corral up` (after `corral init` \
         or `corral join TOKEN`), or run this device alone with --local",
        data_dir.display()
    )))
}

/// Submits a job to the local daemon and follows it to the end.
pub fn run_remote(
    data_dir: &Path,
    args: &RunArgs,
    plan: &JobPlan,
    memo: &mut FileHashes,
) -> anyhow::Result<ExitCode> {
    if !client::daemon_running(data_dir) {
        return Err(no_daemon(data_dir));
    }
    let batch = plan.batch;
    let out = if batch {
        Some(OutDir::create(
            &args.out.clone().unwrap_or_else(|| "corral-out".into()),
        )?)
    } else {
        None
    };
    let blobs = BlobStore::open(data_dir)?;
    // One task behaves like a local command: what is piped into corral is
    // the task's stdin (a terminal is not read: the task sees end of file).
    let stdin = if batch || std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        None
    } else {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(
                std::io::stdin(),
                corral_protocol::manifest::MAX_STDIN_BYTES + 1,
            ),
            &mut bytes,
        )
        .context("cannot read stdin")?;
        if bytes.len() as u64 > corral_protocol::manifest::MAX_STDIN_BYTES {
            return Err(UsageError(format!(
                "stdin holds more than {} bytes; pass large data with --inputs or --dir",
                corral_protocol::manifest::MAX_STDIN_BYTES
            ))
            .into());
        }
        (!bytes.is_empty())
            .then(|| blobs.put_bytes(&bytes))
            .transpose()?
    };
    let id = submit_with_stdin(data_dir, plan, args.verify.unwrap_or(1), stdin, memo)?;
    if args.detach {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(out) = out else {
        let mut shown = Shown::default();
        let report = follow_with(data_dir, &id, false, Some(&mut shown))?;
        return finish_single(&blobs, &report, &shown);
    };
    let report = follow(data_dir, &id, batch)?;
    materialize(&blobs, &report, &out)?;
    for task in report
        .tasks
        .iter()
        .filter(|t| t.state != TaskRunState::Done)
    {
        let why = match (&task.exit_code, &task.message) {
            (Some(code), _) => format!("exited with {code}"),
            (None, Some(message)) => format!("{}: {message}", task.reason),
            (None, None) => task.reason.clone(),
        };
        eprintln!("corral: task {} failed: {why}", task.index);
    }
    if report.mismatches > 0 {
        eprintln!(
            "corral: {} task(s) gave different results on different devices; the majority was kept (see job.json)",
            report.mismatches
        );
    }
    let spread: Vec<String> = report
        .devices
        .iter()
        .filter(|(_, c)| c.done > 0)
        .map(|(name, c)| format!("{name} {}", c.done))
        .collect();
    eprintln!(
        "corral: job {}: {} task(s), {} done, {} failed in {:.2}s; tasks per device: {} → {}",
        report.id,
        report.tasks_total,
        report.tasks_done,
        report.tasks_failed,
        report.duration_ms as f64 / 1000.0,
        if spread.is_empty() {
            "none".to_string()
        } else {
            spread.join(", ")
        },
        out.root().display()
    );
    Ok(
        if report.tasks_failed == 0 && report.state == JobState::Completed {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// Puts the job's blobs into the data dir and hands the job to the daemon;
/// returns its id.
pub fn submit(data_dir: &Path, plan: &JobPlan, verify: u8) -> anyhow::Result<String> {
    let mut memo = FileHashes::open(data_dir);
    submit_with_stdin(data_dir, plan, verify, None, &mut memo)
}

/// As [`submit`], with the blob every task reads on stdin, the files'
/// hashes looked up in `memo` (the one the module's hash came from).
pub fn submit_with_stdin(
    data_dir: &Path,
    plan: &JobPlan,
    verify: u8,
    stdin: Option<ContentHash>,
    memo: &mut FileHashes,
) -> anyhow::Result<String> {
    let blobs = BlobStore::open(data_dir)?;
    let shipped = super::ship::ship(data_dir, &blobs, plan, memo)?;
    let spec = SubmitSpec {
        module: shipped.module,
        module_name: plan.module_name.clone(),
        args: plan.args.clone(),
        env: plan.env.clone(),
        tasks: plan.task_count(),
        inputs: shipped.inputs,
        dirs: shipped.dirs,
        limits: corral_protocol::manifest::Limits {
            timeout_ms: u64::try_from(plan.limits.timeout.as_millis()).unwrap_or(u64::MAX),
            memory_bytes: plan.limits.memory_bytes,
            output_bytes: plan.limits.output_bytes,
            disk_bytes: plan.limits.disk_bytes,
            files: plan.limits.files,
        },
        engine: match plan.engine {
            EngineChoice::Auto => EngineReq::Any,
            EngineChoice::Jit => EngineReq::Jit,
            EngineChoice::Interp => EngineReq::Interp,
        },
        verify,
        stdin,
        output: plan.batch,
    };
    let answer = client::call(
        data_dir,
        Request::Submit {
            spec: Box::new(spec),
        },
    )?;
    Ok(answer["job"]
        .as_str()
        .context("the daemon did not return a job id")?
        .to_string())
}

/// The job's record (its counts only, with `summary`) once it differs from
/// change `seq` (or after a while).
fn watch_report(data_dir: &Path, id: &str, seq: u64, summary: bool) -> anyhow::Result<JobReport> {
    let value = client::call(
        data_dir,
        Request::Watch {
            id: id.to_string(),
            seq,
            wait_ms: WATCH_MS,
            summary,
        },
    )?;
    serde_json::from_value(value).context("the daemon's job record is not understood")
}

pub(super) fn fetch_report(data_dir: &Path, id: &str) -> anyhow::Result<JobReport> {
    let value = client::call(data_dir, Request::Job { id: id.to_string() })?;
    serde_json::from_value(value).context("the daemon's job record is not understood")
}

/// What `corral run` has shown of a single task's output while it ran.
#[derive(Default)]
struct Shown {
    /// The streaming run it came from (0: none yet).
    run: u32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Prints what the job's running task wrote since the last call.
fn show_live(data_dir: &Path, id: &str, shown: &mut Shown) -> anyhow::Result<()> {
    for _ in 0..2 {
        let value = client::call(
            data_dir,
            Request::Output {
                id: id.to_string(),
                stdout_from: shown.stdout.len() as u64,
                stderr_from: shown.stderr.len() as u64,
            },
        )?;
        if value.is_null() {
            return Ok(());
        }
        let live: StreamedOutput =
            serde_json::from_value(value).context("the daemon's live output is not understood")?;
        if live.run != shown.run {
            // Another device runs the task now: its output starts over.
            if shown.run != 0 {
                eprintln!(
                    "corral: the task started over on {}; its output follows from the start",
                    live.peer
                );
            }
            *shown = Shown {
                run: live.run,
                ..Shown::default()
            };
            continue;
        }
        for (bytes, kept, mut sink) in [
            (
                live.stdout,
                &mut shown.stdout,
                Box::new(std::io::stdout()) as Box<dyn Write>,
            ),
            (live.stderr, &mut shown.stderr, Box::new(std::io::stderr())),
        ] {
            if !bytes.is_empty() {
                sink.write_all(&bytes)?;
                sink.flush()?;
                kept.extend_from_slice(&bytes);
            }
        }
        return Ok(());
    }
    Ok(())
}

/// Polls the job until it ends, showing progress and refusals on stderr.
pub fn follow(data_dir: &Path, id: &str, batch: bool) -> anyhow::Result<JobReport> {
    follow_with(data_dir, id, batch, None)
}

/// As [`follow`]; with `shown`, a single task's output is printed as it
/// comes and kept there.
fn follow_with(
    data_dir: &Path,
    id: &str,
    batch: bool,
    mut shown: Option<&mut Shown>,
) -> anyhow::Result<JobReport> {
    let progress = if batch {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} done · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let mut told: BTreeSet<(String, String)> = BTreeSet::new();
    let started = Instant::now();
    let mut hinted = false;
    let mut seq = u64::MAX;
    loop {
        // Counts while it runs; the whole record once, at the end.
        let report = watch_report(data_dir, id, seq, true)?;
        seq = report.seq;
        for refusal in &report.refusals {
            if told.insert((refusal.peer.clone(), refusal.reason.clone())) {
                progress
                    .suspend(|| eprintln!("corral: {} refused: {}", refusal.peer, refusal.reason));
            }
        }
        progress.set_length(u64::from(report.tasks_total));
        progress.set_position(u64::from(report.tasks_done + report.tasks_failed));
        let per_device: Vec<String> = report
            .devices
            .iter()
            .map(|(name, c)| format!("{name} {}✓ {}▶", c.done, c.running))
            .collect();
        progress.set_message(per_device.join(" · "));
        if report.state != JobState::Running {
            progress.finish_and_clear();
            return fetch_report(data_dir, id);
        }
        if let Some(shown) = shown.as_deref_mut() {
            show_live(data_dir, id, shown)?;
        }
        let anything = report.tasks_done + report.tasks_failed > 0
            || report.devices.values().any(|c| c.running > 0);
        if !anything && !hinted && started.elapsed() > Duration::from_secs(5) {
            hinted = true;
            progress.suspend(|| {
                eprintln!(
                    "corral: waiting for an idle device to take the job (`corral peers` lists them)"
                )
            });
        }
    }
}

/// One task: its stdout and stderr as if it had run here (the part not
/// already shown as it ran), and its exit code.
fn finish_single(blobs: &BlobStore, report: &JobReport, shown: &Shown) -> anyhow::Result<ExitCode> {
    let task = report.tasks.first().context("the job has no task")?;
    if task.stdout_sha256.is_empty() {
        eprintln!(
            "corral: the task did not run: {}",
            task.message.as_deref().unwrap_or(&task.reason)
        );
        return Ok(ExitCode::FAILURE);
    }
    let mut told = false;
    for (hash, before, mut sink) in [
        (
            &task.stdout_sha256,
            &shown.stdout,
            Box::new(std::io::stdout()) as Box<dyn Write>,
        ),
        (
            &task.stderr_sha256,
            &shown.stderr,
            Box::new(std::io::stderr()),
        ),
    ] {
        let hash: ContentHash = hash.parse().context("bad hash in the job record")?;
        let bytes = blobs.read(&hash, u64::MAX)?;
        let rest = match bytes.strip_prefix(before.as_slice()) {
            Some(rest) => rest,
            None => {
                // What was shown came from a run that did not finish (its
                // device left): the kept run's output, whole, is the record.
                if !told {
                    told = true;
                    eprintln!(
                        "corral: the output above came from a run that did not finish; the task's output on {} follows in full",
                        task.peer
                    );
                }
                &bytes
            }
        };
        sink.write_all(rest)?;
        sink.flush()?;
    }
    if let Some(code) = task.exit_code {
        return Ok(ExitCode::from((code & 0xff) as u8));
    }
    let why = match task.reason.as_str() {
        "trap" => format!(
            "the module trapped: {}",
            task.message.as_deref().unwrap_or("")
        ),
        "timeout" => {
            "the task ran past its time limit and was stopped (raise it with --timeout)".into()
        }
        "memory_limit" => {
            "the task needed more memory than its limit (raise it with --memory)".into()
        }
        "output_limit" => {
            "the task wrote more than its output limit (raise it with --output-limit)".into()
        }
        "disk_limit" => "the task tried to write more than its disk limit \
             (raise it with --disk, or --files for the number of files)"
            .into(),
        other => other.to_string(),
    };
    eprintln!("corral: {why} (on {})", task.peer);
    Ok(ExitCode::from(EXIT_TRAP))
}

fn copy_blob(blobs: &BlobStore, hash: &str, dest: &Path) -> anyhow::Result<()> {
    let hash: ContentHash = hash.parse().context("bad hash in the job record")?;
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    if !blobs.is_intact(&hash) {
        anyhow::bail!(
            "result blob {} for {} is missing or was corrupt",
            hash.short(),
            dest.display()
        );
    }
    std::fs::copy(blobs.path(&hash), dest).with_context(|| {
        format!(
            "result blob {} is missing for {}",
            hash.short(),
            dest.display()
        )
    })?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

/// Writes OUT from the job record and the blob store: each task's stdout,
/// stderr and files, and job.json.
pub fn materialize(blobs: &BlobStore, report: &JobReport, out: &OutDir) -> anyhow::Result<()> {
    for task in &report.tasks {
        if task.stdout_sha256.is_empty() {
            continue;
        }
        let dir = out.task_dir(task.index);
        copy_blob(blobs, &task.stdout_sha256, &dir.join("stdout"))?;
        copy_blob(blobs, &task.stderr_sha256, &dir.join("stderr"))?;
        for file in &task.files {
            corral_protocol::manifest::check_guest_path(&file.path)
                .map_err(|e| anyhow::anyhow!("task {}: bad output path: {e}", task.index))?;
            let dest = dir.join("files").join(file.path.trim_start_matches('/'));
            copy_blob(blobs, &file.sha256, &dest)?;
        }
    }
    out.write_report(report)
}
