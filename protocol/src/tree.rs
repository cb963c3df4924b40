//! The listing of a directory tree shipped with a job (`--dir`): every
//! regular file with its relative path, size and content hash. The listing
//! is itself a blob; its hash is the tree's name in the manifest.

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::hash::ContentHash;

/// Most files in one shipped tree.
pub const MAX_TREE_FILES: usize = 100_000;
/// Most bytes of all files of one tree together.
pub const MAX_TREE_BYTES: u64 = 16 * 1024 * 1024 * 1024;
/// Most bytes of an encoded listing.
pub const MAX_LISTING_BYTES: usize = 32 * 1024 * 1024;
/// Longest relative path.
const MAX_PATH_BYTES: usize = 4096;

/// One file of a tree.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeFile {
    /// Path relative to the tree's root, `/`-separated, e.g. `models/a.bin`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Content hash.
    pub hash: ContentHash,
}

/// A tree: its files in path order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeListing {
    /// The files, sorted by path, each path once.
    pub files: Vec<TreeFile>,
}

/// Why a listing was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The bytes do not decode.
    #[error("tree listing: {0}")]
    Codec(#[from] CodecError),
    /// A rule was broken.
    #[error("tree listing: {0}")]
    Invalid(String),
}

impl TreeListing {
    /// The canonical bytes (what is hashed and shipped).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::to_canonical_bytes(self)
    }

    /// The tree's hash: the hash of its canonical bytes.
    pub fn hash(&self) -> ContentHash {
        ContentHash::of(&self.to_bytes())
    }

    /// Decodes and validates a listing.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TreeError> {
        let listing: Self = codec::from_canonical_bytes(bytes, MAX_LISTING_BYTES)?;
        listing.validate()?;
        Ok(listing)
    }

    /// Total bytes of the tree's files.
    pub fn total_bytes(&self) -> u64 {
        self.files
            .iter()
            .fold(0u64, |sum, f| sum.saturating_add(f.size))
    }

    /// Checks the rules: bounded, sorted and unique plain relative paths.
    pub fn validate(&self) -> Result<(), TreeError> {
        let bad = |why: String| Err(TreeError::Invalid(why));
        if self.files.len() > MAX_TREE_FILES {
            return bad(format!(
                "{} files; at most {MAX_TREE_FILES}",
                self.files.len()
            ));
        }
        if self.total_bytes() > MAX_TREE_BYTES {
            return bad(format!(
                "{} bytes; at most {MAX_TREE_BYTES}",
                self.total_bytes()
            ));
        }
        for (i, file) in self.files.iter().enumerate() {
            check_relative(&file.path).map_err(TreeError::Invalid)?;
            if i > 0 && self.files[i - 1].path >= file.path {
                return bad(format!(
                    "paths must be sorted and unique: {:?} after {:?}",
                    file.path,
                    self.files[i - 1].path
                ));
            }
        }
        Ok(())
    }
}

/// A relative path must be plain: no leading `/`, no `.` or `..`, no empty
/// parts, no NUL or backslash.
fn check_relative(path: &str) -> Result<(), String> {
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return Err(format!("path of {} bytes", path.len()));
    }
    if path.contains('\0') || path.contains('\\') {
        return Err(format!("path {path:?} holds NUL or a backslash"));
    }
    for part in path.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return Err(format!(
                "path {path:?} must be relative and plain (no empty, `.` or `..` parts)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> TreeFile {
        TreeFile {
            path: path.into(),
            size: 1,
            hash: ContentHash::of(path.as_bytes()),
        }
    }

    #[test]
    fn listings_round_trip_and_name_themselves_by_hash() {
        let listing = TreeListing {
            files: vec![file("a.txt"), file("sub/b.txt")],
        };
        let bytes = listing.to_bytes();
        assert_eq!(TreeListing::from_bytes(&bytes).expect("valid"), listing);
        assert_eq!(listing.hash(), ContentHash::of(&bytes));
    }

    #[test]
    fn paths_that_escape_or_repeat_are_refused() {
        for files in [
            vec![file("../etc/passwd")],
            vec![file("/abs")],
            vec![file("a//b")],
            vec![file("a/./b")],
            vec![file("b"), file("a")],
            vec![file("a"), file("a")],
        ] {
            let listing = TreeListing { files };
            let err = TreeListing::from_bytes(&listing.to_bytes()).expect_err("refused");
            assert!(err.to_string().starts_with("tree listing:"), "{err}");
        }
    }
}
