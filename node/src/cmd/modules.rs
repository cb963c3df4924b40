//! Modules by name on the command line (issue 22): `corral publish`,
//! `corral modules`, and the naming half of `corral run NAME`. Each goes
//! through the daemon when one runs (it holds the store's lock), else
//! straight to the store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::module_record::{
    ModuleRecord, ModuleRef, check_description, check_name, parse_version,
};
use corral_protocol::receipt::EngineKind;

use super::UsageError;
use crate::blobs::BlobStore;
use crate::clock::now_ms;
use crate::config::DataDir;
use crate::control::{Request, client};
use crate::modules::{Known, entry, keep};
use crate::runtime::{Runtime, RuntimeError};
use crate::store::Store;

/// `corral publish NAME@VERSION MODULE [--description TEXT]`.
pub fn publish(
    data_dir: Option<PathBuf>,
    reference: &str,
    module: &Path,
    description: &str,
) -> anyhow::Result<ExitCode> {
    let Some((name, version)) = reference.split_once('@') else {
        return Err(UsageError(format!(
            "{reference:?} names no version: write NAME@VERSION, such as {reference}@1.0.0"
        ))
        .into());
    };
    check_name(name).map_err(|e| UsageError(e.to_string()))?;
    let version = parse_version(version).map_err(|e| UsageError(e.to_string()))?;
    check_description(description).map_err(|e| UsageError(e.to_string()))?;
    let dir = DataDir::resolve(data_dir)?;
    let wasm = crate::job::plan::load_module(module)?;
    // The check `corral run` makes before it runs a module: it must
    // compile (the interpreter's validation, without a JIT compile).
    let runtime = Runtime::new(None)?;
    runtime
        .compile(EngineKind::Interp, &wasm)
        .map_err(|e| match e {
            RuntimeError::Invalid(_) | RuntimeError::NotAModule(_) => {
                anyhow::Error::from(UsageError(format!("{}: {e}", module.display())))
            }
            other => anyhow::Error::from(other),
        })?;
    let key = crate::identity::load_node_key(dir.root()).context(
        "publishing signs with this device's key: run `corral init` or `corral join TOKEN` first",
    )?;
    let blobs = BlobStore::open(dir.root())?;
    let hash = blobs.put_hashed(&wasm.bytes, wasm.hash)?;
    let record = ModuleRecord {
        name: name.to_string(),
        version,
        module: hash,
        size: wasm.bytes.len() as u64,
        description: description.to_string(),
        publisher: key.peer_key(),
        published_ms: now_ms(),
    };
    record.validate().map_err(|e| UsageError(e.to_string()))?;
    let bytes = record.to_signed_bytes(&key.signing_key());
    if client::daemon_running(dir.root()) {
        client::call(
            dir.root(),
            Request::ModulePublish {
                record: hex::encode(&bytes),
            },
        )?;
    } else {
        let store = Store::open(dir.root())?;
        let me = key.peer_key();
        let trusted = |k: &PeerKey| *k == me || store.is_trusted(k).unwrap_or(false);
        let mut known = Known::load(&store, now_ms(), &trusted);
        known
            .take(&bytes, now_ms(), &trusted)
            .map_err(|refusal| anyhow::anyhow!("{refusal}"))?;
        keep(&store, &record, &bytes)?;
        store.flush()?;
        eprintln!("corral: no daemon runs: the record spreads to the mesh once `corral up` does");
    }
    eprintln!(
        "corral: published {}@{} ({}, {} bytes) as {}",
        record.name,
        record.version,
        record.module.short(),
        record.size,
        record.publisher.short()
    );
    println!("{}@{}", record.name, record.version);
    Ok(ExitCode::SUCCESS)
}

/// The records this device knows, as `corral modules --json` lists them:
/// from the daemon, or from the store when none runs.
fn listing(dir: &DataDir) -> anyhow::Result<serde_json::Value> {
    if client::daemon_running(dir.root()) {
        return client::call(dir.root(), Request::Modules);
    }
    let store = Store::open(dir.root())?;
    let blobs = BlobStore::open(dir.root())?;
    let trusted = trust_of(dir, &store);
    let known = Known::load(&store, now_ms(), &trusted);
    Ok(serde_json::Value::Array(
        known
            .list()
            .into_iter()
            .map(|r| entry(r, trusted(&r.publisher), blobs.has(&r.module)))
            .collect(),
    ))
}

/// Whether a publisher counts as trusted here, read from the store: this
/// device's own key, or one of its trust list.
fn trust_of<'a>(dir: &DataDir, store: &'a Store) -> impl Fn(&PeerKey) -> bool + 'a {
    let me = crate::identity::load_node_key(dir.root())
        .ok()
        .map(|k| k.peer_key());
    move |k: &PeerKey| Some(*k) == me || store.is_trusted(k).unwrap_or(false)
}

/// `corral modules [--json]`.
pub fn list(data_dir: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let answer = listing(&dir)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows = answer.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        eprintln!(
            "corral: no named modules known here yet; publish one with `corral publish \
             NAME@VERSION MODULE.wasm`"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let short = |v: &serde_json::Value| text(v).chars().take(12).collect::<String>();
    println!(
        "{:<32} {:<12} {:>10}  {:<12} {:<9} DESCRIPTION",
        "MODULE", "HASH", "SIZE", "PUBLISHER", "TRUST"
    );
    for row in rows {
        println!(
            "{:<32} {:<12} {:>10}  {:<12} {:<9} {}",
            format!("{}@{}", text(&row["name"]), text(&row["version"])),
            short(&row["module"]),
            bytesize::ByteSize::b(row["size"].as_u64().unwrap_or(0))
                .display()
                .iec()
                .to_string(),
            short(&row["publisher"]),
            if row["trusted"] == true {
                "trusted"
            } else {
                "untrusted"
            },
            text(&row["description"]),
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A published module `corral run` resolved by name, its blob here.
#[derive(Clone, Debug)]
pub struct Named {
    /// Its name (argv[0] of its tasks).
    pub name: String,
    /// The version chosen.
    pub version: String,
    /// Its content hash.
    pub module: ContentHash,
    /// Its blob in this data dir.
    pub path: PathBuf,
}

/// Whether `corral run`'s MODULE names a published module rather than a
/// file: a name (`render`, `render@^1.2`) that is no file here, holds no
/// `/` and does not end in `.wasm`. `None` for a file; a reference that
/// does not parse is a usage error naming both readings.
pub fn as_reference(module: &Path) -> Result<Option<ModuleRef>, UsageError> {
    let text = module.to_string_lossy();
    if module.exists() || text.contains('/') || text.ends_with(".wasm") {
        return Ok(None);
    }
    ModuleRef::parse(&text).map(Some).map_err(|e| {
        UsageError(format!(
            "cannot read module {text}: no such file, and not a module name either ({e})"
        ))
    })
}

/// Resolves `want` among the records this device knows, with its trust
/// list, and makes sure the module's blob is here: through the daemon when
/// one runs (it fetches the blob from a publisher or a peer), else from the
/// store and the blobs already here. A name that does not resolve
/// (`not_found`, `untrusted_only`, `conflict`) is a usage error naming the
/// reason.
pub fn resolve_named(data_dir: &Path, want: &ModuleRef, text: &str) -> anyhow::Result<Named> {
    let blobs = BlobStore::open(data_dir)?;
    let answer = if client::daemon_running(data_dir) {
        client::call(
            data_dir,
            Request::ModuleResolve {
                reference: text.to_string(),
                fetch: true,
            },
        )?
    } else {
        let dir = DataDir::resolve(Some(data_dir.to_path_buf()))?;
        let store = Store::open(data_dir)?;
        let trusted = trust_of(&dir, &store);
        let known = Known::load(&store, now_ms(), &trusted);
        match known.resolve(&trusted, want) {
            Ok(resolved) => {
                let record = resolved.record;
                if !blobs.has(&record.module) {
                    return Err(UsageError(format!(
                        "{}@{} ({}) is not on this device, and no daemon runs to fetch it from \
                         its publisher: start one with `corral up`",
                        record.name,
                        record.version,
                        record.module.short()
                    ))
                    .into());
                }
                serde_json::json!({ "resolved": entry(&record, true, true) })
            }
            Err(e) => {
                serde_json::json!({ "refused": { "code": e.code(), "message": e.to_string() } })
            }
        }
    };
    if let Some(refused) = answer.get("refused") {
        return Err(UsageError(format!(
            "cannot run {text}: {}: {}",
            refused["code"].as_str().unwrap_or("refused"),
            refused["message"].as_str().unwrap_or_default()
        ))
        .into());
    }
    let resolved = &answer["resolved"];
    let module: ContentHash = resolved["module"]
        .as_str()
        .and_then(|h| h.parse().ok())
        .context("the daemon's answer names no module hash")?;
    Ok(Named {
        name: resolved["name"].as_str().unwrap_or_default().to_string(),
        version: resolved["version"].as_str().unwrap_or_default().to_string(),
        module,
        path: blobs.path(&module),
    })
}
