//! wasmi's WASI linker and context: wasmi_wasi's preview 1, with corral's
//! own `poll_oneoff` and `fd_read` in front of it for the calls that could
//! wait (see [`crate::runtime::hostcall`]); every other call, and those two
//! when they cannot wait, go to wasmi_wasi as they are.

use wasmi::{Caller, Engine, Extern, Linker, Memory};
use wasmi_wasi::sync::snapshots::preview_1::wrapped;
use wasmi_wasi::wasi_common::pipe::{ReadPipe, WritePipe};
use wasmi_wasi::{WasiCtx, WasiCtxBuilder, ambient_authority};

use super::wasi_fix::FdNumbers;
use crate::runtime::hostcall::HostState;
use crate::runtime::hostcall::poll::Poll;
use crate::runtime::hostcall::read::Read;
use crate::runtime::limiter::MemoryLimiter;
use crate::runtime::quota::{Quota, interp::QuotaDir};
use crate::runtime::readonly::ReadOnlyDir;
use crate::runtime::sink::OutputSink;
use crate::runtime::{RunSpec, RuntimeError, Stdin};

/// A run's store data: its WASI context, memory limiter and what corral's
/// own host calls need.
pub(super) struct RunState {
    pub(super) wasi: WasiCtx,
    /// The fd numbers wasmtime would give out next (`wasi_fix::fds`).
    pub(super) fds: FdNumbers,
    pub(super) limiter: MemoryLimiter,
    pub(super) host: HostState,
}

const WASI: &str = "wasi_snapshot_preview1";

fn wasi_ctx(state: &mut RunState) -> &mut WasiCtx {
    &mut state.wasi
}

fn wasi_and_fds(state: &mut RunState) -> super::wasi_fix::Numbers<'_> {
    (&mut state.wasi, &mut state.fds, &mut state.host)
}

fn memory(caller: &Caller<'_, RunState>) -> Option<Memory> {
    caller.get_export("memory").and_then(Extern::into_memory)
}

/// The linker every wasmi run uses: WASI preview 1 and corral's host calls.
pub(super) fn linker(engine: &Engine) -> Result<Linker<RunState>, RuntimeError> {
    let fail = |e: &dyn std::fmt::Display| RuntimeError::Engine {
        engine: "wasmi",
        reason: e.to_string(),
    };
    let mut linker = Linker::new(engine);
    wasmi_wasi::add_to_linker(&mut linker, wasi_ctx).map_err(|e| fail(&e))?;
    // Where wasi-common answers otherwise than wasmtime-wasi: corral's own.
    super::wasi_fix::add_to_linker(&mut linker, wasi_ctx, wasi_and_fds)?;
    linker.allow_shadowing(true);
    let poll_oneoff = wrapped::poll_oneoff::<RunState, WasiCtx>(wasi_ctx);
    linker
        .func_wrap(
            WASI,
            "poll_oneoff",
            move |mut caller: Caller<'_, RunState>,
                  subs: i32,
                  events: i32,
                  count: i32,
                  nevents: i32|
                  -> Result<i32, wasmi::Error> {
                let args = (subs as u32, events as u32, count as u32, nevents as u32);
                if let Some(memory) = memory(&caller) {
                    let (bytes, state) = memory.data_and_store_mut(&mut caller);
                    if let Some(call) = Poll::parse(bytes, args, &state.host) {
                        call.answer(bytes, &state.host)
                            .map_err(wasmi::Error::host)?;
                        return Ok(0);
                    }
                }
                poll_oneoff(caller, subs, events, count, nevents)
            },
        )
        .map_err(|e| fail(&e))?;
    let fd_read = wrapped::fd_read::<RunState, WasiCtx>(wasi_ctx);
    linker
        .func_wrap(
            WASI,
            "fd_read",
            move |mut caller: Caller<'_, RunState>,
                  fd: i32,
                  iovs: i32,
                  count: i32,
                  nread: i32|
                  -> Result<i32, wasmi::Error> {
                let args = (fd as u32, iovs as u32, count as u32, nread as u32);
                if let Some(memory) = memory(&caller) {
                    let (bytes, state) = memory.data_and_store_mut(&mut caller);
                    if let Some(call) = Read::parse(bytes, args, &state.host) {
                        call.answer(bytes, &state.host)
                            .map_err(wasmi::Error::host)?;
                        return Ok(0);
                    }
                }
                fd_read(caller, fd, iovs, count, nread)
            },
        )
        .map_err(|e| fail(&e))?;
    linker.allow_shadowing(false);
    Ok(linker)
}

/// The WASI context of a run: args, env, stdio and preopens (the writable
/// ones charging `quota`).
pub(super) fn build_wasi(
    spec: &RunSpec,
    stdout: &OutputSink,
    stderr: &OutputSink,
    quota: &Quota,
) -> Result<WasiCtx, RuntimeError> {
    let bad = |e: &dyn std::fmt::Display| RuntimeError::Wasi(e.to_string());
    let mut builder = WasiCtxBuilder::new();
    builder.args(&spec.args).map_err(|e| bad(&e))?;
    builder.envs(&spec.env).map_err(|e| bad(&e))?;
    match &spec.stdin {
        // A stream (this process's stdin among them) is read by corral's
        // own `fd_read`; wasmi_wasi sees an empty pipe.
        Stdin::Empty | Stdin::Inherit | Stdin::Stream(_) => {
            builder.stdin(Box::new(ReadPipe::from(Vec::new())));
        }
        Stdin::Bytes(bytes) => {
            builder.stdin(Box::new(ReadPipe::from(bytes.to_vec())));
        }
    }
    builder.stdout(Box::new(WritePipe::new(stdout.writer())));
    builder.stderr(Box::new(WritePipe::new(stderr.writer())));
    let ctx = builder.build();
    for preopen in &spec.preopens {
        let failed = |reason: String| RuntimeError::Preopen {
            host: preopen.host.display().to_string(),
            guest: preopen.guest.clone(),
            reason,
        };
        let dir = wasmi_wasi::Dir::open_ambient_dir(&preopen.host, ambient_authority())
            .map_err(|e| failed(e.to_string()))?;
        let dir: Box<dyn wasmi_wasi::WasiDir> = Box::new(wasmi_wasi::dir::Dir::from_cap_std(dir));
        let dir: Box<dyn wasmi_wasi::WasiDir> = if preopen.writable {
            Box::new(QuotaDir::new(dir, quota.clone()))
        } else {
            Box::new(ReadOnlyDir(dir))
        };
        ctx.push_preopened_dir(dir, &preopen.guest)
            .map_err(|e| failed(e.to_string()))?;
    }
    Ok(ctx)
}
