//! The JIT engine: wasmtime with Cranelift, WASI preview 1 from wasmtime-wasi.
//!
//! Two `Engine`s (with and without NaN canonicalisation, chosen per module)
//! and their `Linker`s per process; a fresh `Store` per run with the
//! memory limiter, an epoch deadline for the wall-clock timeout and capped
//! stdout/stderr. Compiled code is cached on disk by [`super::cache`].
//!
//! The rooms: this file compiles and runs; `pool.rs` holds the engines and
//! their allocators (pooled or on demand), `ticker.rs` the epoch ticker
//! thread, `nan.rs` the scan that picks the NaN setting, `stream.rs`
//! the guest's output as WASI streams, and `wasi.rs` the WASI linker with
//! corral's own host calls that wait.

mod nan;
mod pool;
mod quota;
mod stream;
#[cfg(test)]
mod tests;
mod ticker;
mod wasi;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use corral_protocol::hash::ContentHash;
use corral_protocol::receipt::EngineKind;
use wasmtime::{Engine, Module, Store, Trap, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use self::nan::nan_bits_observable;
use self::pool::{Pair, Places, address_space_is_tight};
use self::stream::JitSink;
use self::ticker::{Ticking, spawn_epoch_ticker};
use self::wasi::RunState;
use super::hostcall::{Halt, HostState};
use super::limiter::MemoryLimiter;
use super::quota::Quota;
use super::sink::OutputSink;
use super::{Ended, Outcome, RunSpec, RuntimeError, Stdin, classify, short_message};
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

/// wasmtime for this process: the engines of both NaN settings and their
/// epoch ticker.
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
    /// Each module's NaN scan, by hash.
    observable: Mutex<HashMap<ContentHash, bool>>,
}

/// Modules whose NaN scan is remembered (a batch uses one).
const NAN_MEMO_ENTRIES: usize = 256;

impl Drop for JitEngine {
    fn drop(&mut self) {
        self.ticking.close();
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
            observable: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn compile(&self, module: &super::WasmModule) -> Result<Module, RuntimeError> {
        self.pair_for(module).compile(module)
    }

    /// The module's code if it is compiled already (in memory or in the
    /// disk cache); `None` without compiling it.
    pub(crate) fn ready(&self, module: &super::WasmModule) -> Option<Module> {
        self.pair_for(module).ready(module)
    }

    /// Cranelift compiles done in this process (loads from disk not
    /// counted).
    pub(crate) fn compiles(&self) -> u64 {
        self.exact.compiles() + self.plain.compiles()
    }

    /// The engines of the module's NaN setting (its scan reads every
    /// instruction: remembered per module).
    fn pair_for(&self, module: &super::WasmModule) -> &Pair {
        let known = lock(&self.observable).get(&module.hash).copied();
        let observable = known.unwrap_or_else(|| {
            let observable = nan_bits_observable(&module.bytes);
            let mut memo = lock(&self.observable);
            if memo.len() >= NAN_MEMO_ENTRIES {
                memo.clear();
            }
            memo.insert(module.hash, observable);
            observable
        });
        if observable { &self.exact } else { &self.plain }
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
            // A stream (this process's stdin among them) is read by
            // corral's own `fd_read`; wasmtime-wasi sees an empty stdin.
            Stdin::Empty | Stdin::Inherit | Stdin::Stream(_) => {}
            Stdin::Bytes(bytes) => {
                builder.stdin(MemoryInputPipe::new(bytes::Bytes::copy_from_slice(bytes)));
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
        let deadline = started + spec.limits.timeout;
        let wasi = builder.build_p1();
        let mut store = Store::new(
            &flavour.engine,
            RunState {
                wasi,
                limiter: MemoryLimiter::new(spec.limits.memory_bytes),
                host: HostState::new(spec, deadline, false),
                quota: Quota::new(&spec.limits, spec.preopens.iter().any(|p| p.writable)),
            },
        );
        store.limiter(|state| &mut state.limiter);
        // Every tick the deadline passes and this decides: stop for the
        // timeout or a cancel, or carry on for another tick. The check in
        // the generated code is the same either way.
        let cancel = spec.cancel.clone();
        let _ticks = self.ticking.run();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                return Err(Trap::Interrupt.into());
            }
            if let Some(reason) = cancel.as_ref().and_then(|c| c.reason()) {
                return Err(Halt::Stopped(reason).into());
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
        let (memory_hit, disk_hit) = (store.data().limiter.hit(), store.data().quota.hit());
        let status = classify(ended, &stdout, &stderr, memory_hit, disk_hit);
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

fn ended_from(result: wasmtime::Result<()>) -> Ended {
    let error = match result {
        Ok(()) => return Ended::Exit(0),
        Err(error) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return Ended::Exit(exit.0);
    }
    if let Some(halt) = error.downcast_ref::<Halt>() {
        return Ended::from(*halt);
    }
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Ended::Timeout,
        Some(trap) => Ended::Trap(trap.to_string()),
        None => Ended::Trap(short_message(format!("{error:#}"))),
    }
}
