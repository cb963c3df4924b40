//! Capped capture of a guest's stdout or stderr, shared by both engines.
//!
//! The sink keeps the first `cap` bytes. A write that would pass the cap keeps
//! what fits, marks the sink as overflowed and fails, which ends the run with
//! the `output_limit` reason on either engine: a module flooding its output
//! cannot fill the host's memory or disk.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// Where a pass-through sink echoes what the guest writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// Keep only the capture.
    None,
    /// Also write to this process's stdout.
    Stdout,
    /// Also write to this process's stderr.
    Stderr,
}

#[derive(Debug)]
struct State {
    buf: Vec<u8>,
    cap: usize,
    overflowed: bool,
    echo: Echo,
}

/// A cheap-to-clone handle on one captured stream.
#[derive(Clone, Debug)]
pub struct OutputSink {
    state: Arc<Mutex<State>>,
}

/// The guest wrote past the output cap.
#[derive(Debug, thiserror::Error)]
#[error("output limit of {cap} bytes reached")]
pub struct Overflow {
    /// The cap in bytes.
    pub cap: usize,
}

impl OutputSink {
    /// A sink keeping at most `cap` bytes.
    pub fn new(cap: u64, echo: Echo) -> Self {
        let cap = usize::try_from(cap).unwrap_or(usize::MAX);
        Self {
            state: Arc::new(Mutex::new(State {
                buf: Vec::new(),
                cap,
                overflowed: false,
                echo,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another writer panicked mid-append; the
        // bytes are still a valid prefix of the stream.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `bytes`, or as much as fits before the cap.
    pub fn write(&self, bytes: &[u8]) -> Result<(), Overflow> {
        let mut state = self.lock();
        if state.overflowed {
            return Err(Overflow { cap: state.cap });
        }
        let room = state.cap - state.buf.len();
        let (kept, over) = if bytes.len() > room {
            (&bytes[..room], true)
        } else {
            (bytes, false)
        };
        state.buf.extend_from_slice(kept);
        // Echo failures (a closed terminal, a full pipe) must not kill the
        // task: the capture is the record of what it wrote.
        let _ = match state.echo {
            Echo::None => Ok(()),
            Echo::Stdout => echo(io::stdout().lock(), kept),
            Echo::Stderr => echo(io::stderr().lock(), kept),
        };
        if over {
            state.overflowed = true;
            return Err(Overflow { cap: state.cap });
        }
        Ok(())
    }

    /// Whether the guest tried to write past the cap.
    pub fn overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// A copy of at most `max` captured bytes from offset `at` (empty past
    /// the end).
    pub fn copy_from(&self, at: usize, max: usize) -> Vec<u8> {
        let state = self.lock();
        let start = at.min(state.buf.len());
        let end = start.saturating_add(max).min(state.buf.len());
        state.buf[start..end].to_vec()
    }

    /// Takes the captured bytes out of the sink.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut self.lock().buf)
    }

    /// The stdout and stderr sinks of one run, echoing when it passes
    /// through, and shown to the run's [`LiveOutput`] if it has one.
    pub(crate) fn pair(spec: &super::RunSpec) -> (Self, Self) {
        let cap = spec.limits.output_bytes;
        let pair = if spec.passthrough {
            (Self::new(cap, Echo::Stdout), Self::new(cap, Echo::Stderr))
        } else {
            (Self::new(cap, Echo::None), Self::new(cap, Echo::None))
        };
        if let Some(live) = &spec.live {
            *live.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(pair.clone());
        }
        pair
    }

    /// An `io::Write` view, for engines whose WASI layer takes a writer.
    pub fn writer(&self) -> SinkWriter {
        SinkWriter(self.clone())
    }
}

/// A window on a run's stdout and stderr while it runs, for another thread
/// to pass on what the guest writes as it writes it. Empty until the run
/// starts; the captures are the run's own, so this costs the guest nothing.
#[derive(Clone, Debug, Default)]
pub struct LiveOutput(Arc<Mutex<Option<(OutputSink, OutputSink)>>>);

impl LiveOutput {
    /// At most `max` bytes of stdout from `stdout_at` and of stderr from
    /// `stderr_at` (both empty before the run starts).
    pub fn read(&self, stdout_at: usize, stderr_at: usize, max: usize) -> (Vec<u8>, Vec<u8>) {
        match &*self.0.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((stdout, stderr)) => (
                stdout.copy_from(stdout_at, max),
                stderr.copy_from(stderr_at, max),
            ),
            None => (Vec::new(), Vec::new()),
        }
    }
}

fn echo(mut out: impl Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

/// `io::Write` over an [`OutputSink`]. Passing the cap is an error of kind
/// `Other`, which wasi-common turns into a trap rather than an errno, so a
/// guest cannot keep running past the cap by ignoring write errors.
#[derive(Debug)]
pub struct SinkWriter(OutputSink);

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_exactly_the_cap_and_reports_overflow() {
        let sink = OutputSink::new(10, Echo::None);
        assert!(sink.write(b"hello").is_ok());
        assert!(!sink.overflowed());
        assert!(sink.write(b" world!").is_err());
        assert!(sink.overflowed());
        assert!(sink.write(b"more").is_err(), "stays closed after overflow");
        assert_eq!(sink.take(), b"hello worl");
    }

    #[test]
    fn a_write_that_exactly_fills_the_cap_is_fine() {
        let sink = OutputSink::new(4, Echo::None);
        assert!(sink.write(b"abcd").is_ok());
        assert!(!sink.overflowed());
        assert!(sink.write(b"e").is_err());
    }

    #[test]
    fn copies_from_an_offset_within_bounds() {
        let sink = OutputSink::new(100, Echo::None);
        sink.write(b"hello world").expect("fits");
        assert_eq!(sink.copy_from(6, 3), b"wor");
        assert_eq!(sink.copy_from(6, 100), b"world");
        assert!(sink.copy_from(11, 4).is_empty());
        assert!(sink.copy_from(50, 4).is_empty(), "past the end");
    }

    #[test]
    fn writer_errors_are_of_kind_other() {
        let sink = OutputSink::new(1, Echo::None);
        let err = sink.writer().write(b"ab").expect_err("past the cap");
        assert_eq!(err.kind(), io::ErrorKind::Other);
    }
}
