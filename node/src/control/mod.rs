//! The control socket between the CLI and the daemon (`$DATA_DIR/corral.sock`,
//! mode 0600): one JSON request per line, one JSON response per line, each
//! carrying the control protocol version so a CLI meeting a daemon of another
//! version says so clearly.

pub mod client;
pub mod server;
pub mod watch;
pub mod wire;

pub use wire::{
    CONTROL_VERSION, ControlError, Envelope, ErrorCode, MAX_LINE_BYTES, MAX_RESPONSE_BYTES,
    Request, Response, SOCKET_NAME, StreamedOutput, SubmitSpec,
};
