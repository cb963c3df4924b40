//! The JIT engine: wasmtime with Cranelift, WASI preview 1 from wasmtime-wasi.
//!
//! Two `Engine`s (with and without NaN canonicalisation, chosen per module)
//! and their `Linker`s per process; a fresh `Store` per run with the
//! memory limiter, an epoch deadline for the wall-clock timeout and capped
//! stdout/stderr. Compiled code is cached on disk by [`super::cache`].

use std::collections::HashSet;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use corral_protocol::hash::ContentHash;
use corral_protocol::receipt::EngineKind;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig, Store,
    Trap, UpdateDeadline,
};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::cache::ModuleCache;
use super::limiter::MemoryLimiter;
use super::sink::OutputSink;
use super::{Ended, Outcome, RunSpec, RuntimeError, Stdin, TICK, classify, short_message};
use crate::sync::lock;

/// Whether Cranelift can generate code for this CPU. Elsewhere wasmtime would
/// fall back to its Pulley interpreter, which is slower than wasmi.
pub(crate) fn cranelift_supported() -> bool {
    cfg!(any(
        target_arch = "x86_64",
        target_arch = "aarch64",
        target_arch = "riscv64",
        target_arch = "s390x"
    ))
}

/// Below this much RAM, wasmtime must not reserve 4 GiB of address space per
/// memory plus guard regions: small devices (a 1 GiB Pi) have failed to start.
const SMALL_HOST_BYTES: u64 = 2 * 1024 * 1024 * 1024;

/// Below this address-space limit (`ulimit -v`, a service's `LimitAS=`) the
/// same holds: a few slots' 4 GiB reservations would not fit.
const SMALL_ADDRESS_SPACE: u64 = 64 * 1024 * 1024 * 1024;

/// Whether memories must be bounds-checked instead of reserved up front.
fn address_space_is_tight(host_memory: Option<u64>) -> bool {
    let limit = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_AS)
        .map(|(soft, _)| soft)
        .unwrap_or(nix::sys::resource::RLIM_INFINITY);
    host_memory.is_some_and(|m| m < SMALL_HOST_BYTES)
        || (limit != nix::sys::resource::RLIM_INFINITY && limit < SMALL_ADDRESS_SPACE)
}

struct RunState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// One wasmtime configuration: its engine, WASI linker and compiled cache.
struct Flavour {
    engine: Engine,
    linker: Linker<RunState>,
    cache: ModuleCache,
    /// For an engine with a pooling allocator, the places in its pool: a
    /// run takes one for as long as its instance lives.
    places: Option<Places>,
}

/// One NaN setting in two allocators: instances from a pool of memories
/// reserved once (no `mmap`/`munmap` per run: a trivial task's start and
/// end took twice as long without it, and each `munmap` interrupted every
/// other core running one of the daemon's threads to flush its TLB), and
/// on demand for a module the pool cannot hold (more than one memory or
/// table, a table larger than the pool's) or where the pool could not be
/// reserved (a small address space).
struct Pair {
    pooled: Option<Flavour>,
    /// Made when first needed if there is a pool (most hosts never need
    /// it, and an engine and its WASI linker cost memory for good).
    on_demand: OnceLock<Flavour>,
    canonical_nans: bool,
    tight: bool,
    cache_dir: Option<PathBuf>,
    /// The engines the epoch ticker advances.
    ticking: Ticking,
    /// Modules the pool refused: they go straight to `on_demand`.
    refused: Mutex<HashSet<ContentHash>>,
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
const KEEP_RESIDENT: usize = 2 * 1024 * 1024;

pub(crate) struct JitEngine {
    /// NaN canonicalisation on: for modules that could see a NaN's bits, so
    /// they give the same bytes on every engine and CPU (`--verify` relies
    /// on it).
    exact: Pair,
    /// The same without it, for modules that cannot observe a NaN's bits
    /// ([`nan_bits_observable`]): for them the setting changes no output and
    /// only costs time (~10 % on the prime sieve, whose one `sqrt` is
    /// enough to slow its integer loop).
    plain: Pair,
    /// Runs tell the epoch ticker they need it; dropping the engine ends it.
    ticking: Ticking,
}

impl Drop for JitEngine {
    fn drop(&mut self) {
        self.ticking.close();
    }
}

/// What the epoch ticker advances, and whether it needs to: an idle daemon
/// has no run to time out, so its ticker sleeps instead of waking 200 times
/// a second (which, on a small device, costs power, and on any device
/// competes with the event loop for a core).
#[derive(Default)]
struct Ticker {
    /// The engines it advances, added to as they are made.
    engines: Mutex<Vec<Engine>>,
    /// Runs going on now, and whether the engine is gone.
    state: Mutex<TickState>,
    wake: Condvar,
}

#[derive(Default)]
struct TickState {
    runs: usize,
    closed: bool,
}

type Ticking = Arc<Ticker>;

impl Ticker {
    /// Marks a run as going on until the guard is dropped.
    fn run(&self) -> TickGuard<'_> {
        lock(&self.state).runs += 1;
        self.wake.notify_one();
        TickGuard(self)
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.wake.notify_one();
    }
}

/// A run the epoch ticker keeps ticking for.
struct TickGuard<'a>(&'a Ticker);

impl Drop for TickGuard<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.0.state);
        state.runs = state.runs.saturating_sub(1);
    }
}

impl JitEngine {
    pub(crate) fn new(
        cache_dir: Option<PathBuf>,
        host_memory: Option<u64>,
    ) -> Result<Self, RuntimeError> {
        let tight = address_space_is_tight(host_memory);
        let ticking = Ticking::default();
        let exact = Pair::new(true, tight, &cache_dir, &ticking)?;
        let plain = Pair::new(false, tight, &cache_dir, &ticking)?;
        spawn_epoch_ticker(ticking.clone());
        Ok(Self {
            exact,
            plain,
            ticking,
        })
    }

    pub(crate) fn compile(&self, module: &super::WasmModule) -> Result<Module, RuntimeError> {
        let pair = if nan_bits_observable(&module.bytes) {
            &self.exact
        } else {
            &self.plain
        };
        pair.compile(module)
    }

    pub(crate) fn run(&self, module: &Module, spec: &RunSpec) -> Result<Outcome, RuntimeError> {
        let started = Instant::now();
        let (stdout, stderr) = OutputSink::pair(spec);

        let mut builder = WasiCtxBuilder::new();
        builder.args(&spec.args);
        for (key, value) in &spec.env {
            builder.env(key, value);
        }
        match &spec.stdin {
            Stdin::Empty => {}
            Stdin::Bytes(bytes) => {
                builder.stdin(MemoryInputPipe::new(bytes::Bytes::copy_from_slice(bytes)));
            }
            Stdin::Inherit => {
                builder.inherit_stdin();
            }
        }
        builder.stdout(JitSink(stdout.clone()));
        builder.stderr(JitSink(stderr.clone()));
        for preopen in &spec.preopens {
            let perms = if preopen.writable {
                FsPerms::ReadWrite
            } else {
                FsPerms::ReadOnly
            };
            builder
                .preopened_dir(&preopen.host, &preopen.guest, perms)
                .map_err(|e| RuntimeError::Preopen {
                    host: preopen.host.display().to_string(),
                    guest: preopen.guest.clone(),
                    reason: format!("{e:#}"),
                })?;
        }

        let flavour = [&self.exact, &self.plain]
            .into_iter()
            .flat_map(Pair::flavours)
            .find(|f| Engine::same(module.engine(), &f.engine))
            .ok_or_else(|| RuntimeError::Engine {
                engine: "wasmtime",
                reason: "the module was compiled by another engine".into(),
            })?;
        // Held until the store (and its instance) is dropped.
        let _place = flavour.places.as_ref().map(Places::take);
        let mut store = Store::new(
            &flavour.engine,
            RunState {
                wasi: builder.build_p1(),
                limiter: MemoryLimiter::new(spec.limits.memory_bytes),
            },
        );
        store.limiter(|state| &mut state.limiter);
        // Every tick the deadline passes and this decides: stop for the
        // timeout or a cancel, or carry on for another tick. The check in
        // the generated code is the same either way.
        let deadline = started + spec.limits.timeout;
        let cancel = spec.cancel.clone();
        let _ticks = self.ticking.run();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Err(Trap::Interrupt.into());
            }
            if cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(wasmtime::Error::msg(super::CANCELLED));
            }
            Ok(UpdateDeadline::Continue(1))
        });

        let ended = match flavour.linker.instantiate(&mut store, module) {
            Ok(instance) => match instance.get_typed_func::<(), ()>(&mut store, "_start") {
                Ok(start) => ended_from(start.call(&mut store, ())),
                Err(_) => return Err(RuntimeError::NoStart),
            },
            Err(e) if store.data().limiter.hit() => Ended::Trap(format!("{e:#}")),
            Err(e) if e.downcast_ref::<Trap>().is_some() => ended_from(Err(e)),
            Err(e) => return Err(RuntimeError::Link(format!("{e:#}"))),
        };
        let status = classify(ended, &stdout, &stderr, store.data().limiter.hit());
        drop(store);
        Ok(Outcome {
            status,
            stdout_truncated: stdout.overflowed(),
            stderr_truncated: stderr.overflowed(),
            stdout: stdout.take(),
            stderr: stderr.take(),
            engine: EngineKind::Jit,
            duration: started.elapsed(),
        })
    }
}

impl Pair {
    fn new(
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

    fn flavours(&self) -> impl Iterator<Item = &Flavour> {
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
    fn compile(&self, module: &super::WasmModule) -> Result<Module, RuntimeError> {
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
                .table_keep_resident(KEEP_RESIDENT);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&config).map_err(fail)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut RunState| &mut s.wasi)
            .map_err(fail)?;
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
struct Places {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A place taken; given back when dropped.
struct Place<'a>(&'a Places);

impl Places {
    fn new(count: usize) -> Self {
        Self {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    fn take(&self) -> Place<'_> {
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

/// Whether a NaN's bits could ever reach the module's output. Wasm leaves a
/// NaN's sign and payload to the CPU, but only a few instructions can tell
/// one NaN from another: a float store or reinterpretation (which expose the
/// bits), `copysign` (which copies a NaN's sign into an ordinary number) and
/// SIMD on floats (whose lanes other SIMD instructions read as integers).
/// Everything else treats every NaN alike: comparisons are unordered,
/// conversions to integers trap or saturate to 0, arithmetic gives a NaN.
/// Without one of those instructions, canonicalising NaNs cannot change a
/// byte of output; it only costs time. A module that does not parse counts
/// as exposing them, so the careful engine compiles (and rejects) it.
fn nan_bits_observable(bytes: &[u8]) -> bool {
    let scan = || -> wasmparser::Result<bool> {
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            if let wasmparser::Payload::CodeSectionEntry(body) = payload? {
                let mut ops = body.get_operators_reader()?;
                while !ops.eof() {
                    let (op, at) = ops.read_with_offset()?;
                    // SIMD instructions, and only they, start with 0xfd.
                    let simd = bytes.get(at) == Some(&SIMD_PREFIX);
                    if exposes_nan_bits(&op, simd) {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    };
    scan().unwrap_or(true)
}

/// The first byte of every SIMD instruction.
const SIMD_PREFIX: u8 = 0xfd;

/// One of the instructions of [`nan_bits_observable`]. For a SIMD one
/// (`simd`), wasmparser's variant name, the head of its `Debug` form, tells
/// (`F32x4Mul`), without a list of a hundred opcodes to keep up to date;
/// the formatting is kept off the common, scalar, path.
fn exposes_nan_bits(op: &wasmparser::Operator<'_>, simd: bool) -> bool {
    use wasmparser::Operator as O;
    if matches!(
        op,
        O::F32Store { .. }
            | O::F64Store { .. }
            | O::I32ReinterpretF32
            | O::I64ReinterpretF64
            | O::F32Copysign
            | O::F64Copysign
    ) {
        return true;
    }
    if !simd {
        return false;
    }
    use std::fmt::Write;
    /// Keeps the first bytes written, drops the rest.
    struct Head {
        buf: [u8; 32],
        len: usize,
    }
    impl Write for Head {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let take = s.len().min(self.buf.len() - self.len);
            self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
            self.len += take;
            // Stop formatting once the variant name is in.
            if take < s.len() {
                Err(std::fmt::Error)
            } else {
                Ok(())
            }
        }
    }
    let mut head = Head {
        buf: [0; 32],
        len: 0,
    };
    let _ = write!(head, "{op:?}");
    let name = &head.buf[..head.len];
    let name = name
        .iter()
        .position(|b| !b.is_ascii_alphanumeric())
        .map_or(name, |end| &name[..end]);
    name.windows(5).any(|w| w == b"F32x4" || w == b"F64x2")
}

fn ended_from(result: wasmtime::Result<()>) -> Ended {
    let error = match result {
        Ok(()) => return Ended::Exit(0),
        Err(error) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Ended::Exit(exit.0);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Ended::Timeout,
        Some(trap) => Ended::Trap(trap.to_string()),
        None => Ended::Trap(short_message(format!("{error:#}"))),
    }
}

/// One thread per engine set advances the engines' epoch every [`TICK`]
/// while a run goes on; each tick a running store's deadline callback checks
/// its clock and cancel flag. With no run it sleeps until one starts.
fn spawn_epoch_ticker(ticker: Ticking) {
    let spawned = std::thread::Builder::new()
        .name("corral-epoch".into())
        .spawn(move || {
            loop {
                {
                    let mut state = lock(&ticker.state);
                    while state.runs == 0 && !state.closed {
                        state = ticker.wake.wait(state).unwrap_or_else(|e| e.into_inner());
                    }
                    if state.closed {
                        return;
                    }
                }
                std::thread::sleep(TICK);
                for engine in lock(&ticker.engines).iter() {
                    engine.increment_epoch();
                }
            }
        });
    if let Err(e) = spawned {
        // Without the ticker timeouts cannot fire; say so loudly.
        tracing::error!("cannot start the epoch ticker thread, timeouts will not work: {e}");
    }
}

/// wasmtime-wasi's view of an [`OutputSink`].
#[derive(Clone)]
struct JitSink(OutputSink);

impl IsTerminal for JitSink {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for JitSink {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// The room the guest is told it may write at once. The sink itself enforces
/// the cap; a constant keeps the guest writing whole buffers, so both engines
/// see the same sequence of writes and cut the output at the same byte.
const WRITE_PERMIT: usize = 1024 * 1024;

#[wasmtime_wasi::async_trait]
impl OutputStream for JitSink {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.0
            .write(&bytes)
            .map_err(|overflow| StreamError::Trap(wasmtime::Error::msg(overflow.to_string())))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        if self.0.overflowed() {
            Err(StreamError::Closed)
        } else {
            Ok(WRITE_PERMIT)
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for JitSink {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for JitSink {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.0
                .write(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::WasmModule;

    /// `(func (export "f") (result i64) BODY)` in the binary format.
    fn module(body: &[u8]) -> WasmModule {
        module_with_table(body, None)
    }

    /// The same with a `funcref` table of `table` elements.
    fn module_with_table(body: &[u8], table: Option<u32>) -> WasmModule {
        let mut code = vec![0x00]; // no locals
        code.extend_from_slice(body);
        code.push(0x0b);
        let mut bytes = b"\0asm\x01\0\0\0".to_vec();
        bytes.extend_from_slice(&[0x01, 0x05, 0x01, 0x60, 0x00, 0x01, 0x7e]); // () -> i64
        bytes.extend_from_slice(&[0x03, 0x02, 0x01, 0x00]);
        if let Some(min) = table {
            let mut section = vec![0x01, 0x70, 0x00]; // one funcref table, no maximum
            leb128(&mut section, min);
            bytes.push(0x04);
            bytes.push(u8::try_from(section.len()).expect("small section"));
            bytes.extend_from_slice(&section);
        }
        bytes.extend_from_slice(&[0x07, 0x05, 0x01, 0x01, b'f', 0x00, 0x00]);
        let entry_len = u8::try_from(code.len()).expect("small body");
        bytes.extend_from_slice(&[0x0a, entry_len + 2, 0x01, entry_len]);
        bytes.extend_from_slice(&code);
        WasmModule::new(bytes).expect("a valid module")
    }

    /// 0.0 / 0.0, reinterpreted as bits: the NaN's bits are the result.
    fn nan_bits() -> WasmModule {
        let mut body = vec![0x44];
        body.extend_from_slice(&0f64.to_le_bytes());
        body.push(0x44);
        body.extend_from_slice(&0f64.to_le_bytes());
        body.extend_from_slice(&[0xa3, 0xbd]); // f64.div, i64.reinterpret_f64
        module(&body)
    }

    fn call(jit: &JitEngine, wasm: &WasmModule) -> (i64, bool) {
        let compiled = jit.compile(wasm).expect("compiles");
        let mut store = Store::new(compiled.engine(), ());
        store.set_epoch_deadline(1000);
        let instance = wasmtime::Instance::new(&mut store, &compiled, &[]).expect("instantiates");
        let f = instance
            .get_typed_func::<(), i64>(&mut store, "f")
            .expect("exported");
        let canonical = jit
            .exact
            .flavours()
            .any(|f| Engine::same(compiled.engine(), &f.engine));
        (f.call(&mut store, ()).expect("runs"), canonical)
    }

    fn leb128(out: &mut Vec<u8>, mut value: u32) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    #[test]
    fn modules_run_from_the_pool_and_those_it_cannot_hold_on_demand() {
        let jit = JitEngine::new(None, None).expect("engine");
        let pooled = jit.plain.pooled.as_ref();
        assert!(
            pooled.is_some() || address_space_is_tight(None),
            "a host with room for the pool uses it"
        );
        let in_pool =
            |compiled: &Module| pooled.is_some_and(|p| Engine::same(compiled.engine(), &p.engine));
        let small = jit.compile(&module(&[0x42, 0x07])).expect("compiles");
        assert_eq!(
            in_pool(&small),
            pooled.is_some(),
            "a small module goes to the pool"
        );
        // More table elements than a pool's table holds (20,000).
        let big = module_with_table(&[0x42, 0x07], Some(30_000));
        let compiled = jit.compile(&big).expect("compiles on demand");
        assert!(
            !in_pool(&compiled),
            "the pool cannot hold a 30,000-element table"
        );
        // Remembered: the next compile goes on demand at once.
        assert!(jit.plain.refused.lock().expect("lock").contains(&big.hash) || pooled.is_none());
        for compiled in [&small, &compiled] {
            let mut store = Store::new(compiled.engine(), ());
            store.set_epoch_deadline(1000);
            let instance =
                wasmtime::Instance::new(&mut store, compiled, &[]).expect("instantiates");
            let f = instance
                .get_typed_func::<(), i64>(&mut store, "f")
                .expect("exported");
            assert_eq!(f.call(&mut store, ()).expect("runs"), 7);
        }
    }

    #[test]
    fn a_run_waits_for_a_place_in_a_full_pool() {
        let places = Arc::new(Places::new(1));
        let held = places.take();
        let (tx, rx) = std::sync::mpsc::channel();
        let waiting = {
            let places = places.clone();
            std::thread::spawn(move || {
                let _place = places.take();
                tx.send(()).expect("send");
            })
        };
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "a second run must wait while the only place is taken"
        );
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("the place is handed on once given back");
        waiting.join().expect("joins");
        assert_eq!(*places.free.lock().expect("lock"), 1);
    }

    #[test]
    fn float_code_is_compiled_with_canonical_nans_and_integer_code_without() {
        let jit = JitEngine::new(None, None).expect("engine");
        let (bits, canonical) = call(&jit, &nan_bits());
        assert!(
            canonical,
            "a module that reads a NaN's bits must get the careful engine"
        );
        // The canonical quiet NaN on every CPU (x86 alone would give the
        // negative "default NaN" 0xfff8…).
        assert_eq!(bits as u64, 0x7ff8_0000_0000_0000);
        let (seven, canonical) = call(&jit, &module(&[0x42, 0x07])); // i64.const 7
        assert_eq!(seven, 7);
        assert!(!canonical, "integer code does not need canonical NaNs");
        // sqrt(-1) truncated: a NaN, but only ever seen as 0.
        let (zero, canonical) = call(&jit, &module(&sqrt_of_minus_one()));
        assert_eq!(zero, 0);
        assert!(
            !canonical,
            "a NaN that is never looked into needs no canonicalising"
        );
    }

    /// i64.const -1, f64.convert_i64_s, f64.sqrt, i64.trunc_sat_f64_s.
    fn sqrt_of_minus_one() -> Vec<u8> {
        vec![0x42, 0x7f, 0xb9, 0x9f, 0xfc, 0x06]
    }

    #[test]
    fn only_instructions_that_see_nan_bits_need_canonical_nans() {
        assert!(nan_bits_observable(&nan_bits().bytes), "reinterpret");
        assert!(!nan_bits_observable(&module(&[0x42, 0x07]).bytes));
        assert!(!nan_bits_observable(&module(&sqrt_of_minus_one()).bytes));
        // copysign(1.0, sqrt(-1)) carries the NaN's sign into a number.
        let mut copysign = vec![0x44];
        copysign.extend_from_slice(&1f64.to_le_bytes());
        copysign.extend_from_slice(&[0x42, 0x7f, 0xb9, 0x9f, 0xa6, 0xbd]);
        assert!(nan_bits_observable(&module(&copysign).bytes), "copysign");
        // Two zero vectors added as four f32s or four i32s, lane 0 as i64.
        let simd = |add: &[u8]| {
            let mut body = Vec::new();
            for _ in 0..2 {
                body.extend_from_slice(&[0xfd, 0x0c]); // v128.const
                body.extend_from_slice(&[0; 16]);
            }
            body.extend_from_slice(add);
            body.extend_from_slice(&[0xfd, 0x1d, 0x00]); // i64x2.extract_lane 0
            module(&body)
        };
        assert!(
            !nan_bits_observable(&simd(&[0xfd, 0xae, 0x01]).bytes),
            "i32x4.add"
        );
        assert!(
            nan_bits_observable(&simd(&[0xfd, 0xe4, 0x01]).bytes),
            "f32x4.add"
        );
        let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/wasm");
        let read = |name: &str| std::fs::read(examples.join(name)).expect("example module");
        // The prime sieve's one sqrt is truncated at once.
        assert!(!nan_bits_observable(&read("primes.wasm")));
        let mut cut = read("mandelbrot.wasm");
        cut.truncate(cut.len() / 2);
        assert!(nan_bits_observable(&cut), "a module that does not parse");
    }
}
