//! The size bound (`corral up --cache-size`): what the blob store, the
//! laid-out trees, the work dirs and the compiled-module cache take
//! together, and the sweep that brings it under the bound, least recently
//! used first (a file's modification time is its last use, brought forward
//! when it is used). Never swept: a blob, tree or compiled module a live
//! job needs (the pins the caller passes), anything used in the last
//! [`RECENT`], and what is in use by its nature (the work dirs and files
//! being received, which are counted only).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use corral_protocol::hash::ContentHash;

use super::BlobStore;

/// Anything used this recently stays (a blob just stored for a submit
/// under way, a module a task just started with), even over the bound.
pub const RECENT: Duration = Duration::from_secs(10 * 60);

/// What one sweep found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Bytes held before.
    pub before: u64,
    /// Bytes held after.
    pub after: u64,
    /// Entries removed (blobs, trees, compiled modules).
    pub removed: usize,
}

/// What may be removed, and what only counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A blob file.
    Blob,
    /// A laid-out read-only tree (a directory).
    Tree,
    /// A compiled module of the JIT's cache.
    Compiled,
}

/// One removable entry.
#[derive(Debug)]
struct Entry {
    path: PathBuf,
    kind: Kind,
    hash: ContentHash,
    used: SystemTime,
    /// Bytes that removing it frees (files no other entry links to).
    frees: u64,
}

impl Entry {
    /// The entry of `file`, named for `hash` (`None` unless it is a
    /// regular file), counted in `inodes`.
    fn file(
        file: &std::fs::DirEntry,
        kind: Kind,
        hash: ContentHash,
        inodes: &mut Inodes,
    ) -> Option<Self> {
        let meta = file.metadata().ok().filter(|meta| meta.is_file())?;
        Some(Self {
            path: file.path(),
            kind,
            hash,
            used: last_used(&meta),
            frees: inodes.count(&meta),
        })
    }
}

/// Every file's size once (hard links share their bytes: a read-only tree
/// is made of links to blobs).
#[derive(Default)]
struct Inodes {
    seen: HashMap<(u64, u64), u64>,
}

impl Inodes {
    /// Counts a file; the bytes it frees if removed (0 while other links
    /// to it remain).
    fn count(&mut self, meta: &std::fs::Metadata) -> u64 {
        self.seen.insert((meta.dev(), meta.ino()), meta.len());
        if meta.nlink() > 1 { 0 } else { meta.len() }
    }

    fn total(&self) -> u64 {
        self.seen.values().sum()
    }
}

impl BlobStore {
    /// Brings what this node caches under `limit` bytes, least recently
    /// used first: blobs, laid-out trees and the compiled modules in
    /// `compiled_dir`, never one whose hash is in `pinned` nor one used in
    /// the last [`RECENT`] (as of `now`). Trees in `pinned` pin the files
    /// they list. Blocking: run it off the event loop.
    pub fn sweep(
        &self,
        compiled_dir: Option<&Path>,
        pinned: &HashSet<ContentHash>,
        limit: u64,
        now: SystemTime,
    ) -> Swept {
        let mut pins = pinned.clone();
        for tree in pinned {
            if let Ok(listing) = self.listing(tree) {
                pins.extend(listing.files.iter().map(|f| f.hash));
            }
        }
        let mut inodes = Inodes::default();
        let mut entries = self.blob_entries(&mut inodes);
        entries.extend(self.tree_entries(&mut inodes));
        if let Some(dir) = compiled_dir {
            entries.extend(compiled_entries(dir, &mut inodes));
        }
        // Counted, never removed: work dirs and blobs being received.
        count_files(&self.tmp_dir(), &mut inodes);
        let before = inodes.total();
        let mut held = before;
        let mut removed = 0;
        entries.retain(|e| {
            !pins.contains(&e.hash) && now.duration_since(e.used).unwrap_or_default() >= RECENT
        });
        entries.sort_by_key(|e| e.used);
        for entry in entries {
            if held <= limit {
                break;
            }
            let gone = match entry.kind {
                Kind::Tree => std::fs::remove_dir_all(&entry.path),
                Kind::Blob | Kind::Compiled => std::fs::remove_file(&entry.path),
            };
            match gone {
                Ok(()) => {
                    if entry.kind == Kind::Blob {
                        self.verdicts.forget(&entry.hash);
                    }
                    held = held.saturating_sub(entry.frees);
                    removed += 1;
                }
                Err(e) => tracing::warn!(
                    "the cache bound cannot remove {}: {e}",
                    entry.path.display()
                ),
            }
        }
        Swept {
            before,
            after: held,
            removed,
        }
    }

    /// The blob files (`blobs/ab/abcd…`).
    fn blob_entries(&self, inodes: &mut Inodes) -> Vec<Entry> {
        let mut out = Vec::new();
        for shard in read_dir(&self.dir) {
            let name = shard.file_name();
            let name = name.to_string_lossy();
            if name.len() != 2 || !shard.path().is_dir() {
                continue;
            }
            for blob in read_dir(&shard.path()) {
                if let Ok(hash) = blob.file_name().to_string_lossy().parse::<ContentHash>() {
                    out.extend(Entry::file(&blob, Kind::Blob, hash, inodes));
                }
            }
        }
        out
    }

    /// The laid-out read-only trees (`blobs/trees/<tree hash>/`).
    fn tree_entries(&self, inodes: &mut Inodes) -> Vec<Entry> {
        let mut out = Vec::new();
        for tree in read_dir(&self.trees_dir()) {
            let Ok(hash) = tree.file_name().to_string_lossy().parse::<ContentHash>() else {
                continue;
            };
            let Ok(meta) = tree.metadata() else { continue };
            out.push(Entry {
                path: tree.path(),
                kind: Kind::Tree,
                hash,
                used: last_used(&meta),
                frees: count_files(&tree.path(), inodes),
            });
        }
        out
    }
}

/// The compiled modules (`<module hash>-<engine key>.cwasm`).
fn compiled_entries(dir: &Path, inodes: &mut Inodes) -> Vec<Entry> {
    let mut out = Vec::new();
    for file in read_dir(dir) {
        let name = file.file_name();
        let name = name.to_string_lossy();
        let Some(hash) = name
            .split_once('-')
            .and_then(|(hex, _)| hex.parse::<ContentHash>().ok())
        else {
            continue;
        };
        out.extend(Entry::file(&file, Kind::Compiled, hash, inodes));
    }
    out
}

/// Counts every file under `dir` (walked); the bytes removing them frees.
fn count_files(dir: &Path, inodes: &mut Inodes) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|file| file.file_type().is_file())
        .filter_map(|file| file.metadata().ok())
        .map(|meta| inodes.count(&meta))
        .sum()
}

/// When an entry was last used: its modification time.
fn last_used(meta: &std::fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The entries of `dir` (none if it cannot be read).
fn read_dir(dir: &Path) -> impl Iterator<Item = std::fs::DirEntry> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
}

/// The blobs a job needs to run (task `index` alone, or every task): its
/// module, inputs, stdin and the trees it ships (a tree pins the files it
/// lists, see [`BlobStore::sweep`]).
pub fn needed_by(
    manifest: &corral_protocol::manifest::JobManifest,
    index: Option<u32>,
) -> Vec<ContentHash> {
    let mut out = vec![manifest.module_hash];
    if let corral_protocol::manifest::TaskSet::Inputs(inputs) = &manifest.tasks {
        match index {
            Some(i) => out.extend(inputs.get(i as usize).map(|i| i.hash)),
            None => out.extend(inputs.iter().map(|i| i.hash)),
        }
    }
    out.extend(manifest.stdin.as_ref().map(|s| s.hash));
    out.extend(manifest.dirs.iter().map(|d| d.tree_hash));
    out
}
