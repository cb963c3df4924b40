//! `corral jobs`, `corral job ID`, `corral results ID --out DIR` and
//! `corral cancel ID`: following, fetching and stopping jobs through the
//! local daemon (DESIGN §9).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::UsageError;
use super::submit::{fetch_report, materialize};
use crate::blobs::BlobStore;
use crate::config::DataDir;
use crate::control::Request;
use crate::control::client;
use crate::job::outdir::OutDir;
use crate::job::report::JobState;

/// `corral jobs`.
pub fn jobs(data_dir: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::resolve(data_dir)?;
    let value = client::call(data_dir.root(), Request::Jobs)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    let list = value.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no jobs yet (submit one with `corral run MODULE …`)");
    }
    for job in list {
        println!(
            "{}  {:<10} {:>6}/{:<6} done  {:>4} failed  {}",
            job["id"].as_str().unwrap_or("?"),
            job["state"].as_str().unwrap_or("?"),
            job["tasks_done"],
            job["tasks_total"],
            job["tasks_failed"],
            job["module"].as_str().unwrap_or("")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `corral job ID`.
pub fn job(data_dir: Option<PathBuf>, id: &str, json: bool) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::resolve(data_dir)?;
    let report = fetch_report(data_dir.root(), id)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "job {}: {} — {}/{} done, {} failed",
        report.id, report.state, report.tasks_done, report.tasks_total, report.tasks_failed
    );
    for (name, c) in &report.devices {
        println!("  {name:<16} {} done, {} running", c.done, c.running);
    }
    for r in &report.refusals {
        println!("  {} refused {}×: {}", r.peer, r.count, r.reason);
    }
    for t in &report.tasks {
        println!(
            "  task {:<5} {:<8} {:<12} {:<6} attempts {}{}",
            t.index,
            t.state,
            t.peer,
            t.engine,
            t.attempts,
            if t.mismatch { "  (runs disagreed)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `corral results ID --out DIR`.
pub fn results(data_dir: Option<PathBuf>, id: &str, out: &Path) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::resolve(data_dir)?;
    let report = fetch_report(data_dir.root(), id)?;
    if report.state == JobState::Running {
        return Err(UsageError(format!(
            "job {id} is still running ({}/{} done); wait for it, or follow it with `corral job {id}`",
            report.tasks_done, report.tasks_total
        ))
        .into());
    }
    let out = OutDir::create(out)?;
    materialize(&BlobStore::open(data_dir.root())?, &report, &out)?;
    eprintln!(
        "corral: job {id} ({}): {} task(s) written to {}",
        report.state,
        report.tasks.len(),
        out.root().display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `corral cancel ID`.
pub fn cancel(data_dir: Option<PathBuf>, id: &str) -> anyhow::Result<ExitCode> {
    let data_dir = DataDir::resolve(data_dir)?;
    let value = client::call(data_dir.root(), Request::Cancel { id: id.to_string() })?;
    eprintln!(
        "corral: job {id} cancelled ({} running task(s) told to stop)",
        value["tasks_stopped"]
    );
    Ok(ExitCode::SUCCESS)
}
