//! The hashes of files the CLI shipped before, remembered by what `stat`
//! says of each file (device, inode, size, modification and change
//! times), as git's index and ccache's direct mode do: a warm `corral
//! run` of a 330-file tree and a 27.7 MB module read and hashed all of
//! them again. A file whose times or size changed is hashed again; the
//! change time cannot be set back by a program, so a file rewritten to the
//! same size and modification time is hashed again too. A file changed
//! within [`SETTLED`] of being hashed is not remembered: a write in the
//! same tick of a coarse clock could leave its times as they were.
//!
//! The memo is a cache: a missing, torn or foreign file is an empty memo,
//! and it is replaced whole (a temporary file renamed over it).

use std::collections::HashMap;
use std::fs::Metadata;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use corral_protocol::hash::ContentHash;

use super::hash_file;

/// The memo's file name in the data dir.
pub(super) const MEMO_FILE: &str = "file-hashes";

/// Most files remembered; the least recently used go first.
pub(super) const MAX_MEMO_FILES: usize = 16_384;

/// Longest memo file read (a full memo is about 2 MB).
const MAX_MEMO_BYTES: u64 = 8 * 1024 * 1024;

/// How long before it is hashed a file must have last changed to be
/// remembered.
pub(super) const SETTLED: Duration = Duration::from_secs(2);

/// How stale an entry's "last used" may get before it is brought
/// forward: an hour is plenty to keep the recently used, and a warm run
/// then leaves the memo file as it was instead of rewriting it.
const USED_EVERY_S: u64 = 3600;

/// The first line of a memo file.
const HEADER: &str = "corral file-hashes 1";

/// What `stat` says of a file, and what its bytes hashed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stat {
    fn of(meta: &Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// Whether the file last changed at least [`SETTLED`] before `at`.
    fn settled_before(&self, at: SystemTime) -> bool {
        let at_ns = at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let settled = SETTLED.as_nanos() as i128;
        self.mtime_ns.max(self.ctime_ns) + settled <= at_ns
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    stat: Stat,
    hash: ContentHash,
    /// When it was last used, seconds since the epoch.
    used: u64,
}

/// The remembered hashes of one data dir.
#[derive(Debug)]
pub struct FileHashes {
    path: PathBuf,
    entries: HashMap<(u64, u64), Entry>,
    changed: bool,
    now: u64,
}

impl FileHashes {
    /// The memo of data dir `data_dir` (empty if it has none, or one that
    /// cannot be read).
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(MEMO_FILE);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let entries = read_memo(&path).unwrap_or_default();
        Self {
            path,
            entries,
            changed: false,
            now,
        }
    }

    /// How many files are remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The hash and size of the file at `path`: remembered, if `stat` says
    /// it has not changed since it was hashed; hashed otherwise (and
    /// remembered, if it had settled).
    pub fn hash(&mut self, path: &Path) -> anyhow::Result<(ContentHash, u64)> {
        let before = std::fs::metadata(path).map(|m| Stat::of(&m));
        if let Ok(stat) = before
            && let Some(entry) = self.entries.get_mut(&(stat.dev, stat.ino))
            && entry.stat == stat
        {
            if self.now.saturating_sub(entry.used) >= USED_EVERY_S {
                entry.used = self.now;
                self.changed = true;
            }
            return Ok((entry.hash, stat.size));
        }
        let started = SystemTime::now();
        let (hash, len) = hash_file(path)?;
        // Remembered only if nothing changed while it was read.
        if let Ok(stat) = before
            && stat.size == len
            && stat.settled_before(started)
            && std::fs::metadata(path).is_ok_and(|m| Stat::of(&m) == stat)
        {
            self.entries.insert(
                (stat.dev, stat.ino),
                Entry {
                    stat,
                    hash,
                    used: self.now,
                },
            );
            self.changed = true;
        }
        Ok((hash, len))
    }

    /// Writes the memo back if it changed (the most recently used
    /// [`MAX_MEMO_FILES`] entries).
    pub fn save(&mut self) -> anyhow::Result<()> {
        if !self.changed {
            return Ok(());
        }
        let mut entries: Vec<&Entry> = self.entries.values().collect();
        if entries.len() > MAX_MEMO_FILES {
            entries.sort_unstable_by_key(|e| std::cmp::Reverse(e.used));
            entries.truncate(MAX_MEMO_FILES);
        }
        let mut text = String::with_capacity(64 + entries.len() * 128);
        text.push_str(HEADER);
        text.push('\n');
        for e in entries {
            let s = e.stat;
            text.push_str(&format!(
                "{} {} {} {} {} {} {}\n",
                s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns, e.used, e.hash
            ));
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(text.as_bytes())?;
        tmp.persist(&self.path)?;
        self.changed = false;
        Ok(())
    }
}

/// The entries of the memo file at `path`; lines that do not parse are
/// skipped.
fn read_memo(path: &Path) -> Option<HashMap<(u64, u64), Entry>> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > MAX_MEMO_BYTES {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    if lines.next() != Some(HEADER) {
        return None;
    }
    let entries = lines
        .filter_map(parse_line)
        .take(MAX_MEMO_FILES)
        .map(|e| ((e.stat.dev, e.stat.ino), e))
        .collect();
    Some(entries)
}

fn parse_line(line: &str) -> Option<Entry> {
    let mut f = line.split(' ');
    let mut next = || f.next();
    let stat = Stat {
        dev: next()?.parse().ok()?,
        ino: next()?.parse().ok()?,
        size: next()?.parse().ok()?,
        mtime_ns: next()?.parse().ok()?,
        ctime_ns: next()?.parse().ok()?,
    };
    let used = next()?.parse().ok()?;
    let hash = next()?.parse().ok()?;
    next().is_none().then_some(Entry { stat, hash, used })
}

#[cfg(test)]
#[path = "memo_tests.rs"]
mod tests;
