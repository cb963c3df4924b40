//! Putting blobs in the store: bytes, files (one by one, or many written
//! first and synced together), each stored only when no intact copy is.

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use corral_protocol::hash::ContentHash;

use super::{BlobStore, hash_file, intact};

impl BlobStore {
    /// Stores bytes; returns their hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> anyhow::Result<ContentHash> {
        self.put_bytes_with(bytes, true)
    }

    /// Stores bytes without waiting for the disk: for a blob that matters
    /// only while the process that wrote it waits on it (an HTTP
    /// request's body, `corral serve`). A power cut may leave it short
    /// under its name; like any blob it is hashed on first use in a
    /// process and removed if it is not what its name says.
    pub fn put_bytes_unsynced(&self, bytes: &[u8]) -> anyhow::Result<ContentHash> {
        self.put_bytes_with(bytes, false)
    }

    /// As [`put_bytes`](Self::put_bytes), for bytes already hashed (a
    /// module, hashed when it was read): they are not hashed again, unless
    /// they are written, when the write checks them against `hash`. A warm
    /// `corral run` of a 27.7 MB module hashed it three times.
    pub fn put_hashed(&self, bytes: &[u8], hash: ContentHash) -> anyhow::Result<ContentHash> {
        self.put_with(bytes, hash, true)
    }

    /// Stores bytes unless held intact already; `sync` as in
    /// [`BlobWriter::commit_with`].
    fn put_bytes_with(&self, bytes: &[u8], sync: bool) -> anyhow::Result<ContentHash> {
        self.put_with(bytes, ContentHash::of(bytes), sync)
    }

    /// Stores `bytes`, whose hash is `hash`, unless held intact already.
    fn put_with(&self, bytes: &[u8], hash: ContentHash, sync: bool) -> anyhow::Result<ContentHash> {
        if !self.holds(&hash, bytes) {
            let mut writer = self.writer()?;
            writer.write(bytes)?;
            writer.commit_with(self, &hash, sync)?;
        }
        Ok(hash)
    }

    /// Stores a copy of a file; returns its hash and size. The file is
    /// hashed first: one already stored intact is not copied again.
    pub fn put_file(&self, path: &Path) -> anyhow::Result<(ContentHash, u64)> {
        self.put_file_with(path, true)
    }

    /// Stores copies of files and returns their hashes and sizes, in order;
    /// as [`put_file`](Self::put_file) each, but all are written first and
    /// synced after, together: a filesystem with a journal commits them in
    /// one go rather than once per file (330 files of a shipped tree took
    /// 0.4 s one by one).
    pub fn put_files<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a Path>,
    ) -> anyhow::Result<Vec<(ContentHash, u64)>> {
        let stored = paths
            .into_iter()
            .map(|path| self.put_file_with(path, false))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.sync_blobs(stored.iter().map(|(hash, _)| hash))?;
        Ok(stored)
    }

    /// Which of `hashes` the store lacks (not here, or corrupt: removed);
    /// those it holds are made durable. Blocking: a blob this process has
    /// not checked yet is read whole; the daemon, which lives long, checks
    /// each blob once, where every `corral run` (a new process) checked
    /// them all again.
    pub fn lacking(&self, hashes: &[ContentHash]) -> anyhow::Result<Vec<ContentHash>> {
        let (held, lacking): (Vec<ContentHash>, Vec<ContentHash>) =
            hashes.iter().partition(|hash| self.is_intact(hash));
        self.sync_blobs(&held)?;
        Ok(lacking)
    }

    /// Syncs stored blobs and the directories that name them (those not
    /// known to be on the disk already).
    fn sync_blobs<'a>(
        &self,
        hashes: impl IntoIterator<Item = &'a ContentHash>,
    ) -> anyhow::Result<()> {
        let mut dirs = std::collections::BTreeSet::new();
        let mut synced = Vec::new();
        for hash in hashes {
            if self.verdicts.synced(hash) {
                continue;
            }
            let path = self.path(hash);
            File::open(&path)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot sync blob {}", hash.short()))?;
            if let Some(parent) = path.parent() {
                dirs.insert(parent.to_path_buf());
            }
            synced.push(hash);
        }
        for dir in dirs {
            intact::sync_dir(&dir).with_context(|| format!("cannot sync {}", dir.display()))?;
        }
        for hash in synced {
            self.verdicts.mark_synced(hash);
        }
        Ok(())
    }

    /// [`put_file`](Self::put_file); `sync` as in [`BlobWriter::commit_with`].
    fn put_file_with(&self, path: &Path, sync: bool) -> anyhow::Result<(ContentHash, u64)> {
        let (hash, len) = hash_file(path)?;
        if self.is_intact(&hash) {
            return Ok((hash, len));
        }
        let mut writer = self.writer()?;
        intact::read_chunks(path, |chunk| writer.write(chunk).map(|()| true))?;
        // The file changed between the two reads: what was copied counts.
        let copied = writer.hasher.clone().finish();
        let len = writer.len;
        if !self.is_intact(&copied) {
            writer.commit_with(self, &copied, sync)?;
        }
        Ok((copied, len))
    }

    /// [`is_intact`](Self::is_intact), for a caller holding `bytes`, whose
    /// hash is `hash`: on first use in this process the stored blob is
    /// compared with them instead of hashed (a tenth of the time; a warm
    /// `corral run` of a 27.7 MB module spent 18 ms hashing its copy).
    fn holds(&self, hash: &ContentHash, bytes: &[u8]) -> bool {
        if self.known_intact(hash) {
            return true;
        }
        self.has(hash)
            && self
                .first_use(hash, |path| {
                    if intact::same_bytes(path, bytes)? {
                        Ok((*hash, bytes.len() as u64, ()))
                    } else {
                        // Not these bytes: hashed, to say what they are.
                        hash_file(path).map(|(got, len)| (got, len, ()))
                    }
                })
                .is_some()
    }
}
