//! Putting what a job needs into the data dir's blob store before it is
//! submitted: every file hashed (or its hash remembered from an earlier
//! run, [`FileHashes`]), the daemon asked which blobs its store lacks, and
//! only those written. A warm `corral run` of a 27.7 MB module with a
//! 330-file tree read every file and every stored copy again, and synced
//! them all.

use std::path::{Path, PathBuf};

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::manifest::DirSpec;

use crate::blobs::{self, BlobStore, FileHashes};
use crate::control::client;
use crate::control::wire::{MAX_LACKING_ASK, Request};
use crate::job::plan::{JobPlan, Tasks};

/// Most bytes of blobs one question to the daemon is about: a blob the
/// daemon has not checked yet is read whole before it answers, and a
/// client waits 30 s for an answer.
const MAX_ASK_BYTES: u64 = 512 * 1024 * 1024;

/// What a submitted job names in the blob store.
pub(super) struct Shipped {
    /// The module.
    pub(super) module: ContentHash,
    /// The inputs by name, for a job of one task per input.
    pub(super) inputs: Vec<(String, ContentHash)>,
    /// The shipped trees.
    pub(super) dirs: Vec<DirSpec>,
}

/// Where the bytes of a blob to be shipped are.
enum Source {
    Module,
    File(PathBuf),
    Listing(Vec<u8>),
}

/// A blob the job needs: its hash, size, and where its bytes are.
struct Wanted {
    hash: ContentHash,
    size: u64,
    source: Source,
}

/// Makes sure the store holds every blob of `plan`, durably, its files
/// hashed through `memo` (saved here); returns their hashes.
pub(super) fn ship(
    data_dir: &Path,
    blobs: &BlobStore,
    plan: &JobPlan,
    memo: &mut FileHashes,
) -> anyhow::Result<Shipped> {
    let mut wanted = vec![Wanted {
        hash: plan.module.hash,
        size: plan.module.size,
        source: Source::Module,
    }];
    let inputs = match &plan.tasks {
        Tasks::Inputs { dir, files } => files
            .iter()
            .map(|name| {
                let path = dir.join(name);
                let (hash, size) = memo.hash(&path)?;
                wanted.push(Wanted {
                    hash,
                    size,
                    source: Source::File(path),
                });
                Ok((name.clone(), hash))
            })
            .collect::<anyhow::Result<Vec<_>>>()?,
        Tasks::Count(_) => Vec::new(),
    };
    let mut dirs = Vec::with_capacity(plan.dirs.len());
    for d in &plan.dirs {
        let tree_hash = list_tree(memo, &d.host, &mut wanted)
            .with_context(|| format!("cannot ship --dir {}", d.host.display()))?;
        dirs.push(DirSpec {
            guest_path: d.guest.clone(),
            tree_hash,
            writable: d.writable,
        });
    }
    if let Err(e) = memo.save() {
        tracing::debug!("the file hashes could not be remembered: {e:#}");
    }
    let lacking = ask_lacking(data_dir, &wanted)?;
    put_lacking(blobs, plan, &wanted, &lacking)?;
    Ok(Shipped {
        module: plan.module.hash,
        inputs,
        dirs,
    })
}

/// Hashes the files of the tree at `root` and its listing, adding each to
/// `wanted` (files before the listing); the listing's hash.
fn list_tree(
    memo: &mut FileHashes,
    root: &Path,
    wanted: &mut Vec<Wanted>,
) -> anyhow::Result<ContentHash> {
    let found = blobs::tree_files(root)?;
    let hashed = found
        .iter()
        .map(|(_, path)| memo.hash(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for ((_, path), (hash, size)) in found.iter().zip(&hashed) {
        wanted.push(Wanted {
            hash: *hash,
            size: *size,
            source: Source::File(path.clone()),
        });
    }
    let bytes = blobs::listing_of(root, found.into_iter().zip(hashed))?.to_bytes();
    let hash = ContentHash::of(&bytes);
    wanted.push(Wanted {
        hash,
        size: bytes.len() as u64,
        source: Source::Listing(bytes),
    });
    Ok(hash)
}

/// The blobs of `wanted` the daemon's store lacks, asked a bounded
/// number of blobs and bytes at a time.
fn ask_lacking(data_dir: &Path, wanted: &[Wanted]) -> anyhow::Result<Vec<ContentHash>> {
    let mut lacking = Vec::new();
    let mut ask: Vec<ContentHash> = Vec::new();
    let mut bytes = 0u64;
    for (i, w) in wanted.iter().enumerate() {
        ask.push(w.hash);
        bytes += w.size;
        let last = i + 1 == wanted.len();
        if last || ask.len() == MAX_LACKING_ASK || bytes >= MAX_ASK_BYTES {
            let answer = client::call(
                data_dir,
                Request::Lacking {
                    blobs: std::mem::take(&mut ask),
                },
            )?;
            let some: Vec<ContentHash> = serde_json::from_value(answer["lacking"].clone())
                .context("the daemon's list of lacking blobs is not understood")?;
            lacking.extend(some);
            bytes = 0;
        }
    }
    Ok(lacking)
}

/// Writes the blobs of `wanted` that are `lacking`: files first, synced
/// together, then the module and the listings that name them.
fn put_lacking(
    blobs: &BlobStore,
    plan: &JobPlan,
    wanted: &[Wanted],
    lacking: &[ContentHash],
) -> anyhow::Result<()> {
    let lacking: std::collections::HashSet<&ContentHash> = lacking.iter().collect();
    let mut files: Vec<(&Path, ContentHash)> = wanted
        .iter()
        .filter(|w| lacking.contains(&w.hash))
        .filter_map(|w| match &w.source {
            Source::File(path) => Some((path.as_path(), w.hash)),
            _ => None,
        })
        .collect();
    files.sort_unstable_by_key(|(_, hash)| *hash);
    files.dedup_by_key(|(_, hash)| *hash);
    let stored = blobs.put_files(files.iter().map(|(path, _)| *path))?;
    for ((path, hash), (got, _)) in files.iter().zip(stored) {
        anyhow::ensure!(
            got == *hash,
            "{} changed while it was being shipped: run again once it is written",
            path.display()
        );
    }
    for w in wanted.iter().filter(|w| lacking.contains(&w.hash)) {
        match &w.source {
            Source::Module => {
                blobs.put_hashed(&plan.module.wasm()?.bytes, w.hash)?;
            }
            Source::Listing(bytes) => {
                blobs.put_bytes(bytes)?;
            }
            Source::File(_) => {}
        }
    }
    Ok(())
}
