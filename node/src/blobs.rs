//! Content-addressed files in the data dir (`blobs/ab/abcd…`): modules,
//! shipped trees and their listings, inputs, and task outputs. A blob is
//! written to a temporary file, hashed on the way, and renamed into place
//! only when its hash is the one expected, so a reader never sees half a
//! blob or the wrong bytes.

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

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves the blob into place if its hash is `expected`.
    pub fn commit(self, store: &BlobStore, expected: &ContentHash) -> anyhow::Result<PathBuf> {
        let got = self.hasher.finish();
        if &got != expected {
            anyhow::bail!(
                "blob {} arrived with the wrong contents (hash {})",
                expected.short(),
                got.short()
            );
        }
        let path = store.path(expected);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        set_read_only(self.file.path())?;
        self.file
            .persist(&path)
            .with_context(|| format!("cannot store blob {}", expected.short()))?;
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
        Ok(Self { dir })
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

    /// Whether the blob is here.
    pub fn has(&self, hash: &ContentHash) -> bool {
        self.path(hash).is_file()
    }

    /// Size of a stored blob.
    pub fn size(&self, hash: &ContentHash) -> Option<u64> {
        std::fs::metadata(self.path(hash)).ok().map(|m| m.len())
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

    /// Stores bytes; returns their hash.
    pub fn put_bytes(&self, bytes: &[u8]) -> anyhow::Result<ContentHash> {
        let hash = ContentHash::of(bytes);
        if !self.has(&hash) {
            let mut writer = self.writer()?;
            writer.write(bytes)?;
            writer.commit(self, &hash)?;
        }
        Ok(hash)
    }

    /// Stores a copy of a file; returns its hash and size.
    pub fn put_file(&self, path: &Path) -> anyhow::Result<(ContentHash, u64)> {
        let mut file =
            File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
        let mut writer = self.writer()?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if n == 0 {
                break;
            }
            writer.write(&buf[..n])?;
        }
        let hash = writer.hasher.clone().finish();
        let len = writer.len;
        if !self.has(&hash) {
            writer.commit(self, &hash)?;
        }
        Ok((hash, len))
    }

    /// Reads a whole blob of at most `limit` bytes.
    pub fn read(&self, hash: &ContentHash, limit: u64) -> anyhow::Result<Vec<u8>> {
        let path = self.path(hash);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("blob {} is not here", hash.short()))?
            .len();
        if size > limit {
            anyhow::bail!("blob {} is {size} bytes; at most {limit}", hash.short());
        }
        std::fs::read(&path).with_context(|| format!("cannot read blob {}", hash.short()))
    }

    /// Answers a peer's request for a chunk.
    pub fn chunk(&self, request: &BlobRequest) -> BlobResponse {
        if !request.is_valid() {
            return BlobResponse::Invalid;
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
        let mut files = Vec::new();
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
            let (hash, size) = self.put_file(entry.path())?;
            files.push(TreeFile { path, size, hash });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        let listing = TreeListing { files };
        listing
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_stored_by_hash_and_chunks_are_bounded() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::open(tmp.path()).expect("open");
        let hash = store.put_bytes(b"hello blob").expect("put");
        assert!(store.has(&hash));
        assert_eq!(store.read(&hash, 100).expect("read"), b"hello blob");
        assert!(store.read(&hash, 3).is_err(), "the limit holds");
        match store.chunk(&BlobRequest {
            hash,
            offset: 6,
            len: 100,
        }) {
            BlobResponse::Chunk {
                total,
                offset,
                bytes,
            } => {
                assert_eq!((total, offset, bytes.as_slice()), (10, 6, &b"blob"[..]));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.chunk(&BlobRequest {
                hash,
                offset: 11,
                len: 1
            }),
            BlobResponse::Invalid
        );
        assert_eq!(
            store.chunk(&BlobRequest {
                hash: ContentHash::of(b"nope"),
                offset: 0,
                len: 1
            }),
            BlobResponse::NotFound
        );
    }

    #[test]
    fn a_blob_with_the_wrong_contents_is_not_stored() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = BlobStore::open(tmp.path()).expect("open");
        let mut writer = store.writer().expect("writer");
        writer.write(b"evil").expect("write");
        let wanted = ContentHash::of(b"good");
        let err = writer.commit(&store, &wanted).expect_err("mismatch");
        assert!(err.to_string().contains("wrong contents"), "{err}");
        assert!(!store.has(&wanted));
    }

    #[test]
    fn trees_round_trip_through_the_store() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("a.txt"), "A").expect("write");
        std::fs::write(src.join("sub/b.txt"), "B").expect("write");
        let store = BlobStore::open(&tmp.path().join("data")).expect("open");
        let tree = store.put_tree(&src).expect("put tree");
        let listing = store.listing(&tree).expect("listing");
        assert_eq!(
            listing
                .files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>(),
            ["a.txt", "sub/b.txt"]
        );
        let dest = tmp.path().join("dest");
        store.materialize(&tree, &dest, true).expect("materialize");
        assert_eq!(
            std::fs::read_to_string(dest.join("sub/b.txt")).expect("read"),
            "B"
        );
        std::fs::write(dest.join("a.txt"), "changed").expect("a writable copy is writable");
        assert_eq!(store.read(&listing.files[0].hash, 10).expect("blob"), b"A");
    }
}
