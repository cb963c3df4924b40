//! The interpreter engine: wasmi with WASI preview 1 from wasmi_wasi.
//!
//! wasmi has no epoch interruption, so the wall-clock timeout is enforced with
//! fuel slices: the call runs with a small fuel budget, and each time it runs
//! out the deadline is checked and the budget refilled. Fuel is never the
//! limit users see (its units differ from wasmtime's); time is. Host calls
//! that wait are answered by corral under the same deadline (`wasi.rs`).

mod wasi;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use corral_protocol::hash::ContentHash;
use corral_protocol::receipt::EngineKind;
use wasmi::{Config, Engine, Linker, Module, Store, TypedResumableCall};

use self::wasi::RunState;
use super::hostcall::{Halt, HostState};
use super::limiter::MemoryLimiter;
use super::quota::Quota;
use super::sink::OutputSink;
use super::{Ended, Outcome, RunSpec, RuntimeError, WasmModule, classify, short_message};

mod wasi_fix;

/// Fuel per slice between deadline checks: a few milliseconds of work at
/// wasmi's speed, small enough for a prompt timeout, large enough that the
/// check costs nothing measurable.
const FUEL_SLICE: u64 = 2_000_000;

/// Compiled modules kept in memory (wasmi cannot serialise its bytecode).
const MEMORY_ENTRIES: usize = 32;

pub(crate) struct InterpEngine {
    engine: Engine,
    linker: Linker<RunState>,
    modules: Mutex<HashMap<ContentHash, Module>>,
}

impl InterpEngine {
    pub(crate) fn new() -> Result<Self, RuntimeError> {
        let mut config = Config::default();
        config.consume_fuel(true);
        // Validated whole at compile time; each function translated when a
        // run first calls it, so a big program (a 28 MB Yosys calls a
        // fraction of its code) starts without translating what it never
        // runs. Translation costs no fuel: wasmi would charge it to the
        // run that first calls the function, where a function too big for
        // one slice traps ("all fuel consumed"), and fuel use would depend
        // on which run came first.
        config.compilation_mode(wasmi::CompilationMode::LazyTranslation);
        config.fuel_cost(wasmi::CustomFuelCosts {
            bytes_copied_per_fuel: 64,
            fuel_per_bytes_translated: 0,
            fuel_per_bytes_validated: 0,
        });
        let engine = Engine::new(&config);
        let linker = wasi::linker(&engine)?;
        Ok(Self {
            engine,
            linker,
            modules: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ContentHash, Module>> {
        self.modules.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn compile(&self, module: &WasmModule) -> Result<Module, RuntimeError> {
        if let Some(found) = self.lock().get(&module.hash) {
            return Ok(found.clone());
        }
        let compiled = Module::new(&self.engine, &module.bytes[..])
            .map_err(|e| RuntimeError::Invalid(e.to_string()))?;
        let mut modules = self.lock();
        if modules.len() >= MEMORY_ENTRIES {
            modules.clear();
        }
        modules.insert(module.hash, compiled.clone());
        Ok(compiled)
    }

    pub(crate) fn run(&self, module: &Module, spec: &RunSpec) -> Result<Outcome, RuntimeError> {
        let started = Instant::now();
        let deadline = started + spec.limits.timeout;
        let (stdout, stderr) = OutputSink::pair(spec);
        let quota = Quota::new(&spec.limits, spec.preopens.iter().any(|p| p.writable));
        let wasi = wasi::build_wasi(spec, &stdout, &stderr, &quota)?;
        let host = HostState::new(spec, deadline, true);
        let mut store = Store::new(
            &self.engine,
            RunState {
                fds: wasi_fix::FdNumbers::new(&wasi),
                wasi,
                limiter: MemoryLimiter::new(spec.limits.memory_bytes),
                host,
            },
        );
        store.limiter(|state| &mut state.limiter);
        let fuel_error = |e: wasmi::Error| RuntimeError::Engine {
            engine: "wasmi",
            reason: e.to_string(),
        };
        store.set_fuel(FUEL_SLICE).map_err(fuel_error)?;

        let ended = match self.linker.instantiate_and_start(&mut store, module) {
            Ok(instance) => {
                let start = instance
                    .get_typed_func::<(), ()>(&store, "_start")
                    .map_err(|_| RuntimeError::NoStart)?;
                let mut call = start.call_resumable(&mut store, ());
                loop {
                    match call {
                        Ok(TypedResumableCall::Finished(())) => break Ended::Exit(0),
                        Ok(TypedResumableCall::OutOfFuel(paused)) => {
                            if Instant::now() >= deadline {
                                break Ended::Timeout;
                            }
                            if let Some(reason) = spec.cancel.as_ref().and_then(|s| s.reason()) {
                                break Ended::Trap(reason.message().into());
                            }
                            // A bulk memory operation may need more than one
                            // slice at once; give it what it asks for.
                            let fuel = FUEL_SLICE.max(paused.required_fuel());
                            store.set_fuel(fuel).map_err(fuel_error)?;
                            call = paused.resume(&mut store);
                        }
                        Ok(TypedResumableCall::HostTrap(paused)) => {
                            break ended_from(paused.host_error());
                        }
                        Err(error) => break ended_from(&error),
                    }
                }
            }
            Err(e) if store.data().limiter.hit() => Ended::Trap(e.to_string()),
            Err(e) if e.as_trap_code().is_some() => ended_from(&e),
            Err(e) => return Err(RuntimeError::Link(e.to_string())),
        };
        let memory_hit = store.data().limiter.hit();
        let status = classify(ended, &stdout, &stderr, memory_hit, quota.hit());
        drop(store);
        Ok(Outcome {
            status,
            stdout_truncated: stdout.overflowed(),
            stderr_truncated: stderr.overflowed(),
            stdout: stdout.take(),
            stderr: stderr.take(),
            engine: EngineKind::Interp,
            duration: started.elapsed(),
        })
    }
}

fn ended_from(error: &wasmi::Error) -> Ended {
    if let Some(code) = error.i32_exit_status() {
        return Ended::Exit(code);
    }
    if let Some(halt) = error.downcast_ref::<Halt>() {
        return Ended::from(*halt);
    }
    match error.as_trap_code() {
        Some(code) => Ended::Trap(code.trap_message().to_string()),
        None => Ended::Trap(short_message(error.to_string())),
    }
}
