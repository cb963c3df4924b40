//! One interface over two WebAssembly engines: wasmtime's Cranelift JIT and the
//! wasmi interpreter, both running WASI preview 1 commands in a fresh sandbox.
//!
//! A run is described by a [`RunSpec`] (args, exactly the given env, stdin,
//! preopened directories, limits) and ends in an [`Outcome`] whose
//! [`TaskStatus`] names *why* it ended: a normal exit, a trap, the wall-clock
//! timeout, the memory cap, the output cap or the disk cap. Hostile or broken modules end
//! with one of those reasons; they never take the process down.

mod hostcall;
mod interp;
#[cfg(feature = "jit")]
mod jit;
mod limiter;
mod quota;
mod readonly;
mod sink;
mod stop;
mod tier;

#[cfg(feature = "jit")]
pub mod cache;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use corral_protocol::hash::ContentHash;
use corral_protocol::receipt::{EngineKind, TaskStatus};

pub use hostcall::stdin::StdinStream;
pub use sink::{LiveOutput, OutputSink};
pub use stop::{StopReason, StopSignal};
pub use tier::{QUICK_COMPILE_BYTES, compile_peak_bytes};

/// The largest module corral accepts. Real batch jobs are a few MiB at most;
/// the bound keeps a bad file or peer from making us hash and compile gigabytes.
pub const MAX_MODULE_BYTES: usize = 256 * 1024 * 1024;

/// How long a run may keep going after its deadline while the engine notices
/// the interruption (epoch ticks and fuel slices are a few milliseconds).
pub const TICK: Duration = Duration::from_millis(5);

/// Which engine the user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// The JIT where this CPU has one and memory allows, the interpreter otherwise.
    #[value(alias = "any")]
    Auto,
    /// wasmtime (Cranelift).
    Jit,
    /// wasmi.
    Interp,
}

/// Limits applied to every run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time from the start of instantiation.
    pub timeout: Duration,
    /// Largest linear memory (and table) size, in bytes.
    pub memory_bytes: u64,
    /// Most bytes kept of stdout, and separately of stderr; writing more ends the run.
    pub output_bytes: u64,
    /// Most bytes the run may add to its writable preopens, all together;
    /// a write that would add more is not performed and ends the run.
    pub disk_bytes: u64,
    /// Most files, directories and links the run may create in them.
    pub files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3600),
            memory_bytes: 1024 * 1024 * 1024,
            output_bytes: 16 * 1024 * 1024,
            disk_bytes: corral_protocol::manifest::DEFAULT_DISK_BYTES,
            files: corral_protocol::manifest::DEFAULT_FILES,
        }
    }
}

/// What the guest reads on stdin.
#[derive(Clone, Debug, Default)]
pub enum Stdin {
    /// Nothing: the first read sees end of file.
    #[default]
    Empty,
    /// These bytes, then end of file.
    Bytes(Arc<[u8]>),
    /// This process's own stdin (pass-through runs): the process's
    /// [`StdinStream::process`].
    Inherit,
    /// What a reader gives, as it gives it (a read waits for it under the
    /// run's timeout and stop signal).
    Stream(StdinStream),
}

/// A host directory made visible to the guest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preopen {
    /// The directory on the host; must exist.
    pub host: PathBuf,
    /// Where the guest sees it (absolute, e.g. `/output`).
    pub guest: String,
    /// Whether the guest may create, change and delete files in it.
    pub writable: bool,
}

/// Everything one run needs besides the compiled module.
#[derive(Clone, Debug, Default)]
pub struct RunSpec {
    /// argv, including argv[0] (the module's name).
    pub args: Vec<String>,
    /// Exactly the environment the guest sees.
    pub env: Vec<(String, String)>,
    /// The guest's stdin.
    pub stdin: Stdin,
    /// Echo stdout and stderr to this process's own as they are written
    /// (they are captured up to the cap as well).
    pub passthrough: bool,
    /// Preopened directories.
    pub preopens: Vec<Preopen>,
    /// Limits of this run.
    pub limits: Limits,
    /// Given from another thread to stop the guest early (the coordinator
    /// no longer wants the task, or it is handed back): within a tick, or at
    /// once if it waits in a host call, it ends as a trap saying why.
    pub cancel: Option<Arc<StopSignal>>,
    /// A window on stdout and stderr while the guest runs (a remote single
    /// task streams them to its submitter).
    pub live: Option<LiveOutput>,
}

/// How a run ended, with what it printed.
#[derive(Debug)]
pub struct Outcome {
    /// Why it ended.
    pub status: TaskStatus,
    /// Captured stdout (at most the output cap).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most the output cap).
    pub stderr: Vec<u8>,
    /// The guest tried to write more to stdout than the cap.
    pub stdout_truncated: bool,
    /// The guest tried to write more to stderr than the cap.
    pub stderr_truncated: bool,
    /// The engine that ran it.
    pub engine: EngineKind,
    /// Wall-clock time of the run, instantiation included.
    pub duration: Duration,
}

/// Why a module could not be prepared or a run could not be set up. These are
/// errors of the job or the host, reported before any guest code ran.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a WebAssembly core module.
    #[error("{0}")]
    NotAModule(String),
    /// The engine rejected the module (validation or compilation).
    #[error("invalid WebAssembly module: {0}")]
    Invalid(String),
    /// The module imports something corral does not provide.
    #[error("module cannot be linked: {0}")]
    Link(String),
    /// The module has no `_start` export.
    #[error("module exports no `_start` function: corral runs WASI preview 1 commands")]
    NoStart,
    /// The requested engine is not in this build or not usable here.
    #[error("{0}")]
    EngineUnavailable(String),
    /// A preopened directory could not be opened.
    #[error("cannot preopen {host} as {guest}: {reason}")]
    Preopen {
        /// Host path.
        host: String,
        /// Guest path.
        guest: String,
        /// What went wrong.
        reason: String,
    },
    /// The WASI context could not be built (bad argument or environment string).
    #[error("invalid WASI setup: {0}")]
    Wasi(String),
    /// Creating the engine failed.
    #[error("cannot start the {engine} engine: {reason}")]
    Engine {
        /// Which engine.
        engine: &'static str,
        /// Why.
        reason: String,
    },
}

/// A module's bytes with their content hash, checked to look like a core module.
#[derive(Clone, Debug)]
pub struct WasmModule {
    /// sha256 of the bytes: the cache key and the id on the wire.
    pub hash: ContentHash,
    /// The module itself.
    pub bytes: Arc<[u8]>,
}

impl WasmModule {
    /// Checks the header and size and hashes the bytes.
    pub fn new(bytes: Vec<u8>) -> Result<Self, RuntimeError> {
        Self::check(&bytes, bytes.len() as u64)?;
        Ok(Self {
            hash: ContentHash::of(&bytes),
            bytes: bytes.into(),
        })
    }

    /// Checks that a module of `size` bytes starting with `head` (at
    /// least its first 8 bytes) looks like a core module.
    pub fn check(head: &[u8], size: u64) -> Result<(), RuntimeError> {
        if size > MAX_MODULE_BYTES as u64 {
            return Err(RuntimeError::NotAModule(format!(
                "module is {size} bytes; the limit is {MAX_MODULE_BYTES}"
            )));
        }
        match head.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => {}
            Some([0, b'a', b's', b'm', _, _, 1, 0]) => {
                return Err(RuntimeError::NotAModule(
                    "this is a WebAssembly component; corral runs core modules built for \
                     WASI preview 1 (e.g. --target wasm32-wasip1)"
                        .into(),
                ));
            }
            Some([0, b'a', b's', b'm', ..]) => {
                return Err(RuntimeError::NotAModule(
                    "unsupported WebAssembly binary version (expected 1)".into(),
                ));
            }
            _ => {
                return Err(RuntimeError::NotAModule(
                    "not a WebAssembly module (no `\\0asm` header); text (.wat) modules \
                     must be compiled to binary first"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// A module compiled for one engine, cheap to clone and share across tasks.
#[derive(Clone)]
pub enum Compiled {
    /// Cranelift machine code.
    #[cfg(feature = "jit")]
    Jit(wasmtime::Module),
    /// wasmi's translated bytecode.
    Interp(wasmi::Module),
}

impl Compiled {
    /// The engine this module was compiled for.
    pub fn engine(&self) -> EngineKind {
        match self {
            #[cfg(feature = "jit")]
            Compiled::Jit(_) => EngineKind::Jit,
            Compiled::Interp(_) => EngineKind::Interp,
        }
    }
}

/// Both engines, created once per process; cheap to share behind an `Arc`.
pub struct Runtime {
    #[cfg(feature = "jit")]
    jit: Option<jit::JitEngine>,
    interp: interp::InterpEngine,
    auto: EngineKind,
    tiers: tier::Tiers,
}

/// Hosts with less memory than this use the interpreter under `auto`: the JIT's
/// compiler and code caches cost tens of MiB that a small device cannot spare.
#[cfg(feature = "jit")]
const SMALL_HOST_BYTES: u64 = 1024 * 1024 * 1024;

impl Runtime {
    /// Creates the engines. `cache_dir` holds compiled JIT code across runs
    /// (none: compile every time).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, RuntimeError> {
        let total_memory = host_memory_bytes();
        let interp = interp::InterpEngine::new()?;
        #[cfg(feature = "jit")]
        {
            let jit = if jit::cranelift_supported() {
                Some(jit::JitEngine::new(cache_dir, total_memory)?)
            } else {
                None
            };
            let auto = match (&jit, total_memory) {
                (Some(_), Some(total)) if total < SMALL_HOST_BYTES => EngineKind::Interp,
                (Some(_), _) => EngineKind::Jit,
                (None, _) => EngineKind::Interp,
            };
            if jit.is_some() {
                tier::low_priority_compile_pool();
            }
            Ok(Self {
                jit,
                interp,
                auto,
                tiers: tier::Tiers::new(QUICK_COMPILE_BYTES, tier::free_memory),
            })
        }
        #[cfg(not(feature = "jit"))]
        {
            let _ = (cache_dir, total_memory);
            Ok(Self {
                interp,
                auto: EngineKind::Interp,
                tiers: tier::Tiers::new(QUICK_COMPILE_BYTES, tier::free_memory),
            })
        }
    }

    /// Whether this build and CPU have the JIT.
    fn has_jit(&self) -> bool {
        #[cfg(feature = "jit")]
        return self.jit.is_some();
        #[cfg(not(feature = "jit"))]
        false
    }

    /// Cranelift compiles this process did (loads from the disk cache not
    /// counted).
    pub fn jit_compiles(&self) -> u64 {
        #[cfg(feature = "jit")]
        if let Some(jit) = &self.jit {
            return jit.compiles();
        }
        0
    }

    /// The engines this build can use on this host, the JIT first.
    pub fn engines(&self) -> Vec<EngineKind> {
        // The JIT engine exists exactly when the build and CPU support it
        // (creating it otherwise fails `Runtime::new`).
        build_engines()
    }

    /// Turns the user's choice into a concrete engine of this host.
    pub fn resolve(&self, choice: EngineChoice) -> Result<EngineKind, RuntimeError> {
        match choice {
            EngineChoice::Auto => Ok(self.auto),
            EngineChoice::Interp => Ok(EngineKind::Interp),
            EngineChoice::Jit => {
                if self.engines().contains(&EngineKind::Jit) {
                    Ok(EngineKind::Jit)
                } else if cfg!(feature = "jit") {
                    Err(RuntimeError::EngineUnavailable(format!(
                        "the JIT is not available on {}: Cranelift has no backend for it; \
                         use --engine interp",
                        std::env::consts::ARCH
                    )))
                } else {
                    Err(RuntimeError::EngineUnavailable(
                        "this corral was built without the JIT (cargo feature `jit`); \
                         use --engine interp"
                            .into(),
                    ))
                }
            }
        }
    }

    /// Compiles (or loads from the cache) a module for `engine`.
    pub fn compile(
        &self,
        engine: EngineKind,
        module: &WasmModule,
    ) -> Result<Compiled, RuntimeError> {
        match engine {
            EngineKind::Interp => self.interp.compile(module).map(Compiled::Interp),
            EngineKind::Jit => {
                #[cfg(feature = "jit")]
                if let Some(jit) = &self.jit {
                    return jit.compile(module).map(Compiled::Jit);
                }
                Err(self
                    .resolve(EngineChoice::Jit)
                    .err()
                    .unwrap_or_else(|| RuntimeError::EngineUnavailable("no JIT".into())))
            }
        }
    }

    /// Runs a compiled module once in a fresh sandbox.
    pub fn run(&self, compiled: &Compiled, spec: &RunSpec) -> Result<Outcome, RuntimeError> {
        match compiled {
            #[cfg(feature = "jit")]
            Compiled::Jit(module) => match &self.jit {
                Some(jit) => jit.run(module, spec),
                None => Err(RuntimeError::EngineUnavailable("no JIT".into())),
            },
            Compiled::Interp(module) => self.interp.run(module, spec),
        }
    }
}

/// The engines this build can run on this CPU, without starting them.
pub fn build_engines() -> Vec<EngineKind> {
    let mut engines = Vec::with_capacity(2);
    #[cfg(feature = "jit")]
    if jit::cranelift_supported() {
        engines.push(EngineKind::Jit);
    }
    engines.push(EngineKind::Interp);
    engines
}

/// Total physical memory, if the OS tells.
fn host_memory_bytes() -> Option<u64> {
    host_memory(sysinfo::System::total_memory)
}

/// A figure of the host's memory (`read` from a fresh reading), if the OS
/// tells.
fn host_memory(read: fn(&sysinfo::System) -> u64) -> Option<u64> {
    let mut system = sysinfo::System::new().ok()?;
    system.refresh_memory();
    match read(&system) {
        0 => None,
        bytes => Some(bytes),
    }
}

/// Turns a run's raw ending into its status. The order matters: a guest that
/// hit the output or memory cap usually traps (Rust aborts on a failed
/// allocation or a failed print), and the cap is the real reason.
fn classify(
    ended: Ended,
    stdout: &OutputSink,
    stderr: &OutputSink,
    memory_hit: bool,
    disk_hit: bool,
) -> TaskStatus {
    if stdout.overflowed() || stderr.overflowed() {
        return TaskStatus::OutputLimit;
    }
    // A refused write or create traps on either engine; a guest that
    // somehow carried on is still stopped for the same reason.
    if disk_hit {
        return TaskStatus::DiskLimit;
    }
    match ended {
        Ended::Exit(code) => TaskStatus::Exited { code },
        Ended::Timeout => TaskStatus::TimedOut,
        Ended::Trap(_) if memory_hit => TaskStatus::MemoryLimit,
        Ended::Trap(message) => TaskStatus::Trapped { message },
    }
}

/// How the engine says a run ended, before the caps are taken into account.
#[derive(Debug)]
enum Ended {
    Exit(i32),
    Timeout,
    Trap(String),
}

impl From<hostcall::Halt> for Ended {
    fn from(halt: hostcall::Halt) -> Self {
        match halt {
            hostcall::Halt::Timeout => Ended::Timeout,
            hostcall::Halt::Stopped(reason) => Ended::Trap(reason.message().into()),
        }
    }
}

/// Trap messages are shown to users and sent to peers: keep them short.
fn short_message(message: String) -> String {
    const MAX: usize = 1024;
    if message.len() <= MAX {
        return message;
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "jit"))]
mod tier_tests;
#[cfg(test)]
mod waits_tests;
