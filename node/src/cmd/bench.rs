//! `corral bench`: calibrates each engine of this device with the bundled
//! prime counter, so the scheduler can compare devices. The score is
//! calibration operations (numbers sieved) per second.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use corral_protocol::receipt::{EngineKind, TaskStatus};

use crate::config::DataDir;
use crate::control;
use crate::runtime::{Limits, RunSpec, Runtime, WasmModule};
use crate::store::Store;

/// The calibration module (the primes example).
const CALIBRATION: &[u8] = include_bytes!("../../../examples/wasm/primes.wasm");
/// Numbers sieved per calibration run: about a millisecond on a JIT, tens on
/// an interpreter: cheap enough for every daemon start without a cached score.
const CALIBRATION_N: u64 = 500_000;

/// Measures one engine: best of three runs, in CPU time of this thread
/// (the runs execute on it): the speed of the CPU itself, whatever else
/// runs and whether a cgroup limit holds this process back at the moment
/// (the daemon accounts for such a limit separately, see
/// [`crate::capacity::slot_share`]).
pub fn calibrate(runtime: &Runtime, engine: EngineKind) -> anyhow::Result<u64> {
    let module =
        WasmModule::new(CALIBRATION.to_vec()).context("the calibration module is broken")?;
    let compiled = runtime.compile(engine, &module)?;
    let spec = RunSpec {
        args: ["primes", "0", "1", &CALIBRATION_N.to_string()]
            .map(String::from)
            .to_vec(),
        limits: Limits::default(),
        ..RunSpec::default()
    };
    let mut best = f64::MAX;
    for _ in 0..3 {
        let started = thread_cpu_time()?;
        let outcome = runtime.run(&compiled, &spec)?;
        if outcome.status != (TaskStatus::Exited { code: 0 }) {
            anyhow::bail!(
                "calibration failed on {}: {:?}",
                engine.name(),
                outcome.status
            );
        }
        best = best.min((thread_cpu_time()? - started).as_secs_f64());
    }
    Ok((CALIBRATION_N as f64 / best.max(1e-6)) as u64)
}

/// CPU time this thread has used.
fn thread_cpu_time() -> anyhow::Result<Duration> {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .context("cannot read this thread's CPU time")?;
    Ok(Duration::from(now))
}

/// `corral bench`.
pub fn bench(data_dir: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let runtime = crate::runtime::Runtime::new(Some(dir.module_cache()))?;
    let store = if control::client::daemon_running(dir.root()) {
        None
    } else {
        Store::open(dir.root()).ok()
    };
    let mut out = serde_json::Map::new();
    for engine in runtime.engines() {
        let speed = calibrate(&runtime, engine)?;
        if let Some(store) = &store {
            crate::calibration::record(store, engine, speed)?;
        }
        out.insert(engine.name().into(), serde_json::json!(speed));
        if !json {
            println!("{:<7} {:>12} ops/s", engine.name(), speed);
        }
    }
    if json {
        println!("{}", serde_json::Value::Object(out));
    }
    if store.is_none() {
        eprintln!("corral: a daemon is running; the new scores are used after its next start");
    }
    Ok(ExitCode::SUCCESS)
}
