//! What an accepted task reads, by hash: its module, `--dir` trees, input
//! and stdin, found on disk or fetched from its coordinator (hash-checked,
//! cached); and the module compiled for the job's engine (cached).

use std::path::{Path, PathBuf};

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::manifest::{EngineReq, JobManifest, TaskSet};
use corral_protocol::receipt::EngineKind;

use super::ctx::WorkerCtx;
use super::task::{Assignment, Prepared};
use crate::blobs::BlobStore;
use crate::dispatch::{Keep, fetch_many};
use crate::runtime::{Compiled, MAX_MODULE_BYTES, WasmModule};

/// The blobs a task reads besides its `--dir` trees, each with the most
/// bytes accepted for it: the module, its input (a job with inputs), stdin.
struct Needs {
    module: (ContentHash, u64),
    input: Option<(String, ContentHash, u64)>,
    stdin: Option<(ContentHash, u64)>,
}

impl Needs {
    fn of(manifest: &JobManifest, index: u32) -> anyhow::Result<Self> {
        let input = match &manifest.tasks {
            TaskSet::Inputs(inputs) => {
                let spec = inputs
                    .get(index as usize)
                    .context("no input for this task")?;
                Some((spec.name.clone(), spec.hash, spec.size))
            }
            TaskSet::Count(_) => None,
        };
        Ok(Self {
            module: (
                manifest.module_hash,
                manifest.module_size.min(MAX_MODULE_BYTES as u64),
            ),
            input,
            stdin: manifest.stdin.map(|spec| {
                (
                    spec.hash,
                    spec.size.min(corral_protocol::manifest::MAX_STDIN_BYTES),
                )
            }),
        })
    }
}

/// What a task needs, if every blob of it is already here (jobs with
/// `--dir` trees always take the fetching path, which reads their listings).
pub(super) fn local_inputs(blobs: &BlobStore, task: &Assignment) -> Option<Prepared> {
    if !task.manifest.dirs.is_empty() {
        return None;
    }
    let needs = Needs::of(&task.manifest, task.index).ok()?;
    // Only what this process already found intact: anything else takes the
    // fetching path, which hash-checks it off the loop.
    let here = |hash: &ContentHash| blobs.known_intact_lately(hash).then(|| blobs.path(hash));
    Some(Prepared {
        module: here(&needs.module.0)?,
        input: match needs.input {
            Some((name, hash, _)) => Some((name, here(&hash)?)),
            None => None,
        },
        stdin: match needs.stdin {
            Some((hash, _)) => Some(here(&hash)?),
            None => None,
        },
    })
}

/// Fetches (hash-checked, cached) what a task needs from its coordinator:
/// the `--dir` trees' listings first, then every blob side by side (within
/// [`fetch_many`]'s bound).
pub(super) async fn fetch_inputs(ctx: &WorkerCtx, task: &Assignment) -> anyhow::Result<Prepared> {
    let needs = Needs::of(&task.manifest, task.index)?;
    let fetch = |wanted: Vec<(ContentHash, u64)>| async move {
        fetch_many(
            &ctx.net,
            &ctx.blobs,
            &ctx.locks,
            task.coordinator,
            wanted,
            Keep::Cached,
        )
        .await
    };
    let listings = task.manifest.dirs.iter().map(|dir| {
        (
            dir.tree_hash,
            corral_protocol::tree::MAX_LISTING_BYTES as u64,
        )
    });
    fetch(listings.collect()).await?;
    let mut wanted = vec![needs.module];
    wanted.extend(needs.input.as_ref().map(|(_, hash, size)| (*hash, *size)));
    wanted.extend(needs.stdin);
    for dir in &task.manifest.dirs {
        let listing = ctx.blobs.listing(&dir.tree_hash)?;
        wanted.extend(listing.files.iter().map(|file| (file.hash, file.size)));
    }
    let mut paths = fetch(wanted).await?.into_iter();
    let mut next = || paths.next().context("a fetched blob went missing");
    let module = next()?;
    let input = match needs.input {
        Some((name, _, _)) => Some((name, next()?)),
        None => None,
    };
    let stdin = match needs.stdin {
        Some(_) => Some(next()?),
        None => None,
    };
    Ok(Prepared {
        module,
        input,
        stdin,
    })
}

/// The module compiled for the job's engine, compiled once per hash (for
/// `any`, on the tier [`crate::runtime::Runtime::compile_auto`] picks).
pub(super) fn compiled_for(
    ctx: &WorkerCtx,
    manifest: &JobManifest,
    module: &Path,
) -> anyhow::Result<Compiled> {
    let load = || -> anyhow::Result<WasmModule> {
        let bytes = std::fs::read(module).context("cannot read the module")?;
        let module = WasmModule::new(bytes)?;
        if module.hash != manifest.module_hash {
            anyhow::bail!("the module does not match its hash");
        }
        Ok(module)
    };
    // A job for any engine on a device offering both: a big module's
    // first tasks start on the interpreter while the JIT compiles it.
    let offered = |engine| ctx.engines.contains(&engine);
    if manifest.engine == EngineReq::Any && offered(EngineKind::Jit) && offered(EngineKind::Interp)
    {
        return ctx.runtime.compile_auto(manifest.module_hash, load);
    }
    let engine = ctx
        .engine_for(manifest.engine)
        .context("no engine of the kind the job needs")?;
    ctx.runtime
        .compile_by_hash(manifest.module_hash, engine, load)
}

/// A read-only tree, laid out once per device and shared by its tasks.
pub(super) fn shared_tree(blobs: &BlobStore, tree: &ContentHash) -> anyhow::Result<PathBuf> {
    let dest = blobs.trees_dir().join(tree.to_hex());
    if dest.is_dir() {
        return Ok(dest);
    }
    let parent = dest.parent().context("tree dir")?.to_path_buf();
    std::fs::create_dir_all(&parent)?;
    let staging = tempfile::Builder::new()
        .prefix("tree-")
        .tempdir_in(blobs.tmp_dir())?;
    blobs.materialize(tree, staging.path(), false)?;
    let staged = staging.keep();
    if std::fs::rename(&staged, &dest).is_err() {
        // Another task laid it out first.
        let _ = std::fs::remove_dir_all(&staged);
    }
    Ok(dest)
}
