//! Content-addressed files in the data dir (`blobs/ab/abcd…`): modules,
//! shipped trees and their listings, inputs, and task outputs. A blob is
//! written to a temporary file, hashed on the way, and renamed into place
//! only when its hash is the one expected, so a reader never sees half a
//! blob or the wrong bytes. The file is synced before the rename and its
//! directory after, so a power cut cannot leave a short blob under its
//! final name; and a blob is checked before it is used all the same (its
//! size at once, its hash on first use in a process), a corrupt one
//! removed so that it is fetched again.

mod intact;
mod memo;
mod put;
mod sweep;

pub use intact::hash_file;
pub use memo::FileHashes;
pub use sweep::{RECENT, Swept, needed_by};
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use corral_protocol::hash::{ContentHash, ContentHasher};
use corral_protocol::messages::{BlobRequest, BlobResponse};
use corral_protocol::tree::{MAX_LISTING_BYTES, TreeFile, TreeListing};

/// The blob store of one data dir (cheap to clone).
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
    /// Blobs this process wrote or hashed, and their lengths.
    verdicts: intact::Verdicts,
}

/// A blob being received.
pub struct BlobWriter {
    file: tempfile::NamedTempFile,
    hasher: ContentHasher,
    len: u64,
}

impl BlobWriter {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.file
            .write_all(bytes)
            .context("cannot write a blob being received")?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The hash of the bytes written so far: what [`BlobWriter::commit`]
    /// expects of a blob whose hash was not known before it arrived (an
    /// upload to the live page).
    pub fn hash(&self) -> ContentHash {
        self.hasher.clone().finish()
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves the blob into place if its hash is `expected`.
    pub fn commit(self, store: &BlobStore, expected: &ContentHash) -> anyhow::Result<PathBuf> {
        self.commit_with(store, expected, true)
    }

    /// As [`commit`](Self::commit), without waiting for the disk: for a
    /// copy of a blob another device keeps (a task's input). A power cut
    /// may leave it short under its name; like any blob it is hashed on
    /// first use in a process, removed if it is not what its name says,
    /// and fetched again.
    pub fn commit_cached(
        self,
        store: &BlobStore,
        expected: &ContentHash,
    ) -> anyhow::Result<PathBuf> {
        self.commit_with(store, expected, false)
    }

    /// Moves the blob into place if its hash is `expected`; with `sync`,
    /// its bytes reach the disk before its name, and its name before this
    /// returns.
    fn commit_with(
        self,
        store: &BlobStore,
        expected: &ContentHash,
        sync: bool,
    ) -> anyhow::Result<PathBuf> {
        let got = self.hasher.finish();
        if &got != expected {
            anyhow::bail!(
                "blob {} arrived with the wrong contents (hash {})",
                expected.short(),
                got.short()
            );
        }
        let path = store.path(expected);
        let parent = path.parent().unwrap_or(&store.dir);
        if !parent.is_dir() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
            intact::sync_dir(&store.dir)
                .with_context(|| format!("cannot sync {}", store.dir.display()))?;
        }
        set_read_only(self.file.path())?;
        // The bytes reach the disk before the name does, and the name
        // before the caller is told the blob is stored.
        if sync {
            self.file
                .as_file()
                .sync_all()
                .with_context(|| format!("cannot sync blob {}", expected.short()))?;
        }
        self.file
            .persist(&path)
            .with_context(|| format!("cannot store blob {}", expected.short()))?;
        if sync {
            intact::sync_dir(parent)
                .with_context(|| format!("cannot sync {}", parent.display()))?;
        }
        store.verdicts.intact(*expected, self.len, sync);
        Ok(path)
    }
}

fn set_read_only(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
        .with_context(|| format!("cannot make {} read-only", path.display()))
}

impl BlobStore {
    /// Opens (creating) `data_dir/blobs`.
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        let dir = data_dir.join("blobs");
        std::fs::create_dir_all(dir.join("tmp"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self {
            dir,
            verdicts: Default::default(),
        })
    }

    /// Where blob `hash` lives (whether or not it is there).
    pub fn path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(hex)
    }

    /// A directory for temporary files on the same file system as the blobs
    /// (so they can be hard-linked and renamed).
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Where read-only trees are laid out once per device.
    pub fn trees_dir(&self) -> PathBuf {
        self.dir.join("trees")
    }

    /// Whether the blob is here, as far as its size tells (a metadata
    /// look-up, no reading): a file whose size cannot be the blob's (zero
    /// bytes, or not the length this process found it intact at) is
    /// removed and is not here. Its bytes are checked by
    /// [`BlobStore::is_intact`] before it is used.
    pub fn has(&self, hash: &ContentHash) -> bool {
        self.size(hash).is_some()
    }

    /// Size of a stored blob (`None` if it is not here, or cannot be the
    /// blob: see [`BlobStore::has`]).
    pub fn size(&self, hash: &ContentHash) -> Option<u64> {
        let meta = std::fs::metadata(self.path(hash)).ok()?;
        if !meta.is_file() {
            return None;
        }
        if !intact::plausible(&self.verdicts, hash, meta.len()) {
            self.discard(hash, &format!("it is {} bytes", meta.len()));
            return None;
        }
        Some(meta.len())
    }

    /// Whether the blob is here and intact: hashed to its name once per
    /// process (blocking; the first call reads it all), the verdict kept;
    /// a corrupt blob is removed. Marks it used.
    pub fn is_intact(&self, hash: &ContentHash) -> bool {
        if self.known_intact(hash) {
            return true;
        }
        self.has(hash)
            && self
                .first_use(hash, |path| {
                    hash_file(path).map(|(got, len)| (got, len, ()))
                })
                .is_some()
    }

    /// Checks a blob this process has not found intact yet, its bytes
    /// taken by `take` (their hash, their length and what the caller
    /// keeps): the verdict kept and the blob marked used, or a corrupt
    /// blob removed (`None`).
    fn first_use<T>(
        &self,
        hash: &ContentHash,
        take: impl FnOnce(&Path) -> anyhow::Result<(ContentHash, u64, T)>,
    ) -> Option<T> {
        let path = self.path(hash);
        match take(&path) {
            Ok((got, len, kept)) if got == *hash => {
                self.verdicts.intact(*hash, len, false);
                intact::touch(&path);
                Some(kept)
            }
            Ok((got, _, _)) => {
                self.discard(hash, &format!("its bytes hash to {}", got.short()));
                None
            }
            Err(e) => {
                tracing::warn!("blob {} cannot be read: {e:#}", hash.short());
                None
            }
        }
    }

    /// Whether the blob is here and this process already found it intact
    /// (a metadata look-up, never a read: for the event loop). Marks it
    /// used.
    pub fn known_intact(&self, hash: &ContentHash) -> bool {
        if self.verdicts.len_of(hash).is_some() && self.has(hash) {
            self.mark_used(hash);
            return true;
        }
        false
    }

    /// [`known_intact`](Self::known_intact) without even the metadata
    /// look-up when the blob's file was found at its length within
    /// [`intact::RECHECK_EVERY`]: for what every task asks (its inputs, its
    /// result's output), where that look-up was a twentieth of a busy
    /// coordinator's CPU. A blob removed behind this process's back is
    /// noticed at most that late.
    pub fn known_intact_lately(&self, hash: &ContentHash) -> bool {
        if self.verdicts.seen_lately(hash) {
            self.mark_used(hash);
            return true;
        }
        self.known_intact(hash)
    }

    /// Brings a blob's "last used" (its modification time) forward.
    fn mark_used(&self, hash: &ContentHash) {
        if self.verdicts.due_for_touch(hash) {
            intact::touch(&self.path(hash));
        }
    }

    /// Removes a blob found corrupt, so it is fetched (or stored) again.
    fn discard(&self, hash: &ContentHash, why: &str) {
        self.verdicts.forget(hash);
        match std::fs::remove_file(self.path(hash)) {
            Ok(()) => tracing::warn!(
                "blob {} is corrupt ({why}): removed, to be fetched again",
                hash.short()
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(
                "blob {} is corrupt ({why}) and cannot be removed: {e}",
                hash.short()
            ),
        }
    }

    /// Starts receiving a blob.
    pub fn writer(&self) -> anyhow::Result<BlobWriter> {
        let file = tempfile::NamedTempFile::new_in(self.tmp_dir())
            .context("cannot create a temporary blob file")?;
        Ok(BlobWriter {
            file,
            hasher: ContentHasher::new(),
            len: 0,
        })
    }

    /// Reads a whole blob of at most `limit` bytes (checked intact: hashed
    /// as it is read, the first time this process uses it).
    pub fn read(&self, hash: &ContentHash, limit: u64) -> anyhow::Result<Vec<u8>> {
        let path = self.path(hash);
        let size = self
            .size(hash)
            .with_context(|| format!("blob {} is not here", hash.short()))?;
        if size > limit {
            anyhow::bail!("blob {} is {size} bytes; at most {limit}", hash.short());
        }
        if !self.known_intact(hash) {
            // Its first use here: read once, hashed as read.
            return self
                .first_use(hash, |path| {
                    let bytes = std::fs::read(path)?;
                    Ok((ContentHash::of(&bytes), bytes.len() as u64, bytes))
                })
                .with_context(|| format!("blob {} is not here (it was corrupt)", hash.short()));
        }
        std::fs::read(&path).with_context(|| format!("cannot read blob {}", hash.short()))
    }

    /// Answers a peer's request for a chunk.
    pub fn chunk(&self, request: &BlobRequest) -> BlobResponse {
        if !request.is_valid() {
            return BlobResponse::Invalid;
        }
        // A peer is never served a corrupt blob (hashed once per process).
        if !self.is_intact(&request.hash) {
            return BlobResponse::NotFound;
        }
        let Ok(mut file) = File::open(self.path(&request.hash)) else {
            return BlobResponse::NotFound;
        };
        let Ok(total) = file.metadata().map(|m| m.len()) else {
            return BlobResponse::NotFound;
        };
        if request.offset > total {
            return BlobResponse::Invalid;
        }
        let len = u64::from(request.len).min(total - request.offset);
        let mut bytes = vec![0u8; len as usize];
        if file.seek(SeekFrom::Start(request.offset)).is_err()
            || file.read_exact(&mut bytes).is_err()
        {
            return BlobResponse::NotFound;
        }
        BlobResponse::Chunk {
            total,
            offset: request.offset,
            bytes,
        }
    }

    /// Stores every regular file under `root` and the tree's listing;
    /// returns the listing's hash. Symbolic links are not shipped (one could
    /// point outside the tree).
    pub fn put_tree(&self, root: &Path) -> anyhow::Result<ContentHash> {
        let found = tree_files(root)?;
        // The files are on disk before the listing that names them.
        let stored = self.put_files(found.iter().map(|(_, at)| at.as_path()))?;
        let listing = listing_of(root, found.into_iter().zip(stored))?;
        self.put_bytes(&listing.to_bytes())
    }

    /// The validated listing of a stored tree.
    pub fn listing(&self, tree: &ContentHash) -> anyhow::Result<TreeListing> {
        let bytes = self.read(tree, MAX_LISTING_BYTES as u64)?;
        TreeListing::from_bytes(&bytes).map_err(|e| anyhow::anyhow!("tree {}: {e}", tree.short()))
    }

    /// Lays a stored tree out under `dest`: hard links for a read-only
    /// tree (blobs are read-only files), copies for a writable one.
    pub fn materialize(
        &self,
        tree: &ContentHash,
        dest: &Path,
        writable: bool,
    ) -> anyhow::Result<()> {
        let listing = self.listing(tree)?;
        std::fs::create_dir_all(dest)
            .with_context(|| format!("cannot create {}", dest.display()))?;
        for file in &listing.files {
            let target = dest.join(&file.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create {}", parent.display()))?;
            }
            if !self.is_intact(&file.hash) {
                anyhow::bail!(
                    "{} (blob {}) is missing or was corrupt",
                    file.path,
                    file.hash.short()
                );
            }
            let source = self.path(&file.hash);
            if writable || std::fs::hard_link(&source, &target).is_err() {
                std::fs::copy(&source, &target).with_context(|| {
                    format!(
                        "cannot copy blob {} to {}",
                        file.hash.short(),
                        target.display()
                    )
                })?;
                if writable {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644))?;
                }
            }
        }
        Ok(())
    }
}

/// The regular files under `root`, each by its path inside the tree
/// (`/`-separated) and on this device, in order: what [`BlobStore::put_tree`]
/// ships. Symbolic links are not shipped (one could point outside the tree).
pub fn tree_files(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(root).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(root)
            .context("walked outside the tree")?;
        let path = rel
            .to_str()
            .with_context(|| format!("{} is not valid UTF-8", rel.display()))?
            .to_string();
        found.push((path, entry.into_path()));
    }
    Ok(found)
}

/// The listing of tree `root`: its files (from [`tree_files`]) with their
/// hashes and sizes, checked.
pub fn listing_of(
    root: &Path,
    files: impl IntoIterator<Item = ((String, PathBuf), (ContentHash, u64))>,
) -> anyhow::Result<TreeListing> {
    let mut files: Vec<TreeFile> = files
        .into_iter()
        .map(|((path, _), (hash, size))| TreeFile { path, size, hash })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let listing = TreeListing { files };
    listing
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
    Ok(listing)
}
