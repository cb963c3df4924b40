//! A stdin that may block, read by a thread of its own into a bounded
//! buffer, so the guest's reads can wait for it under the run's limits
//! instead of inside a blocking `read`. This process's own stdin has one
//! such stream for the process's life (a reader stuck in `read` cannot be
//! called back, and a second would steal the next run's input).

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use crate::sync::lock;

/// Bytes read ahead of the guest at most.
const BUFFERED: usize = 1024 * 1024;

/// Bytes a reader thread asks for at once.
const CHUNK: usize = 64 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: VecDeque<u8>,
    /// The source said end of file (or failed: the guest sees the end).
    ended: bool,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    /// Bytes or the end arrived.
    filled: Condvar,
    /// The guest took bytes: room to read ahead.
    drained: Condvar,
}

/// A guest's stdin fed by a reader thread; cheap to clone (the clones share
/// the stream).
#[derive(Clone)]
pub struct StdinStream(Arc<Shared>);

impl std::fmt::Debug for StdinStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let buffer = lock(&self.0.buffer);
        f.debug_struct("StdinStream")
            .field("buffered", &buffer.bytes.len())
            .field("ended", &buffer.ended)
            .finish()
    }
}

impl StdinStream {
    /// A stream of what `source` gives, read on a thread of its own until
    /// its end. The thread lives until then, even after the run ends.
    pub fn new(source: impl Read + Send + 'static) -> Self {
        let shared = Arc::new(Shared::default());
        let feeding = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("corral-stdin".into())
            .spawn(move || feed(&feeding, source));
        if let Err(e) = spawned {
            tracing::error!("cannot start a stdin reader thread: {e}");
            lock(&shared.buffer).ended = true;
        }
        Self(shared)
    }

    /// This process's own stdin, one stream for the process's life.
    pub fn process() -> Self {
        static STDIN: OnceLock<StdinStream> = OnceLock::new();
        STDIN
            .get_or_init(|| StdinStream::new(std::io::stdin()))
            .clone()
    }

    /// Whether a read would not wait: bytes are buffered or the end came.
    pub(crate) fn readable(&self) -> bool {
        let buffer = lock(&self.0.buffer);
        buffer.ended || !buffer.bytes.is_empty()
    }

    /// Bytes ready to read and whether the end came after them, if a read
    /// would not wait.
    pub(crate) fn available(&self) -> Option<(u64, bool)> {
        let buffer = lock(&self.0.buffer);
        let len = buffer.bytes.len() as u64;
        (buffer.ended || len > 0).then_some((len, buffer.ended && len == 0))
    }

    /// Waits up to `span` for bytes or the end.
    pub(crate) fn wait_readable(&self, span: Duration) {
        let buffer = lock(&self.0.buffer);
        if buffer.ended || !buffer.bytes.is_empty() {
            return;
        }
        let _unused = self
            .0
            .filled
            .wait_timeout(buffer, span)
            .unwrap_or_else(|e| e.into_inner());
    }

    /// Takes up to `out.len()` buffered bytes without waiting; how many
    /// (none at the end, or if nothing is buffered yet).
    pub(crate) fn take(&self, out: &mut [u8]) -> usize {
        let mut buffer = lock(&self.0.buffer);
        let n = out.len().min(buffer.bytes.len());
        for (slot, byte) in out.iter_mut().zip(buffer.bytes.drain(..n)) {
            *slot = byte;
        }
        drop(buffer);
        if n > 0 {
            self.0.drained.notify_all();
        }
        n
    }
}

fn feed(shared: &Shared, mut source: impl Read) {
    let mut chunk = vec![0u8; CHUNK];
    loop {
        {
            let mut buffer = lock(&shared.buffer);
            while buffer.bytes.len() >= BUFFERED {
                buffer = shared
                    .drained
                    .wait(buffer)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        let read = match source.read(&mut chunk) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!("stdin ends: {e}");
                0
            }
            Ok(n) => n,
        };
        let mut buffer = lock(&shared.buffer);
        match chunk.get(..read) {
            Some(bytes) if !bytes.is_empty() => buffer.bytes.extend(bytes),
            _ => buffer.ended = true,
        }
        let ended = buffer.ended;
        drop(buffer);
        shared.filled.notify_all();
        if ended {
            return;
        }
    }
}
