//! `fd_read` on a stdin that may block: waits under the run's [`Limit`]
//! for bytes (or the end), then fills the guest's buffers with what is
//! there, as a pipe's read does. Reads of other files, or with a bad
//! pointer, are left to the WASI implementation.
//!
//! An iovec is 8 bytes: `buf: u32` at 0, `len: u32` at 4 (align 4); the
//! count read is a `u32`.
//!
//! [`Limit`]: super::Limit

use super::{Halt, HostState};

/// A read from stdin answered here.
#[derive(Debug)]
pub(crate) struct Read {
    /// (offset, length) of each buffer, checked to lie in memory.
    buffers: Vec<(usize, usize)>,
    nread: usize,
}

/// More buffers than this in one read are left to WASI (which refuses
/// them the way it does).
const MAX_IOVECS: u32 = 1024;

impl Read {
    /// Reads the call's buffers if it is one to answer here: `fd` is 0 and
    /// stdin is a stream. None: leave it to WASI.
    pub(crate) fn parse(
        memory: &[u8],
        (fd, iovs, count, nread): (u32, u32, u32, u32),
        host: &HostState,
    ) -> Option<Self> {
        if host.stdin_at(fd).is_none() || count > MAX_IOVECS {
            return None;
        }
        let [iovs, count, nread] = [iovs, count, nread].map(|v| v as usize);
        let fits = |at: usize, len: usize| at.checked_add(len).is_some_and(|e| e <= memory.len());
        if !iovs.is_multiple_of(4)
            || !nread.is_multiple_of(4)
            || !fits(iovs, count * 8)
            || !fits(nread, 4)
        {
            return None;
        }
        let buffers = (0..count)
            .map(|i| {
                let at = iovs + i * 8;
                let word = |at: usize| {
                    let bytes: [u8; 4] = memory.get(at..at + 4)?.try_into().ok()?;
                    Some(u32::from_le_bytes(bytes) as usize)
                };
                let (buf, len) = (word(at)?, word(at + 4)?);
                fits(buf, len).then_some((buf, len))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { buffers, nread })
    }

    /// Waits until stdin has bytes or has ended (or the run must end), then
    /// fills the buffers in order with what is there and writes the count.
    pub(crate) fn answer(&self, memory: &mut [u8], host: &HostState) -> Result<(), Halt> {
        let Some(stdin) = &host.stdin else {
            return Ok(());
        };
        let wanted = self.buffers.iter().any(|&(_, len)| len > 0);
        if wanted {
            host.limit.wait(None, Some(stdin))?;
        }
        let mut total = 0usize;
        for &(at, len) in &self.buffers {
            let n = stdin.take(&mut memory[at..at + len]);
            total += n;
            if n < len {
                break;
            }
        }
        let total = u32::try_from(total).unwrap_or(u32::MAX);
        memory[self.nread..self.nread + 4].copy_from_slice(&total.to_le_bytes());
        Ok(())
    }
}
