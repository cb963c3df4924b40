//! The compiled-module cache: Cranelift output kept in memory for this process
//! and on disk across runs, keyed by module hash, wasmtime version and the
//! engine's compatibility hash (target, CPU features, settings).
//!
//! A corrupt, truncated or incompatible file is recompiled and replaced, never
//! trusted: wasmtime checks the header and compatibility on deserialisation.
//!
//! Single flight: a module is compiled at most once at a time per engine,
//! however many slots and jobs ask for it together; the others wait for that
//! compile and share its code (a 30 MB module takes Cranelift 20 s and
//! 700 MB; four slots compiling it at once took four times both).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use corral_protocol::hash::ContentHash;
use wasmtime::{Engine, Module};

use super::{RuntimeError, WasmModule};

/// At most this many compiled modules stay in memory; a batch uses one.
const MEMORY_ENTRIES: usize = 32;

/// A module's code, or the error its compile gave, once its one compile
/// ends; callers that come while it runs wait on it.
type Slot = Arc<OnceLock<Result<Module, String>>>;

pub(crate) struct ModuleCache {
    dir: Option<PathBuf>,
    key: String,
    memory: Mutex<HashMap<ContentHash, Slot>>,
    /// Cranelift compiles done (not loads from disk): what single flight
    /// saves shows here.
    compiles: AtomicU64,
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
            compiles: AtomicU64::new(0),
        }
    }

    /// How many modules this cache compiled (not loaded) so far.
    pub(crate) fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    fn path(&self, hash: &ContentHash) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{}-{}.cwasm", hash.to_hex(), self.key)))
    }

    /// The module's code without compiling it: from memory, or from the
    /// disk cache (loading it is cheap: the file is mapped).
    pub(crate) fn ready(&self, engine: &Engine, hash: &ContentHash) -> Option<Module> {
        if let Some(slot) = self.lock().get(hash) {
            // Being compiled (not yet set), or failed: not ready.
            return slot.get().and_then(|done| done.as_ref().ok().cloned());
        }
        let found = load(engine, &self.path(hash)?)?;
        // Kept unless a compile began meanwhile (it will load this file).
        let _ = self.slot(hash).set(Ok(found.clone()));
        Some(found)
    }

    /// The module's code: from memory, from disk, or compiled now — once,
    /// whoever else asks for it meanwhile.
    pub(crate) fn get_or_compile(
        &self,
        engine: &Engine,
        module: &WasmModule,
    ) -> Result<Module, RuntimeError> {
        let slot = self.slot(&module.hash);
        let done = slot.get_or_init(|| self.load_or_compile(engine, module));
        match done {
            Ok(compiled) => Ok(compiled.clone()),
            Err(message) => {
                // Not kept: the next ask tries again (a module the pool
                // refused is remembered by its caller).
                let mut memory = self.lock();
                if memory
                    .get(&module.hash)
                    .is_some_and(|s| Arc::ptr_eq(s, &slot))
                {
                    memory.remove(&module.hash);
                }
                Err(RuntimeError::Invalid(message.clone()))
            }
        }
    }

    /// The module's slot, made empty if it has none.
    fn slot(&self, hash: &ContentHash) -> Slot {
        let mut memory = self.lock();
        if !memory.contains_key(hash) && memory.len() >= MEMORY_ENTRIES {
            // Only finished entries go: a compile under way keeps its
            // waiters.
            memory.retain(|_, slot| slot.get().is_none());
        }
        memory.entry(*hash).or_default().clone()
    }

    /// The code, or why it cannot be made (the message of
    /// [`RuntimeError::Invalid`]).
    fn load_or_compile(&self, engine: &Engine, module: &WasmModule) -> Result<Module, String> {
        let path = self.path(&module.hash);
        if let Some(found) = path.as_deref().and_then(|path| load(engine, path)) {
            return Ok(found);
        }
        let compiled = compile(engine, module)?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(path) = path
            && let Err(e) = store(&compiled, &path)
        {
            tracing::warn!(path = %path.display(), "cannot cache compiled module: {e:#}");
        }
        Ok(compiled)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ContentHash, Slot>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn compile(engine: &Engine, module: &WasmModule) -> Result<Module, String> {
    Module::new(engine, &module.bytes).map_err(|e| format!("{e:#}"))
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
