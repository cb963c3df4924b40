//! The daemon side of the control socket: accepts connections (a bounded
//! number at once), reads one request line, forwards it to the event loop
//! with a oneshot for the answer, writes the answer back.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::wire::parse_request;
use super::{CONTROL_VERSION, ControlError, MAX_LINE_BYTES, Request, Response, SOCKET_NAME};

/// The answer: the reply's data, or a coded error.
pub type Answer = Result<serde_json::Value, ControlError>;

/// A request with the channel its answer goes back on.
pub type Call = (Request, oneshot::Sender<Answer>);

/// Most control connections served at once. A client that holds many
/// long polls at once (`corral serve`: one `Watch` per request in flight,
/// at most [`MAX_CONNECTIONS`] / 2 of them) must leave room for the rest.
pub const MAX_CONNECTIONS: usize = 128;

/// Binds the socket (mode 0600) and serves it until the process ends.
pub fn serve(data_dir: &Path, calls: mpsc::Sender<Call>) -> anyhow::Result<()> {
    let path = data_dir.join(SOCKET_NAME);
    // A socket file left by a crashed daemon: nothing answers on it.
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            anyhow::bail!(
                "a corral daemon is already running for {}",
                data_dir.display()
            );
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove stale {}", path.display()))?;
    }
    let listener =
        UnixListener::bind(&path).with_context(|| format!("cannot bind {}", path.display()))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let calls = calls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read.take(MAX_LINE_BYTES as u64));
                let mut line = String::new();
                if reader.read_line(&mut line).await.is_err() {
                    return;
                }
                let response = answer(&line, &calls).await;
                let mut bytes = serde_json::to_vec(&response).unwrap_or_default();
                bytes.push(b'\n');
                let _ = write.write_all(&bytes).await;
            });
        }
    });
    Ok(())
}

pub(crate) async fn answer(line: &str, calls: &mpsc::Sender<Call>) -> Response {
    let fail = |error: ControlError| Response {
        v: CONTROL_VERSION,
        ok: false,
        data: None,
        error: Some(error.message),
        code: Some(error.code),
    };
    let request = match parse_request(line) {
        Ok(request) => request,
        Err(error) => return fail(error),
    };
    let (tx, rx) = oneshot::channel();
    if calls.send((request, tx)).await.is_err() {
        return fail(ControlError::unavailable("the daemon is shutting down"));
    }
    match rx.await {
        Ok(Ok(data)) => Response {
            v: CONTROL_VERSION,
            ok: true,
            data: Some(data),
            error: None,
            code: None,
        },
        Ok(Err(error)) => fail(error),
        Err(_) => fail(ControlError::unavailable("the daemon is shutting down")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::ErrorCode;

    #[tokio::test]
    async fn other_versions_and_garbage_get_a_clear_refusal() {
        let (tx, _rx) = mpsc::channel(1);
        let r = answer(r#"{"v":2,"cmd":"status"}"#, &tx).await;
        assert!(!r.ok);
        assert_eq!(r.code, Some(ErrorCode::Version));
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("v1") && e.contains("v2")),
            "{r:?}"
        );
        let r = answer("hello", &tx).await;
        assert_eq!(r.code, Some(ErrorCode::BadRequest));
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("not a control request")),
            "{r:?}"
        );
        let r = answer(r#"{"v":1,"cmd":"explode"}"#, &tx).await;
        assert!(
            r.error
                .as_deref()
                .is_some_and(|e| e.contains("bad control request")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_request_reaches_the_daemon_and_its_answer_comes_back() {
        let (tx, mut rx) = mpsc::channel::<Call>(1);
        tokio::spawn(async move {
            if let Some((request, reply)) = rx.recv().await {
                let _ = reply.send(Ok(serde_json::json!({ "echo": format!("{request:?}") })));
            }
        });
        let r = answer(r#"{"v":1,"cmd":"peers"}"#, &tx).await;
        assert!(r.ok, "{r:?}");
        assert_eq!(r.data.expect("data")["echo"], "Peers");
    }
}
