//! wasmtime-wasi's fd numbering over wasi-common's table: wasmtime gives a
//! new fd the highest closed number still free, else one past the highest
//! number ever used; wasi-common's table counts up and never gives a number
//! back. [`FdNumbers`] keeps wasmtime's free numbers for a run, and each new
//! fd wasi-common opens is moved to the number wasmtime would have given it,
//! so the table holds exactly wasmtime's numbers.

use std::collections::BTreeSet;

use wasmi_wasi::WasiCtx;

/// The fd numbers of a run that wasmtime would give out next.
#[derive(Debug)]
pub(in crate::runtime::interp) struct FdNumbers {
    /// Numbers closed (or moved away from) and not given out again.
    free: BTreeSet<u32>,
    /// One past the highest number ever used: every number below it is
    /// either open or in `free`.
    next: u32,
}

/// Why a new fd could not take wasmtime's number.
#[derive(Debug, thiserror::Error)]
pub(in crate::runtime::interp) enum NumberError {
    /// Every fd number is taken.
    #[error("no fd number is left")]
    Exhausted,
    /// The table would not move the new fd.
    #[error("cannot move fd {got} to {want}: {reason}")]
    Move {
        /// wasi-common's number.
        got: u32,
        /// wasmtime's number.
        want: u32,
        /// The table's error.
        reason: String,
    },
}

impl FdNumbers {
    /// The numbering of a context just built: its stdio and preopens hold
    /// 0, 1, 2, ... one after the other, as in wasmtime.
    pub(in crate::runtime::interp) fn new(ctx: &WasiCtx) -> Self {
        let table = ctx.table();
        let next = (0..u32::MAX)
            .find(|&fd| !table.contains_key(fd))
            .unwrap_or(u32::MAX);
        Self {
            free: BTreeSet::new(),
            next,
        }
    }

    /// `fd` was closed: its number may be given out again.
    pub(in crate::runtime::interp) fn closed(&mut self, fd: u32) {
        if fd < self.next {
            self.free.insert(fd);
        }
    }

    /// `from` was renumbered to `to` (which was open, and is again): `from`
    /// is free.
    pub(in crate::runtime::interp) fn renumbered(&mut self, from: u32, to: u32) {
        if from != to {
            self.closed(from);
        }
    }

    /// wasi-common put a new fd at `got`: moves it to the number wasmtime
    /// gives (the highest free one, else the next unused) and returns it.
    pub(in crate::runtime::interp) fn opened(
        &mut self,
        ctx: &WasiCtx,
        got: u32,
    ) -> Result<u32, NumberError> {
        let want = match self.free.pop_last() {
            Some(fd) => fd,
            None => {
                let fd = self.next;
                self.next = fd.checked_add(1).ok_or(NumberError::Exhausted)?;
                fd
            }
        };
        if want != got {
            // `want` is neither open nor a number wasi-common holds: every
            // fd in the table carries a number of wasmtime's.
            ctx.table()
                .renumber(got, want)
                .map_err(|e| NumberError::Move {
                    got,
                    want,
                    reason: e.to_string(),
                })?;
        }
        Ok(want)
    }
}
