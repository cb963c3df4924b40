//! Whether a stored blob can be trusted: the verdicts this process reached
//! (a blob it wrote, or one it hashed on first use), the cheap check of a
//! blob's size against them, and the durable steps of putting a blob in
//! place (file synced before the rename, directory synced after).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use corral_protocol::hash::{ContentHash, ContentHasher};

/// Most verdicts remembered (a blob forgotten is hashed again on its next
/// use, no more).
const MAX_VERDICTS: usize = 65_536;

/// A blob's modification time is its "last used" for the size bound's
/// sweep; it is brought forward at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A blob whose file was found at its verdict's length this recently is
/// taken to be there without looking again by
/// [`BlobStore::known_intact_lately`](super::BlobStore::known_intact_lately):
/// under a stream of small tasks each result asks after the same few blobs
/// (an empty stdout). This process forgets the verdict of a blob it
/// removes at once; one removed or cut short by anything else is noticed
/// at most this late there.
pub(super) const RECHECK_EVERY: Duration = Duration::from_secs(1);

/// What this process knows of a stored blob: it hashed to its name, at
/// this length.
#[derive(Clone, Copy, Debug)]
struct Verdict {
    len: u64,
    touched: Instant,
    /// When its file was last found at `len` bytes.
    seen: Instant,
    /// Its bytes and name are known to be on the disk (written synced, or
    /// synced since), not only in the page cache.
    synced: bool,
}

/// The verdicts of this process, shared by every clone of a store.
#[derive(Clone, Debug, Default)]
pub(super) struct Verdicts(Arc<Mutex<HashMap<ContentHash, Verdict>>>);

impl Verdicts {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Verdict>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The length blob `hash` was found intact at, if it was.
    pub(super) fn len_of(&self, hash: &ContentHash) -> Option<u64> {
        self.map().get(hash).map(|v| v.len)
    }

    /// Blob `hash` is intact at `len` bytes (written or hashed now);
    /// `synced` if it is known to be on the disk.
    pub(super) fn intact(&self, hash: ContentHash, len: u64, synced: bool) {
        let mut map = self.map();
        if map.len() >= MAX_VERDICTS && !map.contains_key(&hash) {
            map.clear();
        }
        let synced = synced || map.get(&hash).is_some_and(|v| v.synced && v.len == len);
        let now = Instant::now();
        map.insert(
            hash,
            Verdict {
                len,
                touched: now,
                seen: now,
                synced,
            },
        );
    }

    /// Whether blob `hash` has a verdict and its file was found at its
    /// length within [`RECHECK_EVERY`].
    pub(super) fn seen_lately(&self, hash: &ContentHash) -> bool {
        self.map()
            .get(hash)
            .is_some_and(|v| v.seen.elapsed() < RECHECK_EVERY)
    }

    /// Whether blob `hash` is known to be on the disk.
    pub(super) fn synced(&self, hash: &ContentHash) -> bool {
        self.map().get(hash).is_some_and(|v| v.synced)
    }

    /// Blob `hash` was synced now.
    pub(super) fn mark_synced(&self, hash: &ContentHash) {
        if let Some(v) = self.map().get_mut(hash) {
            v.synced = true;
        }
    }

    /// Forgets blob `hash` (removed, or found corrupt).
    pub(super) fn forget(&self, hash: &ContentHash) {
        self.map().remove(hash);
    }

    /// Whether blob `hash` was last marked used long enough ago to be
    /// marked again (and notes that it is being marked now).
    pub(super) fn due_for_touch(&self, hash: &ContentHash) -> bool {
        let mut map = self.map();
        match map.get_mut(hash) {
            Some(v) if v.touched.elapsed() < TOUCH_EVERY => false,
            Some(v) => {
                v.touched = Instant::now();
                true
            }
            None => true,
        }
    }
}

/// Whether a file of `len` bytes, found now, could be the blob named
/// `hash` without reading it: the length this process found it intact at
/// (then it was seen now, see [`RECHECK_EVERY`]), or, for a blob it has not
/// checked, any length but zero (a power cut after a rename that was not
/// synced leaves a zero-length file under the final name) unless `hash` is
/// the empty blob's.
pub(super) fn plausible(verdicts: &Verdicts, hash: &ContentHash, len: u64) -> bool {
    match verdicts.map().get_mut(hash) {
        Some(v) if v.len == len => {
            v.seen = Instant::now();
            true
        }
        Some(_) => false,
        None => len > 0 || *hash == ContentHash::of(b""),
    }
}

/// Reads the file at `path` a chunk at a time, handing each to `each`
/// until it says stop (`false`); whether the whole file was read.
pub(super) fn read_chunks(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> anyhow::Result<bool>,
) -> anyhow::Result<bool> {
    let mut file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(true);
        }
        if !each(&buf[..n])? {
            return Ok(false);
        }
    }
}

/// Hashes the file at `path` without reading it into memory at once; its
/// hash and length.
pub fn hash_file(path: &Path) -> anyhow::Result<(ContentHash, u64)> {
    let mut hasher = ContentHasher::new();
    let mut len = 0u64;
    read_chunks(path, |chunk| {
        hasher.update(chunk);
        len += chunk.len() as u64;
        Ok(true)
    })?;
    Ok((hasher.finish(), len))
}

/// Whether the file at `path` holds exactly `bytes`.
pub(super) fn same_bytes(path: &Path, bytes: &[u8]) -> anyhow::Result<bool> {
    let mut at = 0;
    let whole = read_chunks(path, |chunk| {
        let same = bytes.get(at..at + chunk.len()) == Some(chunk);
        at += chunk.len();
        Ok(same)
    })?;
    Ok(whole && at == bytes.len())
}

/// Syncs directory `dir`, so a rename or a new entry in it survives a
/// power cut.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Marks the file at `path` used now (its modification time, which the
/// size bound's sweep reads). Best effort: a blob that cannot be marked is
/// only swept a little earlier.
pub(super) fn touch(path: &Path) {
    if let Ok(file) = File::open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}
