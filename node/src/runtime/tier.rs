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

/// Modules whose tier is remembered (a batch uses one).
const ENTRIES: usize = 32;

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

/// What tasks of a module start on.
#[derive(Clone)]
enum Entry {
    /// The JIT's code: every task from now on.
    Jit(Compiled),
    /// The interpreter's, while the JIT's is being made (`compiling`) or
    /// could not be afforded (`since` then).
    Interim {
        interp: Compiled,
        compiling: bool,
        since: Instant,
    },
}

/// The tiers' state: one per [`Runtime`].
pub(super) struct Tiers {
    entries: Mutex<HashMap<ContentHash, Entry>>,
    /// The module compiling in the background, if any (one at a time).
    compiling: Mutex<Option<ContentHash>>,
    /// Modules up to this size compile at once.
    quick_bytes: usize,
    /// Memory the host has free now, if known.
    free_memory: fn() -> Option<u64>,
}

impl Tiers {
    pub(super) fn new(quick_bytes: usize, free_memory: fn() -> Option<u64>) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            compiling: Mutex::new(None),
            quick_bytes,
            free_memory,
        }
    }

    fn remember(&self, hash: ContentHash, entry: Entry) {
        let mut entries = lock(&self.entries);
        if !entries.contains_key(&hash) && entries.len() >= ENTRIES {
            entries.retain(|_, e| {
                matches!(
                    e,
                    Entry::Interim {
                        compiling: true,
                        ..
                    }
                )
            });
        }
        entries.insert(hash, entry);
    }
}

impl Runtime {
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
        let engine = self.engines()[0];
        if engine != EngineKind::Jit {
            let module = load()?;
            return Ok(self.compile(engine, &module)?);
        }
        let known = lock(&self.tiers.entries).get(&hash).cloned();
        match known {
            Some(Entry::Jit(compiled)) => return Ok(compiled),
            Some(Entry::Interim {
                interp, compiling, ..
            }) if compiling => return Ok(interp),
            Some(Entry::Interim { interp, since, .. }) if since.elapsed() < RETRY_AFTER => {
                return Ok(interp);
            }
            _ => {}
        }
        let module = load()?;
        if module.bytes.len() <= self.tiers.quick_bytes {
            let compiled = self.compile(EngineKind::Jit, &module)?;
            self.tiers.remember(hash, Entry::Jit(compiled.clone()));
            return Ok(compiled);
        }
        #[cfg(feature = "jit")]
        if let Some(ready) = self.jit.as_ref().and_then(|jit| jit.ready(&module)) {
            let compiled = Compiled::Jit(ready);
            self.tiers.remember(hash, Entry::Jit(compiled.clone()));
            return Ok(compiled);
        }
        let interp = self.compile(EngineKind::Interp, &module)?;
        let compiling = self.compile_in_background(module);
        self.tiers.remember(
            hash,
            Entry::Interim {
                interp: interp.clone(),
                compiling,
                since: Instant::now(),
            },
        );
        Ok(interp)
    }

    /// Starts the JIT compile of `module` on a low-priority thread if none
    /// runs and the host has the memory for it; whether it started.
    fn compile_in_background(self: &Arc<Self>, module: WasmModule) -> bool {
        let need = compile_peak_bytes(module.bytes.len());
        let free = (self.tiers.free_memory)();
        if free.is_none_or(|free| free < need) {
            tracing::info!(
                module = %module.hash.short(),
                need_mib = need >> 20,
                free_mib = free.map(|f| f >> 20),
                "not compiling this module with Cranelift: the host has not the memory; \
                 its tasks run on the interpreter"
            );
            return false;
        }
        {
            let mut compiling = lock(&self.tiers.compiling);
            if compiling.is_some() {
                return false;
            }
            *compiling = Some(module.hash);
        }
        let runtime = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("corral-compile".into())
            .spawn(move || {
                lower_this_threads_priority();
                let started = Instant::now();
                let hash = module.hash;
                let entry = match runtime.compile(EngineKind::Jit, &module) {
                    Ok(compiled) => {
                        tracing::info!(
                            module = %hash.short(),
                            secs = started.elapsed().as_secs_f64(),
                            "compiled in the background: its next tasks run on the JIT"
                        );
                        Some(Entry::Jit(compiled))
                    }
                    Err(e) => {
                        tracing::warn!(module = %hash.short(), "the JIT cannot compile this module: {e}");
                        None
                    }
                };
                let mut entries = lock(&runtime.tiers.entries);
                match (entry, entries.get_mut(&hash)) {
                    (Some(jit), _) => {
                        entries.insert(hash, jit);
                    }
                    // Kept on the interpreter; asked again after a while.
                    (None, Some(Entry::Interim { compiling, since, .. })) => {
                        *compiling = false;
                        *since = Instant::now();
                    }
                    (None, _) => {}
                }
                drop(entries);
                *lock(&runtime.tiers.compiling) = None;
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start a compile thread: {e}");
            *lock(&self.tiers.compiling) = None;
            return false;
        }
        true
    }

    /// Whether a background compile runs now.
    pub fn compiling(&self) -> Option<ContentHash> {
        *lock(&self.tiers.compiling)
    }
}

/// Memory the host has free for a compile now (without swap), if known.
pub(super) fn free_memory() -> Option<u64> {
    let mut system = sysinfo::System::new().ok()?;
    system.refresh_memory();
    match system.available_memory() {
        0 => None,
        free => Some(free),
    }
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
