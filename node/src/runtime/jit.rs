//! The JIT engine: wasmtime with Cranelift, WASI preview 1 from wasmtime-wasi.
//!
//! One `Engine` and one `Linker` per process; a fresh `Store` per run with the
//! memory limiter, an epoch deadline for the wall-clock timeout and capped
//! stdout/stderr. Compiled code is cached on disk by [`super::cache`].

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use corral_protocol::receipt::EngineKind;
use wasmtime::{Config, Engine, Linker, Module, Store, Trap};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::cache::ModuleCache;
use super::limiter::MemoryLimiter;
use super::sink::OutputSink;
use super::{Ended, Outcome, RunSpec, RuntimeError, Stdin, TICK, classify, short_message};

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

pub(crate) struct JitEngine {
    engine: Engine,
    linker: Linker<RunState>,
    cache: ModuleCache,
    /// Keeps the epoch ticker alive; the thread ends when this is dropped.
    _ticker: Arc<()>,
}

impl JitEngine {
    pub(crate) fn new(
        cache_dir: Option<PathBuf>,
        host_memory: Option<u64>,
    ) -> Result<Self, RuntimeError> {
        let fail = |e: wasmtime::Error| RuntimeError::Engine {
            engine: "wasmtime",
            reason: format!("{e:#}"),
        };
        let mut config = Config::new();
        // Same bytes out on every engine and CPU: what makes --verify work.
        config.cranelift_nan_canonicalization(true);
        config.epoch_interruption(true);
        config.max_wasm_stack(1024 * 1024);
        if address_space_is_tight(host_memory) {
            // Explicit bounds checks instead of a 4 GiB reservation per memory.
            config.memory_reservation(0);
            config.memory_guard_size(64 * 1024);
            config.memory_reservation_for_growth(1024 * 1024);
        }
        let engine = Engine::new(&config).map_err(fail)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut RunState| &mut s.wasi)
            .map_err(fail)?;
        let ticker = Arc::new(());
        spawn_epoch_ticker(engine.clone(), Arc::downgrade(&ticker));
        let cache = ModuleCache::new(&engine, cache_dir);
        Ok(Self {
            engine,
            linker,
            cache,
            _ticker: ticker,
        })
    }

    pub(crate) fn compile(&self, module: &super::WasmModule) -> Result<Module, RuntimeError> {
        self.cache.get_or_compile(&self.engine, module)
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

        let mut store = Store::new(
            &self.engine,
            RunState {
                wasi: builder.build_p1(),
                limiter: MemoryLimiter::new(spec.limits.memory_bytes),
            },
        );
        store.limiter(|state| &mut state.limiter);
        store.set_epoch_deadline(deadline_ticks(spec.limits.timeout));
        store.epoch_deadline_trap();

        let ended = match self.linker.instantiate(&mut store, module) {
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

fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos() / TICK.as_nanos();
    u64::try_from(ticks).unwrap_or(u64::MAX).max(1)
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

/// One thread per process advances the engine's epoch every [`TICK`]; a store
/// traps with `Trap::Interrupt` once its deadline (in ticks) has passed.
fn spawn_epoch_ticker(engine: Engine, alive: Weak<()>) {
    let spawned = std::thread::Builder::new()
        .name("corral-epoch".into())
        .spawn(move || {
            while alive.strong_count() > 0 {
                std::thread::sleep(TICK);
                engine.increment_epoch();
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
