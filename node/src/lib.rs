//! corral's node: the daemon and command line of the corral compute mesh.
//!
//! The `corral` binary (`main.rs`) only parses arguments and maps results to
//! exit codes; everything else lives here so tests can drive it directly:
//! [`runtime`] runs WebAssembly on wasmtime or wasmi in a sandbox, [`job`]
//! turns a command line into tasks and runs them, [`cmd`] holds one module
//! per command; [`modules`] holds the signed module records this device
//! knows (modules by name); [`serve`] is `corral serve`'s HTTP front door.

pub mod blobs;
pub mod calibration;
pub mod capacity;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod demo_mesh;
pub mod dispatch;
pub mod http;
pub mod identity;
pub mod job;
pub mod modules;
pub mod net;
pub mod runtime;
pub mod serve;
pub mod store;
mod sync;
pub mod units;
pub mod usage;
