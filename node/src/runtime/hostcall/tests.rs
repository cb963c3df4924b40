//! The host calls' own logic without an engine: which `poll_oneoff` and
//! `fd_read` calls are answered here, and waits under a limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::poll::Poll;
use super::read::Read;
use super::stdin::StdinStream;
use super::*;

fn host(stdin: Option<StdinStream>, deadline: Duration) -> HostState {
    HostState {
        limit: Limit {
            deadline: Instant::now() + deadline,
            stop: Some(Arc::new(StopSignal::new())),
        },
        stdin,
        monotonic_origin: Instant::now(),
        ready_stdio: false,
        stdin_fd: Some(0),
    }
}

/// A memory with one subscription at 0: tag, clock id or fd, timeout, flags.
fn memory_with(tag: u8, id: u32, timeout: u64, flags: u16) -> Vec<u8> {
    let mut memory = vec![0u8; 4096];
    memory[0..8].copy_from_slice(&7u64.to_le_bytes());
    memory[8] = tag;
    memory[16..20].copy_from_slice(&id.to_le_bytes());
    memory[24..32].copy_from_slice(&timeout.to_le_bytes());
    memory[40..42].copy_from_slice(&flags.to_le_bytes());
    memory
}

#[test]
fn only_calls_that_could_wait_are_answered_here() {
    let plain = host(None, Duration::from_secs(10));
    let clock = memory_with(0, 1, 1_000, 0);
    assert!(Poll::parse(&clock, (0, 1024, 1, 2048), &plain).is_some());
    // No subscription, misaligned or out of bounds: WASI's errors.
    assert!(Poll::parse(&clock, (0, 1024, 0, 2048), &plain).is_none());
    assert!(Poll::parse(&clock, (4, 1024, 1, 2048), &plain).is_none());
    assert!(Poll::parse(&clock, (0, 4090, 1, 2048), &plain).is_none());
    assert!(Poll::parse(&clock, (0, 1024, 1, 4094), &plain).is_none());
    // A CPU-time clock, unknown flags, a file, a write: WASI's answer.
    assert!(Poll::parse(&memory_with(0, 2, 1_000, 0), (0, 1024, 1, 2048), &plain).is_none());
    assert!(Poll::parse(&memory_with(0, 1, 1_000, 2), (0, 1024, 1, 2048), &plain).is_none());
    assert!(Poll::parse(&memory_with(1, 3, 0, 0), (0, 1024, 1, 2048), &plain).is_none());
    assert!(Poll::parse(&memory_with(2, 1, 0, 0), (0, 1024, 1, 2048), &plain).is_none());
    // A read from stdin only when it is a stream.
    let stdin = memory_with(1, 0, 0, 0);
    assert!(Poll::parse(&stdin, (0, 1024, 1, 2048), &plain).is_none());
    let streamed = host(
        Some(StdinStream::new(std::io::empty())),
        Duration::from_secs(10),
    );
    assert!(Poll::parse(&stdin, (0, 1024, 1, 2048), &streamed).is_some());
    let iov = [0u8; 64];
    assert!(Read::parse(&iov, (0, 0, 1, 16), &plain).is_none());
    assert!(Read::parse(&iov, (1, 0, 1, 16), &streamed).is_none());
    assert!(Read::parse(&iov, (0, 0, 1, 16), &streamed).is_some());
    assert!(Read::parse(&iov, (0, 0, 1, 62), &streamed).is_none());
}

#[test]
fn a_clock_event_is_written_with_its_userdata() {
    let state = host(None, Duration::from_secs(10));
    let mut memory = memory_with(0, 1, 1_000_000, 0);
    let call = Poll::parse(&memory, (0, 1024, 1, 2048), &state).expect("answered here");
    call.answer(&mut memory, &state).expect("no stop");
    assert_eq!(memory[2048..2052], 1u32.to_le_bytes());
    assert_eq!(memory[1024..1032], 7u64.to_le_bytes());
    assert_eq!(memory[1034], 0, "type clock");
}

#[test]
fn a_wait_ends_at_the_deadline_or_the_stop_signal() {
    let state = host(None, Duration::from_millis(50));
    let far = Instant::now() + Duration::from_secs(60);
    assert_eq!(state.limit.wait(Some(far), None), Err(Halt::Timeout));
    let state = host(None, Duration::from_secs(60));
    let stop = state.limit.stop.clone().expect("a signal");
    let giver = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        stop.stop(StopReason::HandedBack);
    });
    let started = Instant::now();
    assert_eq!(
        state.limit.wait(Some(far), None),
        Err(Halt::Stopped(StopReason::HandedBack))
    );
    giver.join().expect("giver");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn the_stdin_stream_follows_closes_and_renumbers_of_its_fd() {
    let stream = StdinStream::new(std::io::empty());
    let mut h = host(Some(stream), Duration::from_secs(1));
    assert!(h.stdin_at(0).is_some());
    h.fd_renumbered(0, 7);
    assert!(
        h.stdin_at(0).is_none() && h.stdin_at(7).is_some(),
        "moved with it"
    );
    h.fd_renumbered(7, 7);
    assert!(h.stdin_at(7).is_some(), "onto itself changes nothing");
    h.fd_renumbered(4, 7);
    assert!(h.stdin_at(7).is_none(), "replaced by another fd");
    let mut h = host(
        Some(StdinStream::new(std::io::empty())),
        Duration::from_secs(1),
    );
    h.fd_closed(3);
    assert!(h.stdin_at(0).is_some());
    h.fd_closed(0);
    assert!(h.stdin_at(0).is_none(), "closed");
}
