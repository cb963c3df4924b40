//! Tests of gathered flushes, against a socket that records each write it
//! is given (a `sendto` each, on a real one).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Wake, Waker};

use super::*;

/// A socket that records writes and flushes, and may refuse to take more.
#[derive(Default)]
struct Recorder {
    writes: Vec<Vec<u8>>,
    flushes: usize,
    full: bool,
    zero: bool,
    reads: usize,
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.full {
            return Poll::Pending;
        }
        if self.zero {
            return Poll::Ready(Ok(0));
        }
        self.writes.push(buf.to_vec());
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.flushes += 1;
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Recorder {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        _: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.reads += 1;
        Poll::Pending
    }
}

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn waker() -> (Arc<Count>, Waker) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

fn write(s: &mut Coalesce<Recorder>, cx: &mut Context<'_>, bytes: &[u8]) {
    assert!(matches!(Pin::new(s).poll_write(cx, bytes), Poll::Ready(Ok(n)) if n == bytes.len()));
}

fn flush(s: &mut Coalesce<Recorder>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
    Pin::new(s).poll_flush(cx)
}

#[test]
fn frames_flushed_one_by_one_leave_in_one_write_on_the_next_turn() {
    let (woken, w) = waker();
    let mut cx = Context::from_waker(&w);
    let mut s = Coalesce::new(Recorder::default());
    for frame in [&b"open+header"[..], b"message", b"end"] {
        write(&mut s, &mut cx, frame);
        assert!(flush(&mut s, &mut cx).is_ready());
    }
    assert!(s.inner.writes.is_empty(), "nothing sent within the turn");
    assert!(
        woken.0.load(Ordering::SeqCst) > 0,
        "the task is asked to come round"
    );
    // The next turn's first flush, nothing written since: one write.
    assert!(matches!(flush(&mut s, &mut cx), Poll::Ready(Ok(()))));
    assert_eq!(s.inner.writes, vec![b"open+headermessageend".to_vec()]);
    assert_eq!(s.inner.flushes, 1);
}

#[test]
fn a_read_sends_what_is_held_before_it_waits() {
    let (_, w) = waker();
    let mut cx = Context::from_waker(&w);
    let mut s = Coalesce::new(Recorder::default());
    write(&mut s, &mut cx, b"request");
    assert!(flush(&mut s, &mut cx).is_ready());
    let mut buf = [0u8; 16];
    assert!(Pin::new(&mut s).poll_read(&mut cx, &mut buf).is_pending());
    assert_eq!(s.inner.writes, vec![b"request".to_vec()]);
    assert_eq!(s.inner.reads, 1);
}

#[test]
fn flushes_are_put_off_a_bounded_number_of_times_in_a_row() {
    let (_, w) = waker();
    let mut cx = Context::from_waker(&w);
    let mut s = Coalesce::new(Recorder::default());
    for _ in 0..MAX_PUT_OFF {
        write(&mut s, &mut cx, b"x");
        assert!(flush(&mut s, &mut cx).is_ready());
    }
    assert!(s.inner.writes.is_empty());
    write(&mut s, &mut cx, b"y");
    assert!(flush(&mut s, &mut cx).is_ready());
    assert_eq!(
        s.inner.writes.concat(),
        [b"x".repeat(MAX_PUT_OFF as usize), b"y".to_vec()].concat()
    );
}

#[test]
fn a_big_write_goes_out_behind_what_is_held_and_close_sends_everything() {
    let (_, w) = waker();
    let mut cx = Context::from_waker(&w);
    let mut s = Coalesce::new(Recorder::default());
    write(&mut s, &mut cx, b"small");
    let big = vec![7u8; MAX_HELD];
    write(&mut s, &mut cx, &big);
    assert_eq!(s.inner.writes, vec![b"small".to_vec(), big]);
    write(&mut s, &mut cx, b"tail");
    assert!(Pin::new(&mut s).poll_close(&mut cx).is_ready());
    assert_eq!(s.inner.writes.last().map(Vec::as_slice), Some(&b"tail"[..]));
}

#[test]
fn a_socket_that_takes_nothing_is_an_error_and_a_full_one_keeps_the_bytes() {
    let (_, w) = waker();
    let mut cx = Context::from_waker(&w);
    let mut s = Coalesce::new(Recorder {
        full: true,
        ..Recorder::default()
    });
    write(&mut s, &mut cx, b"kept");
    assert!(flush(&mut s, &mut cx).is_ready(), "put off");
    assert!(flush(&mut s, &mut cx).is_pending(), "the socket is full");
    s.inner.full = false;
    assert!(matches!(flush(&mut s, &mut cx), Poll::Ready(Ok(()))));
    assert_eq!(s.inner.writes, vec![b"kept".to_vec()]);

    s.inner.zero = true;
    write(&mut s, &mut cx, b"lost");
    assert!(flush(&mut s, &mut cx).is_ready(), "put off");
    match flush(&mut s, &mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.kind(), io::ErrorKind::WriteZero),
        other => panic!("{other:?}"),
    }
}
