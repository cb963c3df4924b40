//! wasmtime's WASI linker: wasmtime-wasi's preview 1 (sync), with corral's
//! own `poll_oneoff` and `fd_read` in front of it for the calls that could
//! wait (see [`crate::runtime::hostcall`]); every other call, and those two
//! when they cannot wait, go to wasmtime-wasi's own functions, called the
//! way its sync linker calls them (on its Tokio runtime).
//!
//! Why not wasmtime's async support (`call_async` under a select on the
//! deadline): it runs every guest on a fiber stack of its own, which the
//! pool would have to reserve and each run to switch to, and a Tokio
//! runtime on the runner threads, a cost on every run for the rare guest
//! that waits; the shadows cost nothing until a guest calls them.

use wasmtime::{AsContextMut, Caller, Engine, Extern, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1::{self as p1, WasiSnapshotPreview1 as _};
use wasmtime_wasi::runtime::in_tokio;

use wasmtime_wasi::p1::WasiP1Ctx;

use crate::runtime::hostcall::HostState;
use crate::runtime::hostcall::poll::Poll;
use crate::runtime::hostcall::read::Read;
use crate::runtime::limiter::MemoryLimiter;
use crate::runtime::quota::Quota;

/// A run's store data: its WASI context, memory limiter and what corral's
/// own host calls need.
pub(super) struct RunState {
    pub(super) wasi: WasiP1Ctx,
    pub(super) limiter: MemoryLimiter,
    pub(super) host: HostState,
    pub(super) quota: Quota,
}

const WASI: &str = "wasi_snapshot_preview1";

fn missing_memory() -> wasmtime::Error {
    wasmtime::Error::msg("missing required memory export")
}

/// The linker every wasmtime run of `engine` uses: WASI preview 1 and
/// corral's host calls.
pub(super) fn linker(engine: &Engine) -> wasmtime::Result<Linker<RunState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut RunState| &mut s.wasi)?;
    linker.allow_shadowing(true);
    linker.func_wrap(
        WASI,
        "poll_oneoff",
        |mut caller: Caller<'_, RunState>,
         subs: i32,
         events: i32,
         count: i32,
         nevents: i32|
         -> wasmtime::Result<i32> {
            with_wasi(&mut caller, |state, bytes| {
                let args = (subs as u32, events as u32, count as u32, nevents as u32);
                if let Some(call) = Poll::parse(bytes, args, &state.host) {
                    call.answer(bytes, &state.host)?;
                    return Ok(0);
                }
                let memory = &mut wiggle::GuestMemory::Unshared(bytes);
                in_tokio(p1::poll_oneoff(
                    &mut state.wasi,
                    memory,
                    subs,
                    events,
                    count,
                    nevents,
                ))
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_read",
        |mut caller: Caller<'_, RunState>,
         fd: i32,
         iovs: i32,
         count: i32,
         nread: i32|
         -> wasmtime::Result<i32> {
            with_wasi(&mut caller, |state, bytes| {
                let args = (fd as u32, iovs as u32, count as u32, nread as u32);
                if let Some(call) = Read::parse(bytes, args, &state.host) {
                    call.answer(bytes, &state.host)?;
                    return Ok(0);
                }
                let memory = &mut wiggle::GuestMemory::Unshared(bytes);
                in_tokio(p1::fd_read(&mut state.wasi, memory, fd, iovs, count, nread))
            })
        },
    )?;
    // Where the stdin stream is follows the guest's closes and renumbers,
    // so a file given its number is read as the file.
    linker.func_wrap(
        WASI,
        "fd_close",
        |mut caller: Caller<'_, RunState>, fd: i32| -> wasmtime::Result<i32> {
            with_wasi(&mut caller, |state, bytes| {
                let memory = &mut wiggle::GuestMemory::Unshared(bytes);
                let code = in_tokio(p1::fd_close(&mut state.wasi, memory, fd))?;
                if code == 0 {
                    state.host.fd_closed(fd as u32);
                }
                Ok(code)
            })
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_renumber",
        |mut caller: Caller<'_, RunState>, from: i32, to: i32| -> wasmtime::Result<i32> {
            with_wasi(&mut caller, |state, bytes| {
                let memory = &mut wiggle::GuestMemory::Unshared(bytes);
                let code = in_tokio(p1::fd_renumber(&mut state.wasi, memory, from, to))?;
                if code == 0 {
                    state.host.fd_renumbered(from as u32, to as u32);
                }
                Ok(code)
            })
        },
    )?;
    linker.allow_shadowing(false);
    // Writes to the task's writable preopens are charged to its disk quota
    // before they are made.
    super::quota::shadow(&mut linker, |s: &mut RunState| (&mut s.wasi, &s.quota))?;
    Ok(linker)
}

/// Runs `f` on the run's state and the guest's memory, with wasmtime-wasi
/// given the store's host-call allowance for reading guest data, as its own
/// entry points do (without it a first call that reads a path fails ENOMEM).
fn with_wasi<R>(
    caller: &mut Caller<'_, RunState>,
    f: impl FnOnce(&mut RunState, &mut [u8]) -> wasmtime::Result<R>,
) -> wasmtime::Result<R> {
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Err(missing_memory());
    };
    let fuel = caller.as_context_mut().hostcall_fuel();
    let (bytes, state) = memory.data_and_store_mut(caller);
    state.wasi.set_hostcall_fuel(fuel);
    f(state, bytes)
}
