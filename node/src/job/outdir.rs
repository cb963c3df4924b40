//! The OUT directory of a batch (DESIGN §9): `OUT/<task>/stdout`,
//! `OUT/<task>/stderr`, `OUT/<task>/files/<guest path>` and `OUT/job.json`;
//! and the private copies that `--dir …:rw` gives each task, with the files a
//! task created or changed brought back under `OUT/<task>/files/`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context;
use corral_protocol::hash::ContentHash;

use super::report::{FileReport, JobReport};
use crate::blobs::hash_file;
use crate::usage::UsageError;

/// Most files and bytes in one `--dir` tree: what is copied per task must stay
/// within what a device can hold many times over.
const MAX_TREE_FILES: usize = 100_000;
const MAX_TREE_BYTES: u64 = 8 * 1024 * 1024 * 1024;

/// A batch's output directory.
#[derive(Clone, Debug)]
pub struct OutDir {
    root: PathBuf,
}

impl OutDir {
    /// Creates OUT. An existing directory must be empty, or hold an earlier
    /// job (a `job.json`), which is replaced: results of two jobs never mix.
    pub fn create(root: &Path) -> anyhow::Result<Self> {
        if root.exists() {
            let mut entries = std::fs::read_dir(root)
                .map_err(|e| UsageError(format!("cannot read --out {}: {e}", root.display())))?;
            if entries.next().is_some() {
                if !root.join("job.json").is_file() {
                    return Err(UsageError(format!(
                        "--out {} already holds files that are not a corral job; \
                         choose another directory",
                        root.display()
                    ))
                    .into());
                }
                std::fs::remove_dir_all(root).with_context(|| {
                    format!("cannot replace the earlier job in {}", root.display())
                })?;
            }
        }
        std::fs::create_dir_all(root)
            .with_context(|| format!("cannot create --out {}", root.display()))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `OUT/<task>/`.
    pub fn task_dir(&self, index: u32) -> PathBuf {
        self.root.join(index.to_string())
    }

    /// `OUT/<task>/files/<guest path>`, created.
    pub fn guest_dir(&self, index: u32, guest: &str) -> anyhow::Result<PathBuf> {
        let dir = self
            .task_dir(index)
            .join("files")
            .join(guest.trim_start_matches('/'));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(dir)
    }

    /// Writes `OUT/<task>/stdout` and `OUT/<task>/stderr`.
    pub fn write_streams(&self, index: u32, stdout: &[u8], stderr: &[u8]) -> anyhow::Result<()> {
        let dir = self.task_dir(index);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(dir.join("stdout"), stdout)
            .with_context(|| format!("cannot write {}/stdout", dir.display()))?;
        std::fs::write(dir.join("stderr"), stderr)
            .with_context(|| format!("cannot write {}/stderr", dir.display()))?;
        Ok(())
    }

    /// Lists the files under `OUT/<task>/files/` as guest paths with hashes.
    pub fn task_files(&self, index: u32) -> anyhow::Result<Vec<FileReport>> {
        let base = self.task_dir(index).join("files");
        if !base.exists() {
            return Ok(Vec::new());
        }
        let mut files = Vec::new();
        for entry in walkdir::WalkDir::new(&base).sort_by_file_name() {
            let entry = entry.with_context(|| format!("cannot list {}", base.display()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(&base)
                .context("walked outside the task directory")?;
            let (hash, size) = hash_file(entry.path())?;
            files.push(FileReport {
                path: format!("/{}", rel.display()),
                size,
                sha256: hash.to_hex(),
            });
        }
        Ok(files)
    }

    /// Writes `OUT/job.json` (atomically: readers never see half a file).
    pub fn write_report(&self, report: &JobReport) -> anyhow::Result<()> {
        let json = serde_json::to_vec_pretty(report).context("cannot encode job.json")?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.root)
            .with_context(|| format!("cannot write job.json in {}", self.root.display()))?;
        std::io::Write::write_all(&mut tmp, &json).context("cannot write job.json")?;
        tmp.persist(self.root.join("job.json"))
            .context("cannot write job.json")?;
        Ok(())
    }
}

/// The files of a `--dir …:rw` tree as shipped, to tell what a task changed.
#[derive(Debug)]
pub struct TreeSnapshot {
    host: PathBuf,
    files: HashMap<PathBuf, ContentHash>,
}

impl TreeSnapshot {
    /// Hashes every regular file under `host`. Symbolic links are not
    /// shipped: a link could point outside the tree.
    pub fn take(host: &Path) -> anyhow::Result<Self> {
        let mut files = HashMap::new();
        let mut bytes = 0u64;
        for entry in walkdir::WalkDir::new(host) {
            let entry = entry.with_context(|| format!("cannot read --dir {}", host.display()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(host)
                .context("walked outside the --dir tree")?
                .to_path_buf();
            let (hash, size) = hash_file(entry.path())?;
            bytes += size;
            files.insert(rel, hash);
            if files.len() > MAX_TREE_FILES || bytes > MAX_TREE_BYTES {
                return Err(UsageError(format!(
                    "--dir {} is too large: at most {MAX_TREE_FILES} files and {} GiB",
                    host.display(),
                    MAX_TREE_BYTES >> 30
                ))
                .into());
            }
        }
        Ok(Self {
            host: host.to_path_buf(),
            files,
        })
    }

    /// A private copy of the tree for one task.
    pub fn private_copy(&self) -> anyhow::Result<tempfile::TempDir> {
        let copy = tempfile::Builder::new()
            .prefix("corral-dir-")
            .tempdir()
            .context("cannot create a private copy for --dir :rw")?;
        for entry in walkdir::WalkDir::new(&self.host) {
            let entry = entry.with_context(|| format!("cannot read {}", self.host.display()))?;
            let rel = entry
                .path()
                .strip_prefix(&self.host)
                .context("walked outside the --dir tree")?;
            let target = copy.path().join(rel);
            if entry.file_type().is_dir() {
                std::fs::create_dir_all(&target)
                    .with_context(|| format!("cannot create {}", target.display()))?;
            } else if entry.file_type().is_file() {
                std::fs::copy(entry.path(), &target)
                    .with_context(|| format!("cannot copy {}", entry.path().display()))?;
            }
        }
        Ok(copy)
    }

    /// Copies every file of `copy` that the task created or changed to `dest`,
    /// keeping its relative path, except onto a path in `keep` (a file the
    /// task wrote through a deeper preopen, the batch's `/output`). Returns
    /// how many files came back.
    pub fn collect_changes(
        &self,
        copy: &Path,
        dest: &Path,
        keep: &HashSet<PathBuf>,
    ) -> anyhow::Result<usize> {
        let mut changed = 0;
        for entry in walkdir::WalkDir::new(copy) {
            let entry = entry.with_context(|| format!("cannot read {}", copy.display()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(copy)
                .context("walked outside the private copy")?;
            let (hash, _) = hash_file(entry.path())?;
            if self.files.get(rel) == Some(&hash) {
                continue;
            }
            let target = dest.join(rel);
            if keep.contains(&target) {
                continue;
            }
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot write {}", target.display()))?;
            changed += 1;
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_created_or_changed_files_come_back() {
        let host = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(host.path().join("sub")).expect("mkdir");
        std::fs::write(host.path().join("keep.txt"), "same").expect("write");
        std::fs::write(host.path().join("sub/edit.txt"), "before").expect("write");
        let snapshot = TreeSnapshot::take(host.path()).expect("snapshot");

        let copy = snapshot.private_copy().expect("copy");
        assert_eq!(
            std::fs::read(copy.path().join("sub/edit.txt")).expect("copied"),
            b"before"
        );
        std::fs::write(copy.path().join("sub/edit.txt"), "after").expect("write");
        std::fs::write(copy.path().join("new.txt"), "new").expect("write");

        let dest = tempfile::tempdir().expect("tempdir");
        let changed = snapshot
            .collect_changes(copy.path(), dest.path(), &HashSet::new())
            .expect("collect");
        assert_eq!(changed, 2);
        assert_eq!(
            std::fs::read(dest.path().join("sub/edit.txt")).expect("edit"),
            b"after"
        );
        assert_eq!(
            std::fs::read(dest.path().join("new.txt")).expect("new"),
            b"new"
        );
        assert!(!dest.path().join("keep.txt").exists());
        // The host tree itself is untouched.
        assert_eq!(
            std::fs::read(host.path().join("sub/edit.txt")).expect("host"),
            b"before"
        );
    }

    #[test]
    fn out_refuses_a_directory_of_other_files() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::write(root.path().join("precious.txt"), "data").expect("write");
        let err = OutDir::create(root.path()).expect_err("not a job dir");
        assert!(err.to_string().contains("not a corral job"), "{err}");
        assert!(root.path().join("precious.txt").exists());
    }
}
