//! A runner thread's task directory, `tmp/run-N/`, kept from one task to
//! the next and emptied before each (never following a link).

use std::path::PathBuf;

use anyhow::Context;

/// A runner's task directory, `tmp/run-N/`. Its `output/` and `input/`
/// stay from one task to the next and are emptied before each: making and
/// removing directories for every task cost more than a short task's run
/// (ext4 allocates, frees and discards a block for each).
pub(super) struct WorkDir {
    /// The directory.
    pub(super) root: PathBuf,
    /// Known empty: the last task had no input or tree copy and left
    /// nothing in `output/` (its walk found no entry), so the next needs
    /// no listing of three directories first.
    pub(super) clean: std::cell::Cell<bool>,
}

impl WorkDir {
    /// The work directory at `root` (made on first use).
    pub(super) fn new(root: PathBuf) -> Self {
        Self {
            root,
            clean: std::cell::Cell::new(false),
        }
    }

    /// Makes it ready for a task: `output/` and `input/` there and empty,
    /// anything else the last task left (writable tree copies) gone.
    pub(super) fn prepare(&self) -> anyhow::Result<(PathBuf, PathBuf)> {
        let output = self.root.join("output");
        let input = self.root.join("input");
        if self.clean.replace(false) {
            return Ok((output, input));
        }
        for dir in [&output, &input] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        for entry in std::fs::read_dir(&self.root)? {
            let entry = entry?;
            let path = entry.path();
            if path == output || path == input {
                for inner in std::fs::read_dir(&path)? {
                    remove_entry(&inner?)?;
                }
            } else {
                remove_entry(&entry)?;
            }
        }
        Ok((output, input))
    }
}

/// Removes a file, link or whole directory (never following a link).
fn remove_entry(entry: &std::fs::DirEntry) -> anyhow::Result<()> {
    let path = entry.path();
    let removed = if entry.file_type()?.is_dir() {
        std::fs::remove_dir_all(&path)
    } else {
        std::fs::remove_file(&path)
    };
    removed.with_context(|| format!("cannot clear {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_work_dir_is_emptied_before_each_task_without_following_links() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let work = WorkDir::new(tmp.path().join("run-0"));
        let (output, input) = work.prepare().expect("first prepare");
        assert!(output.is_dir() && input.is_dir());

        // What a task may leave: files and directories in output/, its
        // input, a writable tree copy, and a link pointing outside.
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).expect("outside");
        std::fs::write(outside.join("keep"), b"not the task's").expect("keep");
        std::fs::create_dir_all(output.join("a/b")).expect("nested");
        std::fs::write(output.join("a/b/c.txt"), b"x").expect("file");
        std::fs::write(output.join("top.txt"), b"y").expect("file");
        std::os::unix::fs::symlink(&outside, output.join("link")).expect("link");
        std::fs::write(input.join("in.txt"), b"z").expect("input");
        std::fs::create_dir_all(work.root.join("dir0/sub")).expect("copy");

        let (output, input) = work.prepare().expect("second prepare");
        assert_eq!(std::fs::read_dir(&output).expect("output").count(), 0);
        assert_eq!(std::fs::read_dir(&input).expect("input").count(), 0);
        assert!(!work.root.join("dir0").exists(), "tree copies are removed");
        assert_eq!(
            std::fs::read(outside.join("keep")).expect("still there"),
            b"not the task's",
            "a link's target is left alone"
        );

        // Known clean (the last task left nothing): no listing at all, so
        // a file put there behind its back stays; the next prepare lists
        // again.
        work.clean.set(true);
        std::fs::write(output.join("stray"), b"s").expect("stray");
        let (output, _) = work.prepare().expect("clean prepare");
        assert!(
            output.join("stray").exists(),
            "a clean directory is not listed"
        );
        let (output, _) = work.prepare().expect("third prepare");
        assert!(
            !output.join("stray").exists(),
            "clean holds for one task only"
        );
    }
}
