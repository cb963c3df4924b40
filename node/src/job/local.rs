//! The local runner (`corral run --local`): every task of a job in this
//! process, in parallel up to the number of cores, each in a fresh sandbox.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::JobId;
use corral_protocol::manifest::preopen_key;
use corral_protocol::receipt::TaskStatus;
use indicatif::{ProgressBar, ProgressStyle};

use super::outdir::{OutDir, TreeSnapshot};
use super::plan::{GUEST_INPUT, GUEST_OUTPUT, JobPlan, Tasks};
use super::report::{JobReport, TaskReport, TaskRunState};
use crate::runtime::{Compiled, Outcome, Preopen, RunSpec, Runtime, Stdin};
use crate::sync::lock;

/// Stack of each task thread: guest frames run on it under the JIT (up to
/// the engine's 1 MiB wasm stack limit) on top of the host's own frames.
const TASK_STACK_BYTES: usize = 8 * 1024 * 1024;

/// A fresh random job id.
pub fn new_job_id() -> anyhow::Result<JobId> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a job id: {e}"))?;
    Ok(JobId::from_bytes(bytes))
}

/// The name this device goes by in reports.
pub fn device_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "local".to_string())
}

/// The `--dir` trees of a job, snapshotted once for all tasks.
struct Mounts<'a> {
    plan: &'a JobPlan,
    snapshots: Vec<Option<TreeSnapshot>>,
}

impl<'a> Mounts<'a> {
    fn new(plan: &'a JobPlan) -> anyhow::Result<Self> {
        let snapshots = plan
            .dirs
            .iter()
            .map(|d| d.writable.then(|| TreeSnapshot::take(&d.host)).transpose())
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { plan, snapshots })
    }

    /// Preopens for one task, in the guest's fd order from 3: the `--dir`
    /// trees as given, then `/input` (a job over inputs) and `/output` (a
    /// batch: `output`). Private copies of `rw` trees are returned too and
    /// must live until the task has ended.
    fn preopens(
        &self,
        output: Option<&Path>,
    ) -> anyhow::Result<(Vec<Preopen>, Vec<Option<tempfile::TempDir>>)> {
        let mut preopens = Vec::with_capacity(self.plan.dirs.len() + 2);
        let mut copies = Vec::with_capacity(self.plan.dirs.len());
        for (mount, snapshot) in self.plan.dirs.iter().zip(&self.snapshots) {
            match snapshot {
                Some(snapshot) => {
                    let copy = snapshot.private_copy()?;
                    preopens.push(Preopen {
                        host: copy.path().to_path_buf(),
                        guest: mount.guest.clone(),
                        writable: true,
                    });
                    copies.push(Some(copy));
                }
                None => {
                    preopens.push(Preopen {
                        host: mount.host.clone(),
                        guest: mount.guest.clone(),
                        writable: false,
                    });
                    copies.push(None);
                }
            }
        }
        if let Tasks::Inputs { dir, .. } = &self.plan.tasks {
            preopens.push(Preopen {
                host: dir.clone(),
                guest: GUEST_INPUT.into(),
                writable: false,
            });
        }
        if let Some(output) = output {
            preopens.push(Preopen {
                host: output.to_path_buf(),
                guest: GUEST_OUTPUT.into(),
                writable: true,
            });
        }
        Ok((preopens, copies))
    }

    /// Brings back what tasks changed in their `rw` copies. Nested trees
    /// (`/` and `/data`) are brought back outer first, so where both hold a
    /// path the inner one's file is kept, as the guest's libc resolves a
    /// path to the longest matching preopen; for the same reason a file in
    /// `keep` (written through the batch's `/output`) is left as it is.
    fn collect(
        &self,
        copies: &[Option<tempfile::TempDir>],
        keep: &HashSet<PathBuf>,
        dest_for: impl Fn(&str) -> anyhow::Result<PathBuf>,
    ) -> anyhow::Result<usize> {
        let mut changed = 0;
        let mut trees: Vec<_> = self
            .plan
            .dirs
            .iter()
            .zip(&self.snapshots)
            .zip(copies)
            .collect();
        trees.sort_by_key(|((mount, _), _)| preopen_key(&mount.guest).len());
        for ((mount, snapshot), copy) in trees {
            if let (Some(snapshot), Some(copy)) = (snapshot, copy) {
                let dest = dest_for(&preopen_key(&mount.guest))?;
                changed += snapshot.collect_changes(copy.path(), &dest, keep)?;
            }
        }
        Ok(changed)
    }
}

fn spec_for(
    plan: &JobPlan,
    index: u32,
    preopens: Vec<Preopen>,
    stdin: Stdin,
    passthrough: bool,
) -> RunSpec {
    RunSpec {
        args: plan.task_argv(index),
        env: plan.env.clone(),
        stdin,
        passthrough,
        preopens,
        limits: plan.limits,
        cancel: None,
        live: None,
    }
}

/// Runs one task the way `wasmtime run` would: stdin forwarded, stdout and
/// stderr streamed, only the `--dir` preopens (no `/output`). Files changed
/// in `rw` dirs are discarded (there is no OUT), and the user is told so.
pub fn run_single(
    runtime: &Runtime,
    compiled: &Compiled,
    plan: &JobPlan,
) -> anyhow::Result<Outcome> {
    let mounts = Mounts::new(plan)?;
    let (preopens, copies) = mounts.preopens(None)?;
    let spec = spec_for(plan, 0, preopens, Stdin::Inherit, true);
    let outcome = runtime.run(compiled, &spec)?;

    let discard = tempfile::tempdir().context("cannot create a temporary directory")?;
    let changed = mounts.collect(&copies, &HashSet::new(), |guest| {
        let dir = discard.path().join(guest.trim_start_matches('/'));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    })?;
    if changed > 0 {
        eprintln!(
            "corral: the task wrote {changed} file(s) in --dir rw trees; they were discarded: add --out DIR to keep them"
        );
    }
    Ok(outcome)
}

/// Runs every task of a batch, writes OUT, and returns the job report.
pub fn run_batch(
    runtime: &Runtime,
    compiled: &Compiled,
    plan: &JobPlan,
    out: &OutDir,
    parallel: usize,
) -> anyhow::Result<JobReport> {
    let started = Instant::now();
    let id = new_job_id()?;
    let mounts = Mounts::new(plan)?;
    let total = plan.task_count();
    let workers = parallel.clamp(1, total.max(1) as usize);
    let peer = device_name();

    let progress = ProgressBar::new(u64::from(total));
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} done · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let running = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let reports: Mutex<Vec<TaskReport>> = Mutex::new(Vec::with_capacity(total as usize));
    let first_error: Mutex<Option<anyhow::Error>> = Mutex::new(None);

    std::thread::scope(|scope| -> anyhow::Result<()> {
        for _ in 0..workers {
            let worker = std::thread::Builder::new()
                .name("corral-task".into())
                .stack_size(TASK_STACK_BYTES);
            worker
                .spawn_scoped(scope, || {
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Ok(index) = u32::try_from(index) else {
                            break;
                        };
                        if index >= total || lock(&first_error).is_some() {
                            break;
                        }
                        running.fetch_add(1, Ordering::Relaxed);
                        let result = run_task(runtime, compiled, plan, &mounts, out, index, &peer);
                        running.fetch_sub(1, Ordering::Relaxed);
                        match result {
                            Ok(report) => {
                                if report.state != TaskRunState::Done {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                                lock(&reports).push(report);
                            }
                            Err(e) => {
                                lock(&first_error).get_or_insert(
                                    e.context(format!("task {index} could not be run")),
                                );
                            }
                        }
                        progress.inc(1);
                        progress.set_message(format!(
                            "{} running on {peer} · {} failed",
                            running.load(Ordering::Relaxed),
                            failed.load(Ordering::Relaxed)
                        ));
                    }
                })
                .context("cannot start a task thread")?;
        }
        Ok(())
    })?;
    progress.finish_and_clear();
    if let Some(error) = lock(&first_error).take() {
        return Err(error);
    }
    let mut tasks = std::mem::take(&mut *lock(&reports));
    tasks.sort_by_key(|t| t.index);
    let report = JobReport::new(
        id.to_string(),
        plan.module.hash.to_hex(),
        u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        tasks,
    );
    out.write_report(&report)?;
    Ok(report)
}

fn run_task(
    runtime: &Runtime,
    compiled: &Compiled,
    plan: &JobPlan,
    mounts: &Mounts<'_>,
    out: &OutDir,
    index: u32,
    peer: &str,
) -> anyhow::Result<TaskReport> {
    let output = out.guest_dir(index, GUEST_OUTPUT)?;
    let (preopens, copies) = mounts.preopens(Some(&output))?;
    let spec = spec_for(plan, index, preopens, Stdin::Empty, false);
    let outcome = runtime.run(compiled, &spec)?;
    // What the task wrote at /output stays: it went through the deeper
    // preopen at any path a `/` tree holds too.
    let written: HashSet<PathBuf> = walkdir::WalkDir::new(&output)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(walkdir::DirEntry::into_path)
        .collect();
    mounts.collect(&copies, &written, |guest| out.guest_dir(index, guest))?;
    out.write_streams(index, &outcome.stdout, &outcome.stderr)?;
    let files = out.task_files(index)?;
    Ok(task_report(plan, index, peer, &outcome, files))
}

fn task_report(
    plan: &JobPlan,
    index: u32,
    peer: &str,
    outcome: &Outcome,
    files: Vec<super::report::FileReport>,
) -> TaskReport {
    let (exit_code, message) = match &outcome.status {
        TaskStatus::Exited { code } => (Some(*code), None),
        TaskStatus::Trapped { message } => (None, Some(message.clone())),
        _ => (None, None),
    };
    TaskReport {
        index,
        state: if exit_code == Some(0) {
            TaskRunState::Done
        } else {
            TaskRunState::Failed
        },
        exit_code,
        reason: outcome.status.reason_code().to_string(),
        message,
        input: plan.input_name(index).map(str::to_string),
        peer: peer.to_string(),
        engine: outcome.engine.name().to_string(),
        arch: std::env::consts::ARCH.to_string(),
        attempts: 1,
        duration_ms: u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
        stdout_sha256: ContentHash::of(&outcome.stdout).to_hex(),
        stderr_sha256: ContentHash::of(&outcome.stderr).to_hex(),
        output_truncated: outcome.stdout_truncated || outcome.stderr_truncated,
        files,
        runs: Vec::new(),
        mismatch: false,
    }
}
