//! The compiled-module cache: Cranelift output kept in memory for this process
//! and on disk across runs, keyed by module hash, wasmtime version and the
//! engine's compatibility hash (target, CPU features, settings).
//!
//! A corrupt, truncated or incompatible file is recompiled and replaced, never
//! trusted: wasmtime checks the header and compatibility on deserialisation.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use corral_protocol::hash::ContentHash;
use wasmtime::{Engine, Module};

use super::{RuntimeError, WasmModule};

/// At most this many compiled modules stay in memory; a batch uses one.
const MEMORY_ENTRIES: usize = 32;

pub(crate) struct ModuleCache {
    dir: Option<PathBuf>,
    key: String,
    memory: Mutex<HashMap<ContentHash, Module>>,
}

impl ModuleCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let key = format!(
            "wasmtime-{}-{:016x}",
            std::env::consts::ARCH,
            hasher.finish()
        );
        Self {
            dir,
            key,
            memory: Mutex::new(HashMap::new()),
        }
    }

    fn path(&self, hash: &ContentHash) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.cwasm", hash.to_hex(), self.key)))
    }

    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        module: &WasmModule,
    ) -> Result<Module, RuntimeError> {
        if let Some(found) = self.lock().get(&module.hash) {
            return Ok(found.clone());
        }
        let compiled = match self.path(&module.hash) {
            Some(path) => match load(engine, &path) {
                Some(found) => found,
                None => {
                    let compiled = compile(engine, module)?;
                    if let Err(e) = store(&compiled, &path) {
                        tracing::warn!(path = %path.display(), "cannot cache compiled module: {e:#}");
                    }
                    compiled
                }
            },
            None => compile(engine, module)?,
        };
        let mut memory = self.lock();
        if memory.len() >= MEMORY_ENTRIES {
            memory.clear();
        }
        memory.insert(module.hash, compiled.clone());
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Module>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn compile(engine: &Engine, module: &WasmModule) -> Result<Module, RuntimeError> {
    Module::new(engine, &module.bytes).map_err(|e| RuntimeError::Invalid(format!("{e:#}")))
}

fn load(engine: &Engine, path: &Path) -> Option<Module> {
    if !path.exists() {
        return None;
    }
    // SAFETY: the file was written by `store` below from `Module::serialize`
    // of this same wasmtime version and configuration (both are in the file
    // name), in a directory only this user can write (the data dir is 0700).
    // wasmtime checks the header, version and compatibility again and returns
    // an error, not undefined behaviour, for a mismatch.
    match unsafe { Module::deserialize_file(engine, path) } {
        Ok(module) => {
            // Its last use, for the size bound's sweep (least recently
            // used first); best effort.
            if let Ok(file) = std::fs::File::open(path) {
                let _ = file.set_modified(std::time::SystemTime::now());
            }
            Some(module)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), "discarding unusable compiled module: {e:#}");
            let _ = std::fs::remove_file(path);
            None
        }
    }
}

fn store(module: &Module, path: &Path) -> anyhow::Result<()> {
    let bytes = module.serialize()?;
    let dir = path
        .parent()
        .ok_or_else(|| anyhow::anyhow!("cache path has no parent"))?;
    std::fs::create_dir_all(dir)?;
    // Write then rename: a crash or a concurrent run never leaves a torn file
    // under the final name.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&bytes)?;
    tmp.persist(path)?;
    Ok(())
}
