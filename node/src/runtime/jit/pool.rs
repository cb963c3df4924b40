//! The engines and their allocators: for each NaN setting, an engine with a
//! pool of instances reserved once and one made on demand for modules the
//! pool cannot hold, each with its WASI linker and compiled-module cache;
//! the places in a pool a run waits for; and whether this host's address
//! space has room for a pool at all.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex, OnceLock};

use corral_protocol::hash::ContentHash;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig,
};

use super::ticker::Ticking;
use super::wasi::{RunState, linker};
use crate::runtime::cache::ModuleCache;
use crate::runtime::{RuntimeError, WasmModule};
use crate::sync::lock;

/// Below this much RAM, wasmtime must not reserve 4 GiB of address space per
/// memory plus guard regions: small devices (a 1 GiB Pi) have failed to start.
const SMALL_HOST_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Below this address-space limit (`ulimit -v`, a service's `LimitAS=`) the
/// same holds: a few slots' 4 GiB reservations would not fit.
const SMALL_ADDRESS_SPACE: u64 = 64 * 1024 * 1024 * 1024;

/// Whether memories must be bounds-checked instead of reserved up front.
pub(super) fn address_space_is_tight(host_memory: Option<u64>) -> bool {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_AS)
        .map(|(soft, _)| soft)
        .unwrap_or(nix::sys::resource::RLIM_INFINITY);
    host_memory.is_some_and(|m| m < SMALL_HOST_BYTES)
        || (limit != nix::sys::resource::RLIM_INFINITY && limit < SMALL_ADDRESS_SPACE)
}

/// One wasmtime configuration: its engine, WASI linker and compiled cache.
pub(super) struct Flavour {
    pub(super) engine: Engine,
    pub(super) linker: Linker<RunState>,
    cache: ModuleCache,
    /// For an engine with a pooling allocator, the places in its pool: a
    /// run takes one for as long as its instance lives.
    pub(super) places: Option<Places>,
}

/// One NaN setting in two allocators: instances from a pool of memories
/// reserved once (no `mmap`/`munmap` per run: a trivial task's start and
/// end took twice as long without it, and each `munmap` interrupted every
/// other core running one of the daemon's threads to flush its TLB), and
/// on demand for a module the pool cannot hold (more than one memory or
/// table, a table larger than the pool's) or where the pool could not be
/// reserved (a small address space).
pub(super) struct Pair {
    pub(super) pooled: Option<Flavour>,
    /// Made when first needed if there is a pool (most hosts never need
    /// it, and an engine and its WASI linker cost memory for good).
    on_demand: OnceLock<Flavour>,
    canonical_nans: bool,
    tight: bool,
    cache_dir: Option<PathBuf>,
    /// The engines the epoch ticker advances.
    ticking: Ticking,
    /// Modules the pool refused: they go straight to `on_demand`.
    pub(super) refused: Mutex<HashSet<ContentHash>>,
}

/// Instances (with their memory and table) a pooling engine holds at once.
/// More runs than this at once wait for a place; a daemon runs one task
/// per slot (by default one per core). Each place reserves the address
/// space of a 4 GiB memory and its guard region, no memory.
const POOL_PLACES: u32 = 64;

/// Bytes of a memory kept mapped when its instance ends, zeroed in place
/// rather than handed back to the kernel and faulted in again by the next
/// run: a small module's stack and data (a Rust program starts with a 1 MiB
/// stack). Handing pages back (`madvise`) costs more than zeroing them:
/// the call, the next run's page faults, and in a daemon with threads on
/// other cores a TLB flush on each of them (a trivial task's round trip
/// 0.90-0.96 ms with 64 KiB kept, 0.78-0.91 with 2 MiB). Only places in use
/// keep it: the pool reuses the places it has used before cold ones, so a
/// daemon holds about its slot count times this, not the pool's size.
///
/// Where the kernel has `PAGEMAP_SCAN` (Linux 6.7), only the pages the run
/// wrote are zeroed; without it, all of these bytes are, on every run: a
/// trivial task wrote a few pages and its runner spent a quarter of its
/// time zeroing 2 MiB (`perf`, the throughput benchmark).
const KEEP_RESIDENT: usize = 2 * 1024 * 1024;

impl Pair {
    /// The engines of one NaN setting: the pooled one if the address space
    /// allows, else the on-demand one, made now.
    pub(super) fn new(
        canonical_nans: bool,
        tight: bool,
        cache_dir: &Option<PathBuf>,
        ticking: &Ticking,
    ) -> Result<Self, RuntimeError> {
        // A pool needs its memories reserved up front; with a tight address
        // space they are bounds-checked instead, which the pool cannot do.
        let pooled = if tight {
            None
        } else {
            match Flavour::new(canonical_nans, tight, true, cache_dir.clone()) {
                Ok(flavour) => Some(flavour),
                Err(e) => {
                    tracing::info!("instances are allocated on demand: {e}");
                    None
                }
            }
        };
        if let Some(pooled) = &pooled {
            lock(&ticking.engines).push(pooled.engine.clone());
        }
        let pair = Self {
            pooled,
            on_demand: OnceLock::new(),
            canonical_nans,
            tight,
            cache_dir: cache_dir.clone(),
            ticking: ticking.clone(),
            refused: Mutex::new(HashSet::new()),
        };
        if pair.pooled.is_none() {
            // The only engine: made now, so that a failure shows at start.
            pair.on_demand()?;
        }
        Ok(pair)
    }

    /// The engines made so far.
    pub(super) fn flavours(&self) -> impl Iterator<Item = &Flavour> {
        self.pooled.iter().chain(self.on_demand.get())
    }

    /// The on-demand engine, made the first time it is needed.
    fn on_demand(&self) -> Result<&Flavour, RuntimeError> {
        if let Some(made) = self.on_demand.get() {
            return Ok(made);
        }
        let made = Flavour::new(
            self.canonical_nans,
            self.tight,
            false,
            self.cache_dir.clone(),
        )?;
        let engine = made.engine.clone();
        // Another thread may have made one meanwhile: the first is kept.
        if self.on_demand.set(made).is_ok() {
            lock(&self.ticking.engines).push(engine);
        }
        self.on_demand.get().ok_or_else(|| RuntimeError::Engine {
            engine: "wasmtime",
            reason: "the on-demand engine was not kept".into(),
        })
    }

    /// The module compiled for the pool, or on demand if the pool cannot
    /// hold its instances (wasmtime checks that when it builds the module).
    pub(super) fn compile(&self, module: &WasmModule) -> Result<Module, RuntimeError> {
        let refused = lock(&self.refused).contains(&module.hash);
        if let Some(pooled) = &self.pooled
            && !refused
        {
            match pooled.cache.get_or_compile(&pooled.engine, module) {
                Ok(compiled) => return Ok(compiled),
                Err(e) => {
                    tracing::debug!(module = %module.hash, "not for the pool: {e}");
                    let mut refused = lock(&self.refused);
                    if refused.len() >= REFUSED_ENTRIES {
                        refused.clear();
                    }
                    refused.insert(module.hash);
                }
            }
        }
        let on_demand = self.on_demand()?;
        on_demand.cache.get_or_compile(&on_demand.engine, module)
    }

    /// The module's code if it is made (in memory or on disk), without
    /// compiling it.
    pub(super) fn ready(&self, module: &WasmModule) -> Option<Module> {
        let refused = lock(&self.refused).contains(&module.hash);
        match &self.pooled {
            Some(pooled) if !refused => pooled.cache.ready(&pooled.engine, &module.hash),
            _ => {
                let on_demand = self.on_demand().ok()?;
                on_demand.cache.ready(&on_demand.engine, &module.hash)
            }
        }
    }

    /// Cranelift compiles this pair did (not loads).
    pub(super) fn compiles(&self) -> u64 {
        self.flavours().map(|f| f.cache.compiles()).sum()
    }
}

/// Modules the pool refused, remembered (a batch uses one module).
const REFUSED_ENTRIES: usize = 32;

impl Flavour {
    fn new(
        canonical_nans: bool,
        tight: bool,
        pooled: bool,
        cache_dir: Option<PathBuf>,
    ) -> Result<Self, RuntimeError> {
        let fail = |e: wasmtime::Error| RuntimeError::Engine {
            engine: "wasmtime",
            reason: format!("{e:#}"),
        };
        let mut config = Config::new();
        config.cranelift_nan_canonicalization(canonical_nans);
        config.epoch_interruption(true);
        config.max_wasm_stack(1024 * 1024);
        // No backtrace is taken when a guest traps or exits: a receipt
        // names the trap, never its frames, and walking and symbolising the
        // stack cost a twentieth of a worker's CPU with tasks that end by
        // `proc_exit` in a millisecond.
        config.wasm_backtrace_max_frames(None);
        if tight {
            // Explicit bounds checks instead of a 4 GiB reservation per memory.
            config.memory_reservation(0);
            config.memory_guard_size(64 * 1024);
            config.memory_reservation_for_growth(1024 * 1024);
        }
        if pooled {
            let mut pool = PoolingAllocationConfig::new();
            pool.total_core_instances(POOL_PLACES)
                .total_memories(POOL_PLACES)
                .total_tables(POOL_PLACES)
                .total_component_instances(0)
                .total_stacks(0)
                .max_unused_warm_slots(0)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT)
                .pagemap_scan(Enabled::Auto);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(fail)?;
        let linker = linker(&engine).map_err(fail)?;
        // The compatibility hash covers the settings that shape the code, so
        // the two NaN settings keep apart in the on-disk cache (the
        // allocator does not change the code: both may share a file).
        let cache = ModuleCache::new(&engine, cache_dir);
        Ok(Self {
            engine,
            linker,
            cache,
            places: pooled.then(|| Places::new(POOL_PLACES as usize)),
        })
    }
}

/// A count of free places in a pool; a run waits while there is none
/// instead of failing to instantiate.
pub(super) struct Places {
    pub(super) free: Mutex<usize>,
    freed: Condvar,
}

/// A place taken; given back when dropped.
pub(super) struct Place<'a>(&'a Places);

impl Places {
    /// A pool of `count` free places.
    pub(super) fn new(count: usize) -> Self {
        Self {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    /// Takes a place, waiting while there is none.
    pub(super) fn take(&self) -> Place<'_> {
        let mut free = lock(&self.free);
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|e| e.into_inner());
        }
        *free -= 1;
        Place(self)
    }
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        *lock(&self.0.free) += 1;
        self.0.freed.notify_one();
    }
}
