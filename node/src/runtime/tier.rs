//! Tiered start for big modules under `auto`: a task whose module has no
//! JIT code yet starts at once on the interpreter while Cranelift compiles
//! the module on a low-priority thread; the tasks after that compile run the
//! JIT's code. A 30 MB module takes Cranelift about 20 s (and 700 MB) on
//! two cores, the interpreter about 2 s to start.
//!
//! A module compiles in the background only if the host has the memory for
//! it now ([`compile_peak_bytes`]), and one at a time: a device that cannot
//! afford the compile runs the module on the interpreter. Small modules
//! compile at once, as before (less than a second), and their code is
//! cached on disk for good.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corral_protocol::hash::ContentHash;
use corral_protocol::receipt::EngineKind;

use super::{Compiled, Runtime, RuntimeError, WasmModule};
use crate::sync::lock;

/// Modules up to this size compile before their first task runs: Cranelift
/// takes well under a second for them, which the JIT's speed wins back in
/// all but the shortest tasks.
pub const QUICK_COMPILE_BYTES: usize = 2 * 1024 * 1024;

/// How long a module the host could not afford to compile runs on the
/// interpreter before the memory is looked at again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Modules (by engine) whose code or tier is remembered (a batch uses
/// one).
const ENTRIES: usize = 64;

/// Cranelift's peak memory for compiling a module of `len` bytes: a fixed
/// 64 MiB and 26 bytes per byte of module. Measured: Yosys 0.50
/// (`scripts/big-module`, 27.7 MB) peaked at 702 MiB RSS in
/// `/usr/bin/time -v corral run --local --engine jit` with an empty cache
/// (752 MiB estimated); a run from the cache peaked at 86 MiB.
pub fn compile_peak_bytes(len: usize) -> u64 {
    const FIXED: u64 = 64 * 1024 * 1024;
    const PER_BYTE: u64 = 26;
    FIXED.saturating_add((len as u64).saturating_mul(PER_BYTE))
}

/// A module not on the JIT yet under `auto`: its tasks run on the
/// interpreter meanwhile.
#[derive(Clone, Copy)]
enum Waiting {
    /// Cranelift compiles it in the background (one module at a time).
    Compiling,
    /// Not compiled (no memory for it, another compile under way, or the
    /// JIT refused it) when last looked at.
    Declined(Instant),
}

/// The tiers' state: one per [`Runtime`].
pub(super) struct Tiers {
    /// Code by module and engine, for callers that know a module by its
    /// hash (the worker): its bytes are read and hashed once, not per task.
    compiled: Mutex<HashMap<(ContentHash, EngineKind), Compiled>>,
    /// Modules whose tasks run on the interpreter until the JIT's code is
    /// made.
    waiting: Mutex<HashMap<ContentHash, Waiting>>,
    /// Modules up to this size compile at once.
    quick_bytes: usize,
    /// Memory the host has free now, if known.
    free_memory: fn() -> Option<u64>,
}

impl Tiers {
    pub(super) fn new(quick_bytes: usize, free_memory: fn() -> Option<u64>) -> Self {
        Self {
            compiled: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            quick_bytes,
            free_memory,
        }
    }

    fn known(&self, hash: ContentHash, engine: EngineKind) -> Option<Compiled> {
        lock(&self.compiled).get(&(hash, engine)).cloned()
    }

    fn keep(&self, hash: ContentHash, compiled: Compiled) {
        let mut memo = lock(&self.compiled);
        if memo.len() >= ENTRIES {
            memo.clear();
        }
        memo.insert((hash, compiled.engine()), compiled);
    }

    /// Marks `hash` declined now.
    fn decline(&self, hash: ContentHash) {
        let mut waiting = lock(&self.waiting);
        if !waiting.contains_key(&hash) && waiting.len() >= ENTRIES {
            waiting.retain(|_, w| matches!(w, Waiting::Compiling));
        }
        waiting.insert(hash, Waiting::Declined(Instant::now()));
    }
}

impl Runtime {
    /// The same with modules up to `bytes` compiled before their first
    /// task under `auto` (larger ones start on the interpreter), and the
    /// host's free memory read by `free_memory`.
    pub fn with_tiers(mut self, bytes: usize, free_memory: fn() -> Option<u64>) -> Self {
        self.tiers = Tiers::new(bytes, free_memory);
        self
    }

    /// The same with modules up to `bytes` compiled before their first
    /// task under `auto`.
    pub fn with_quick_compile_bytes(self, bytes: usize) -> Self {
        self.with_tiers(bytes, free_memory)
    }

    /// The module of `hash` compiled for `engine`, remembered by hash: `load`
    /// (its bytes, checked against `hash`) is called the first time only.
    pub fn compile_by_hash<E: From<RuntimeError>>(
        &self,
        hash: ContentHash,
        engine: EngineKind,
        load: impl FnOnce() -> Result<WasmModule, E>,
    ) -> Result<Compiled, E> {
        if let Some(compiled) = self.tiers.known(hash, engine) {
            return Ok(compiled);
        }
        let compiled = self.compile(engine, &load()?)?;
        self.tiers.keep(hash, compiled.clone());
        Ok(compiled)
    }

    /// The code a task of `hash` starts on under `auto` on a JIT host: the
    /// JIT's if it is made or quick to make, else the interpreter's now,
    /// with the JIT's compiling in the background if the host can afford
    /// it. `load` gives the module's bytes, checked against `hash`; it is
    /// called only when they are needed (not while the tier is known).
    pub fn compile_auto<E: From<RuntimeError>>(
        self: &Arc<Self>,
        hash: ContentHash,
        load: impl FnOnce() -> Result<WasmModule, E>,
    ) -> Result<Compiled, E> {
        if !self.has_jit() {
            return self.compile_by_hash(hash, EngineKind::Interp, load);
        }
        if let Some(compiled) = self.tiers.known(hash, EngineKind::Jit) {
            return Ok(compiled);
        }
        let waiting = lock(&self.tiers.waiting).get(&hash).copied();
        let on_interp = match waiting {
            Some(Waiting::Compiling) => true,
            Some(Waiting::Declined(since)) => since.elapsed() < RETRY_AFTER,
            None => false,
        };
        if on_interp {
            return self.compile_by_hash(hash, EngineKind::Interp, load);
        }
        let module = load()?;
        let ready = || {
            #[cfg(feature = "jit")]
            if let Some(jit) = &self.jit {
                return jit.ready(&module).map(Compiled::Jit);
            }
            None
        };
        let jit = if module.bytes.len() <= self.tiers.quick_bytes {
            Some(self.compile(EngineKind::Jit, &module)?)
        } else {
            ready()
        };
        if let Some(compiled) = jit {
            self.tiers.keep(hash, compiled.clone());
            return Ok(compiled);
        }
        let interp = self.compile_by_hash(hash, EngineKind::Interp, || {
            Ok::<_, RuntimeError>(module.clone())
        })?;
        self.compile_in_background(module);
        Ok(interp)
    }

    /// Starts the JIT compile of `module` on a low-priority thread if none
    /// runs and the host has the memory for it; declines it otherwise.
    fn compile_in_background(self: &Arc<Self>, module: WasmModule) {
        let hash = module.hash;
        let need = compile_peak_bytes(module.bytes.len());
        let free = (self.tiers.free_memory)();
        if free.is_none_or(|free| free < need) {
            tracing::info!(
                module = %hash.short(),
                need_mib = need >> 20,
                free_mib = free.map(|f| f >> 20),
                "not compiling this module with Cranelift: the host has not the memory; \
                 its tasks run on the interpreter"
            );
            self.tiers.decline(hash);
            return;
        }
        {
            let mut waiting = lock(&self.tiers.waiting);
            if waiting.values().any(|w| matches!(w, Waiting::Compiling)) {
                drop(waiting);
                self.tiers.decline(hash);
                return;
            }
            waiting.insert(hash, Waiting::Compiling);
        }
        let runtime = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("corral-compile".into())
            .spawn(move || {
                lower_this_threads_priority();
                let started = Instant::now();
                match runtime.compile(EngineKind::Jit, &module) {
                    Ok(compiled) => {
                        tracing::info!(
                            module = %hash.short(),
                            secs = started.elapsed().as_secs_f64(),
                            "compiled in the background: its next tasks run on the JIT"
                        );
                        runtime.tiers.keep(hash, compiled);
                        lock(&runtime.tiers.waiting).remove(&hash);
                    }
                    Err(e) => {
                        tracing::warn!(module = %hash.short(), "the JIT cannot compile this module: {e}");
                        // Kept on the interpreter; asked again after a while.
                        runtime.tiers.decline(hash);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a compile thread: {e}");
            self.tiers.decline(hash);
        }
    }

    /// The module compiling in the background now, if any.
    pub fn compiling(&self) -> Option<ContentHash> {
        lock(&self.tiers.waiting)
            .iter()
            .find(|(_, w)| matches!(w, Waiting::Compiling))
            .map(|(hash, _)| *hash)
    }
}

/// Memory the host has free for a compile now (without swap), if known.
pub(super) fn free_memory() -> Option<u64> {
    super::host_memory(sysinfo::System::available_memory)
}

/// Cranelift compiles its functions on rayon's global pool (wasmtime's
/// parallel compilation): its threads are made with a lower priority
/// ([`COMPILE_NICE`]), so that a compile yields to tasks and to
/// the owner. Set once
/// per process, before the first compile.
#[cfg(feature = "jit")]
pub(super) fn low_priority_compile_pool() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let built = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("corral-cranelift-{i}"))
            .start_handler(|_| lower_this_threads_priority())
            .build_global();
        if let Err(e) = built {
            tracing::debug!("the compile pool keeps its priority: {e}");
        }
    });
}

/// The nice value of compile threads. Not the lowest: the tasks running on
/// the interpreter meanwhile (at the default priority, 0) would leave a
/// nice-19 compile about 1.5 % of each core, and a device with every slot
/// busy would never get to the JIT (Yosys, 27.7 MB, takes about 60 s of CPU
/// to compile and then runs 7 times faster). At 5 the compile takes about a
/// quarter of each busy core and everything it can of idle ones.
const COMPILE_NICE: libc::c_int = 5;

/// Compiles yield to the owner's programs and to the tasks running
/// meanwhile.
pub(super) fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls on this thread's own id; a failure
        // leaves its priority as it was.
        let tid = unsafe { libc::gettid() };
        let _ = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, COMPILE_NICE) };
    }
}
