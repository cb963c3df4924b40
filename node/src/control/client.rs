//! The CLI side of the control socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use super::{
    CONTROL_VERSION, ControlError, Envelope, ErrorCode, MAX_RESPONSE_BYTES, Request, Response,
    SOCKET_NAME,
};

/// Whether a daemon answers on this data dir's socket.
pub fn daemon_running(data_dir: &Path) -> bool {
    UnixStream::connect(data_dir.join(SOCKET_NAME)).is_ok()
}

/// Sends one request and returns the daemon's answer.
pub fn call(data_dir: &Path, request: Request) -> anyhow::Result<serde_json::Value> {
    let path = data_dir.join(SOCKET_NAME);
    let mut stream = UnixStream::connect(&path).map_err(|_| {
        anyhow::anyhow!(
            "no corral daemon is running for {} (start one with `corral up`{})",
            data_dir.display(),
            if data_dir.join("node.key").exists() {
                ""
            } else {
                " after `corral init` or `corral join TOKEN`"
            }
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream
        .write_all(&line_of(request)?)
        .context("cannot send to the daemon")?;
    let mut reader = BufReader::new(stream).take(MAX_RESPONSE_BYTES as u64);
    let mut answer = String::new();
    reader
        .read_line(&mut answer)
        .context("no answer from the daemon")?;
    decode(&answer)
}

/// Sends one request without blocking the caller's thread (for a client
/// that keeps many requests in flight, as `corral serve` does); `wait`
/// bounds the whole exchange.
pub async fn call_async(
    data_dir: &Path,
    request: Request,
    wait: Duration,
) -> anyhow::Result<serde_json::Value> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let stream = tokio::net::UnixStream::connect(data_dir.join(SOCKET_NAME))
            .await
            .map_err(|_| {
                anyhow::anyhow!("no corral daemon is running for {}", data_dir.display())
            })?;
        let (read, mut write) = stream.into_split();
        write
            .write_all(&line_of(request)?)
            .await
            .context("cannot send to the daemon")?;
        let mut reader = tokio::io::BufReader::new(read.take(MAX_RESPONSE_BYTES as u64));
        let mut answer = String::new();
        reader
            .read_line(&mut answer)
            .await
            .context("no answer from the daemon")?;
        decode(&answer)
    };
    tokio::time::timeout(wait, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("the daemon did not answer within {wait:?}"))?
}

/// A request as one line of the wire.
fn line_of(request: Request) -> anyhow::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&Envelope {
        v: CONTROL_VERSION,
        body: request,
    })?;
    line.push(b'\n');
    Ok(line)
}

/// The daemon's answer line: its data, or its coded error.
fn decode(answer: &str) -> anyhow::Result<serde_json::Value> {
    if !answer.ends_with('\n') && answer.len() >= MAX_RESPONSE_BYTES {
        anyhow::bail!("the daemon's answer is larger than {MAX_RESPONSE_BYTES} bytes");
    }
    let response: Response = serde_json::from_str(answer)
        .with_context(|| format!("the daemon's answer is not understood: {}", answer.trim()))?;
    if response.v != CONTROL_VERSION {
        anyhow::bail!(
            "the running daemon speaks control protocol v{}, this corral speaks v{}: \
             restart the daemon with this version (`corral leave`, then `corral up`)",
            response.v,
            CONTROL_VERSION
        );
    }
    if !response.ok {
        // A coded error: callers can `downcast_ref::<ControlError>()`.
        return Err(ControlError::new(
            response.code.unwrap_or(ErrorCode::Internal),
            response
                .error
                .unwrap_or_else(|| "the daemon refused the request".into()),
        )
        .into());
    }
    Ok(response.data.unwrap_or(serde_json::Value::Null))
}
