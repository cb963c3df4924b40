//! `poll_oneoff` when it could wait: every subscription a clock (realtime or
//! monotonic, relative or absolute) or a read from a stdin that can block.
//! Those are answered here, waiting under the run's [`Limit`]; anything
//! else (no subscription, a bad pointer, another clock, any other file,
//! a write) is left to the WASI implementation, which answers it at once
//! and exactly as before (files and stdout/stderr are always ready). On
//! wasmi, whose WASI refuses to poll its pipes (EINVAL), reads of stdin and
//! writes to stdout and stderr are answered here too: always ready, as on
//! wasmtime.
//!
//! Layouts (WASI preview 1, little endian): a subscription is 48 bytes,
//! `userdata: u64` at 0, its tag `u8` at 8 (0 clock, 1 fd_read, 2
//! fd_write), then for a clock `id: u32` at 16, `timeout: u64` at 24,
//! `precision: u64` at 32, `flags: u16` at 40 (1: absolute), for a file
//! `fd: u32` at 16. An event is 32 bytes: `userdata: u64` at 0, `error:
//! u16` at 8, `type: u8` at 10, `nbytes: u64` at 16, `flags: u16` at 24
//! (1: hang-up).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::stdin::StdinStream;
use super::{Halt, HostState};

const SUBSCRIPTION: usize = 48;
const EVENT: usize = 32;
const TAG_CLOCK: u8 = 0;
const TAG_FD_READ: u8 = 1;
const TAG_FD_WRITE: u8 = 2;
const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const ABSTIME: u16 = 1;
const HANGUP: u16 = 1;

/// More subscriptions than this in one call are left to the WASI
/// implementation (no real program waits on that many clocks).
const MAX_SUBSCRIPTIONS: u32 = 4096;

/// One subscription answered here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// A clock firing at this instant (none: too far to reach).
    Clock {
        userdata: u64,
        wake: Option<Instant>,
    },
    /// A read from the guest's stdin stream.
    Stdin { userdata: u64 },
    /// A read or write (`kind`, the tag) on stdio that never waits.
    Ready { userdata: u64, kind: u8 },
}

/// A `poll_oneoff` call answered here: its subscriptions and where its
/// events and their count go.
#[derive(Debug)]
pub(crate) struct Poll {
    subs: Vec<Sub>,
    events: usize,
    nevents: usize,
}

fn bytes<const N: usize>(memory: &[u8], at: usize) -> Option<[u8; N]> {
    memory.get(at..at.checked_add(N)?)?.try_into().ok()
}

fn u16_at(memory: &[u8], at: usize) -> Option<u16> {
    bytes(memory, at).map(u16::from_le_bytes)
}

fn u32_at(memory: &[u8], at: usize) -> Option<u32> {
    bytes(memory, at).map(u32::from_le_bytes)
}

fn u64_at(memory: &[u8], at: usize) -> Option<u64> {
    bytes(memory, at).map(u64::from_le_bytes)
}

/// Whether `count` records of `size` bytes at `at` (aligned to `align`)
/// lie in memory.
fn fits(memory: &[u8], at: usize, count: usize, size: usize, align: usize) -> bool {
    at.is_multiple_of(align)
        && count
            .checked_mul(size)
            .and_then(|len| at.checked_add(len))
            .is_some_and(|end| end <= memory.len())
}

impl Poll {
    /// Reads a call's subscriptions if it is one to answer here (the
    /// arguments as the guest passed them); none: leave it to WASI.
    pub(crate) fn parse(
        memory: &[u8],
        (subs, events, count, nevents): (u32, u32, u32, u32),
        host: &HostState,
    ) -> Option<Self> {
        if count == 0 || count > MAX_SUBSCRIPTIONS {
            return None;
        }
        let [subs, events, n, nevents] = [subs, events, count, nevents].map(|v| v as usize);
        if !fits(memory, subs, n, SUBSCRIPTION, 8)
            || !fits(memory, events, n, EVENT, 8)
            || !fits(memory, nevents, 1, 4, 4)
        {
            return None;
        }
        let now = Instant::now();
        let parsed = (0..n)
            .map(|i| {
                let at = subs + i * SUBSCRIPTION;
                let userdata = u64_at(memory, at)?;
                match *memory.get(at + 8)? {
                    TAG_CLOCK => {
                        let id = u32_at(memory, at + 16)?;
                        let timeout = u64_at(memory, at + 24)?;
                        let flags = u16_at(memory, at + 40)?;
                        if flags & !ABSTIME != 0 {
                            return None;
                        }
                        let nanos = Duration::from_nanos(timeout);
                        let wake = match (id, flags & ABSTIME != 0) {
                            (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => now.checked_add(nanos),
                            (CLOCK_MONOTONIC, true) => host.monotonic_origin.checked_add(nanos),
                            (CLOCK_REALTIME, true) => {
                                let left = (UNIX_EPOCH + nanos)
                                    .duration_since(SystemTime::now())
                                    .unwrap_or(Duration::ZERO);
                                now.checked_add(left)
                            }
                            _ => return None,
                        };
                        Some(Sub::Clock { userdata, wake })
                    }
                    TAG_FD_READ if host.stdin_at(u32_at(memory, at + 16)?).is_some() => {
                        Some(Sub::Stdin { userdata })
                    }
                    TAG_FD_READ if u32_at(memory, at + 16)? == 0 => {
                        if host.ready_stdio && host.stdin.is_none() {
                            Some(Sub::Ready {
                                userdata,
                                kind: TAG_FD_READ,
                            })
                        } else {
                            None
                        }
                    }
                    TAG_FD_WRITE
                        if host.ready_stdio && matches!(u32_at(memory, at + 16)?, 1 | 2) =>
                    {
                        Some(Sub::Ready {
                            userdata,
                            kind: TAG_FD_WRITE,
                        })
                    }
                    _ => None,
                }
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            subs: parsed,
            events,
            nevents,
        })
    }

    /// Waits for the first subscription to be ready (or the run to end),
    /// then writes the events of all that are and their count.
    pub(crate) fn answer(&self, memory: &mut [u8], host: &HostState) -> Result<(), Halt> {
        let wake = self
            .subs
            .iter()
            .filter_map(|s| match s {
                Sub::Clock { wake, .. } => *wake,
                Sub::Stdin { .. } => None,
                Sub::Ready { .. } => Some(Instant::now()),
            })
            .min();
        let stdin = host
            .stdin
            .as_ref()
            .filter(|_| self.subs.iter().any(|s| matches!(s, Sub::Stdin { .. })));
        host.limit.wait(wake, stdin)?;
        let now = Instant::now();
        let mut count = 0usize;
        for sub in &self.subs {
            let event = match *sub {
                Sub::Clock { userdata, wake } if wake.is_some_and(|w| now >= w) => {
                    Event::clock(userdata)
                }
                Sub::Stdin { userdata } => match stdin.and_then(StdinStream::available) {
                    Some((nbytes, hangup)) => Event::stdin(userdata, nbytes, hangup),
                    None => continue,
                },
                Sub::Ready { userdata, kind } => Event {
                    userdata,
                    kind,
                    nbytes: 1,
                    flags: 0,
                },
                Sub::Clock { .. } => continue,
            };
            event.write(memory, self.events + count * EVENT);
            count += 1;
        }
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        memory[self.nevents..self.nevents + 4].copy_from_slice(&count.to_le_bytes());
        Ok(())
    }
}

/// One event written back.
struct Event {
    userdata: u64,
    kind: u8,
    nbytes: u64,
    flags: u16,
}

impl Event {
    fn clock(userdata: u64) -> Self {
        Self {
            userdata,
            kind: TAG_CLOCK,
            nbytes: 0,
            flags: 0,
        }
    }

    fn stdin(userdata: u64, nbytes: u64, hangup: bool) -> Self {
        Self {
            userdata,
            kind: TAG_FD_READ,
            nbytes,
            flags: if hangup { HANGUP } else { 0 },
        }
    }

    /// Writes it at `at`, which [`Poll::parse`] checked lies in memory.
    fn write(&self, memory: &mut [u8], at: usize) {
        let out = &mut memory[at..at + EVENT];
        out.fill(0);
        out[0..8].copy_from_slice(&self.userdata.to_le_bytes());
        out[10] = self.kind;
        out[16..24].copy_from_slice(&self.nbytes.to_le_bytes());
        out[24..26].copy_from_slice(&self.flags.to_le_bytes());
    }
}
