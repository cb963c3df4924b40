//! `GET /api/jobs/{id}/results`: a finished job's results as one `.tar` in
//! the OUT layout `corral run --out` writes (`job.json`, `<task>/stdout`,
//! `<task>/stderr`, `<task>/files/<guest path>`), from the job's record and
//! the blob store. Streamed: written on a blocking thread into a bounded
//! queue of chunks, so memory stays small whatever the job's size.

use std::convert::Infallible;
use std::io::{BufWriter, Write};

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use tokio::sync::mpsc;

use super::Shared;
use super::reply::{Body, call, control_error, error};
use crate::blobs::BlobStore;
use crate::control::Request;
use crate::job::report::{JobReport, JobState};

/// Chunks written but not yet sent, at most (each up to [`CHUNK_BYTES`]).
const QUEUE: usize = 4;
/// Bytes gathered into one chunk.
const CHUNK_BYTES: usize = 64 * 1024;

/// The archive of job `id`, or why not (not finished, unknown, results no
/// longer on this device).
pub(super) async fn results(shared: &Shared, id: String) -> Response<Body> {
    let record = match call(shared, Request::Job { id: id.clone() }).await {
        Ok(record) => record,
        Err(e) => return control_error(&e),
    };
    let report: JobReport = match serde_json::from_value(record) {
        Ok(report) => report,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &format!("the job's record could not be read: {e}"),
            );
        }
    };
    if report.state == JobState::Running {
        return error(
            StatusCode::CONFLICT,
            "refused",
            &format!("job {id} is still running; its results can be downloaded once it ends"),
        );
    }
    let blobs = shared.blobs.clone();
    // Every blob is checked before the first byte goes out: a missing one
    // is a clear error, not a cut-off archive.
    let checked =
        tokio::task::spawn_blocking(move || check(&blobs, &report).map(|()| report)).await;
    let report = match checked {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            return error(
                StatusCode::GONE,
                "gone",
                &format!("the results of job {id} are no longer all here: {e:#}"),
            );
        }
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the archive's writer stopped",
            );
        }
    };
    let (tx, rx) = mpsc::channel::<Bytes>(QUEUE);
    let blobs = shared.blobs.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = write(&blobs, &report, Chunks(tx)) {
            // Most often the browser went away.
            tracing::debug!(job = %report.id, "results archive not finished: {e:#}");
        }
    });
    let frames = futures::stream::unfold(rx, |mut rx| async move {
        let chunk = rx.recv().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), rx))
    });
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(frames)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-tar"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(disposition) = HeaderValue::from_str(&format!(
        "attachment; filename=\"corral-{}.tar\"",
        report_name(&id)
    )) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    response
}

/// The id as it may appear in a file name (it was a valid job id).
fn report_name(id: &str) -> String {
    id.chars().filter(char::is_ascii_hexdigit).collect()
}

/// The blobs of every task's streams and files, each present and intact.
fn check(blobs: &BlobStore, report: &JobReport) -> anyhow::Result<()> {
    for (path, hash) in entries(report)? {
        if !blobs.is_intact(&hash) {
            anyhow::bail!("{path} (blob {}) is missing or was corrupt", hash.short());
        }
    }
    Ok(())
}

/// Each task's entries and their blobs, in the order of the archive.
fn entries(report: &JobReport) -> anyhow::Result<Vec<(String, ContentHash)>> {
    let mut entries = Vec::new();
    for task in &report.tasks {
        if task.stdout_sha256.is_empty() {
            continue;
        }
        let hash = |hex: &str| -> anyhow::Result<ContentHash> {
            hex.parse()
                .with_context(|| format!("task {}: bad hash in the job record", task.index))
        };
        entries.push((format!("{}/stdout", task.index), hash(&task.stdout_sha256)?));
        entries.push((format!("{}/stderr", task.index), hash(&task.stderr_sha256)?));
        for file in &task.files {
            corral_protocol::manifest::check_guest_path(&file.path)
                .map_err(|e| anyhow::anyhow!("task {}: bad output path: {e}", task.index))?;
            entries.push((
                format!("{}/files/{}", task.index, file.path.trim_start_matches('/')),
                hash(&file.sha256)?,
            ));
        }
    }
    Ok(entries)
}

/// Writes the archive: `job.json` first (as `OUT/job.json` holds it), then
/// each task's entries.
fn write(blobs: &BlobStore, report: &JobReport, out: impl Write) -> anyhow::Result<()> {
    let mut tar = tar::Builder::new(BufWriter::with_capacity(CHUNK_BYTES, out));
    tar.mode(tar::HeaderMode::Deterministic);
    let json = serde_json::to_vec_pretty(report).context("cannot encode job.json")?;
    let mut header = file_header(json.len() as u64);
    tar.append_data(&mut header, "job.json", json.as_slice())?;
    for (path, hash) in entries(report)? {
        let file = std::fs::File::open(blobs.path(&hash))
            .with_context(|| format!("cannot read blob {} for {path}", hash.short()))?;
        let size = file.metadata()?.len();
        let mut header = file_header(size);
        tar.append_data(&mut header, &path, file)?;
    }
    tar.into_inner()?.flush()?;
    Ok(())
}

fn file_header(size: u64) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header
}

/// The archive's bytes, handed to the response a chunk at a time.
struct Chunks(mpsc::Sender<Bytes>);

impl Write for Chunks {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Bytes::copy_from_slice(bytes))
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "download abandoned")
            })?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_holds_the_out_layout() {
        let dir = tempfile::tempdir().expect("dir");
        let blobs = BlobStore::open(dir.path()).expect("blobs");
        let out = blobs.put_bytes(b"hello\n").expect("put");
        let err = blobs.put_bytes(b"").expect("put");
        let png = blobs.put_bytes(b"\x89PNG...").expect("put");
        let report: JobReport = serde_json::from_value(serde_json::json!({
            "id": "ab".repeat(16), "state": "completed", "tasks_total": 1, "tasks_done": 1,
            "tasks_failed": 0, "duration_ms": 5, "module_sha256": out.to_hex(),
            "tasks": [{"index": 0, "state": "done", "exit_code": 0, "reason": "",
                       "peer": "pi", "engine": "interp", "output_truncated": false,
                       "arch": "arm", "attempts": 1, "duration_ms": 5,
                       "stdout_sha256": out.to_hex(), "stderr_sha256": err.to_hex(),
                       "files": [{"path": "/output/a.png", "size": 7, "sha256": png.to_hex()}]}],
        }))
        .expect("a report");
        let mut bytes = Vec::new();
        write(&blobs, &report, &mut bytes).expect("archive");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let mut body = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut body).expect("read");
            seen.push((entry.path().expect("path").display().to_string(), body));
        }
        let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["job.json", "0/stdout", "0/stderr", "0/files/output/a.png"]
        );
        assert_eq!(seen[1].1, b"hello\n");
        assert_eq!(seen[3].1, b"\x89PNG...");
        let json: JobReport = serde_json::from_slice(&seen[0].1).expect("job.json");
        assert_eq!(json, report);
        // A blob gone from the store: refused before anything is sent.
        std::fs::remove_file(blobs.path(&png)).expect("remove");
        assert!(check(&blobs, &report).is_err());
        // A path out of the task's directory in a (forged) record.
        let mut forged = report.clone();
        forged.tasks[0].files[0].path = "/../../etc/passwd".into();
        assert!(entries(&forged).is_err());
    }
}
