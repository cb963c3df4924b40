//! The page's actions beyond cancel: upload a blob (a module or an input
//! file), submit a job of uploaded blobs, trust or distrust a submitter,
//! change this device's share policy. Each becomes the control request the
//! CLI sends (`corral run`, `corral trust`); the uploads go into the blob
//! store as `corral run` puts them there. Bodies are bounded; each refusal
//! is JSON `{error, code}`.

use corral_protocol::hash::ContentHash;
use corral_protocol::ids::PeerKey;
use corral_protocol::manifest::{EngineReq, Limits, MAX_TASKS};
use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::header;
use hyper::{Request as HttpRequest, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::mpsc;

use super::Shared;
use super::reply::{Body, ask, call, control_error, error, json_response, read_body};
use crate::blobs::BlobWriter;
use crate::capacity::Share;
use crate::control::Request;
use crate::control::wire::SubmitSpec;

/// Largest upload: a module or one input file. Below the protocol's bound
/// on modules; a bigger one is shipped with `corral run`.
pub(super) const MAX_UPLOAD_BYTES: u64 = 64 * 1024 * 1024;
/// Chunks of an upload on their way to the disk, at most.
const UPLOAD_QUEUE: usize = 8;
/// Longest file name of a module or an input.
const MAX_NAME_BYTES: usize = 255;

/// `POST /api/blobs`: the body, stored; answers `{blob, size}`.
pub(super) async fn upload(shared: &Shared, request: HttpRequest<Incoming>) -> Response<Body> {
    let too_big = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            &format!(
                "an upload may hold at most {} MiB; ship bigger files with `corral run`",
                MAX_UPLOAD_BYTES / (1024 * 1024)
            ),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD_BYTES) {
        return too_big();
    }
    // The disk is written off the runtime (its one thread is the loop's).
    let (chunks, mut arriving) = mpsc::channel::<Bytes>(UPLOAD_QUEUE);
    let blobs = shared.blobs.clone();
    let writer = tokio::task::spawn_blocking(move || -> anyhow::Result<BlobWriter> {
        let mut writer = blobs.writer()?;
        while let Some(chunk) = arriving.blocking_recv() {
            writer.write(&chunk)?;
        }
        Ok(writer)
    });
    let mut body = request.into_body();
    let mut received = 0u64;
    let mut refusal = None;
    while let Some(frame) = body.frame().await {
        let data = match frame.map(|f| f.into_data()) {
            Ok(Ok(data)) => data,
            Ok(Err(_)) => continue, // trailers
            Err(e) => {
                refusal = Some(error(
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    &format!("the upload broke off: {e}"),
                ));
                break;
            }
        };
        received += data.len() as u64;
        if received > MAX_UPLOAD_BYTES {
            refusal = Some(too_big());
            break;
        }
        if chunks.send(data).await.is_err() {
            break; // the writer failed: its error is answered below
        }
    }
    drop(chunks);
    let written = writer.await;
    // A refused upload's temporary file goes with its writer.
    if let Some(refusal) = refusal {
        return refusal;
    }
    let writer = match written {
        Ok(Ok(writer)) => writer,
        Ok(Err(e)) => return internal(&format!("cannot store the upload: {e:#}")),
        Err(_) => return internal("the upload's writer stopped"),
    };
    if writer.is_empty() {
        return bad_request("the upload is empty");
    }
    let blobs = shared.blobs.clone();
    let stored = tokio::task::spawn_blocking(move || -> anyhow::Result<(ContentHash, u64)> {
        let (hash, size) = (writer.hash(), writer.len());
        if !blobs.is_intact(&hash) {
            writer.commit(&blobs, &hash)?;
        }
        Ok((hash, size))
    })
    .await;
    match stored {
        Ok(Ok((hash, size))) => {
            json_response(StatusCode::OK, json!({"blob": hash.to_hex(), "size": size})).await
        }
        Ok(Err(e)) => internal(&format!("cannot store the upload: {e:#}")),
        Err(_) => internal("the upload's writer stopped"),
    }
}

/// A job as the page submits it: blobs uploaded first.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobForm {
    /// The module's blob (from `POST /api/blobs`).
    module: String,
    /// Its file name (argv[0]).
    #[serde(default = "module_name")]
    name: String,
    /// Argument template (`{task}`, `{input}` replaced per task).
    #[serde(default)]
    args: Vec<String>,
    /// Task count (ignored with inputs).
    #[serde(default = "one")]
    tasks: u32,
    /// Input files: one task each.
    #[serde(default)]
    inputs: Vec<InputForm>,
    /// `any`, `jit` or `interp`.
    #[serde(default = "any")]
    engine: EngineReq,
    /// `--verify K`.
    #[serde(default = "one_u8")]
    verify: u8,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputForm {
    name: String,
    blob: String,
}

fn module_name() -> String {
    "module.wasm".into()
}
fn one() -> u32 {
    1
}
fn one_u8() -> u8 {
    1
}
fn any() -> EngineReq {
    EngineReq::Any
}

/// `POST /api/jobs`: the job of a [`JobForm`], submitted as `corral run`
/// submits it; answers `{job}`.
pub(super) async fn submit(shared: &Shared, request: HttpRequest<Incoming>) -> Response<Body> {
    let form: JobForm = match parse(request).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let spec = match spec_of(form) {
        Ok(spec) => spec,
        Err(why) => return bad_request(&why),
    };
    let (blobs, module) = (shared.blobs.clone(), spec.module);
    let magic = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut head = [0u8; 4];
        std::fs::File::open(blobs.path(&module))
            .and_then(|mut f| f.read_exact(&mut head))
            .map(|()| head)
    })
    .await;
    match magic {
        Ok(Ok(head)) if &head == b"\0asm" => {}
        Ok(Ok(_)) => return bad_request("the module is not WebAssembly (no \\0asm header)"),
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "the module is not in this device's blob store: upload it first",
            );
        }
    }
    ask(
        shared,
        Request::Submit {
            spec: Box::new(spec),
        },
    )
    .await
}

/// The control request's job, or why the form is not one.
fn spec_of(form: JobForm) -> Result<SubmitSpec, String> {
    let hash = |what: &str, hex: &str| {
        hex.parse::<ContentHash>()
            .map_err(|e| format!("{what}: `{hex}` is not a blob id ({e})"))
    };
    check_name("the module's name", &form.name)?;
    crate::job::plan::check_args(&form.args).map_err(|e| e.0)?;
    if form.tasks == 0 || form.tasks > MAX_TASKS {
        return Err(format!("tasks: {} is not in 1..={MAX_TASKS}", form.tasks));
    }
    if form.inputs.len() > MAX_TASKS as usize {
        return Err(format!("at most {MAX_TASKS} input files"));
    }
    let mut inputs = Vec::with_capacity(form.inputs.len());
    for input in &form.inputs {
        check_name("an input's name", &input.name)?;
        if inputs.iter().any(|(n, _)| n == &input.name) {
            return Err(format!("input {} is given twice", input.name));
        }
        inputs.push((input.name.clone(), hash(&input.name, &input.blob)?));
    }
    Ok(SubmitSpec {
        module: hash("module", &form.module)?,
        module_name: form.name,
        args: form.args,
        env: Vec::new(),
        tasks: form.tasks,
        inputs,
        dirs: Vec::new(),
        limits: Limits::default(),
        engine: form.engine,
        verify: form.verify,
        stdin: None,
        output: true,
    })
}

/// A plain file name: what a task sees as argv[0] or under `/input`.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_NAME_BYTES
        || name == "."
        || name == ".."
        || name.contains(['/', '\0'])
    {
        return Err(format!(
            "{what} `{}` is not a plain file name of 1 to {MAX_NAME_BYTES} bytes",
            name.escape_debug()
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustForm {
    key: String,
    #[serde(default)]
    name: String,
}

/// `POST /api/trust` (`{key, name}`) and `POST /api/trust/remove`
/// (`{key}`): `corral trust add|remove`.
pub(super) async fn trust(
    shared: &Shared,
    request: HttpRequest<Incoming>,
    add: bool,
) -> Response<Body> {
    let form: TrustForm = match parse(request).await {
        Ok(form) => form,
        Err(refusal) => return refusal,
    };
    let key = match form.key.trim().parse::<PeerKey>() {
        Ok(key) => key.to_string(),
        Err(e) => return bad_request(&format!("`{}` is not a key: {e}", form.key.trim())),
    };
    if form.name.len() > MAX_NAME_BYTES || form.name.contains(['\0', '\n']) {
        return bad_request(&format!(
            "a name is one line of at most {MAX_NAME_BYTES} bytes"
        ));
    }
    if add {
        return ask(
            shared,
            Request::TrustAdd {
                key,
                name: form.name,
            },
        )
        .await;
    }
    match call(shared, Request::TrustRemove { key }).await {
        Ok(answer) if answer["removed"] == false => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "that key was not trusted",
        ),
        Ok(answer) => json_response(StatusCode::OK, answer).await,
        Err(e) => control_error(&e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareForm {
    share: Share,
}

/// `POST /api/share` (`{share: "idle" | "always" | "never"}`): this
/// device's policy until the daemon restarts.
pub(super) async fn share(shared: &Shared, request: HttpRequest<Incoming>) -> Response<Body> {
    match parse::<ShareForm>(request).await {
        Ok(form) => ask(shared, Request::ShareSet { share: form.share }).await,
        Err(refusal) => refusal,
    }
}

/// A bounded JSON body.
async fn parse<T: DeserializeOwned>(request: HttpRequest<Incoming>) -> Result<T, Response<Body>> {
    let body = read_body(request).await?;
    serde_json::from_slice(&body).map_err(|e| bad_request(&format!("bad request body: {e}")))
}

fn bad_request(why: &str) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, "bad_request", why)
}

fn internal(why: &str) -> Response<Body> {
    tracing::warn!("the page: {why}");
    error(StatusCode::INTERNAL_SERVER_ERROR, "internal", why)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(json: serde_json::Value) -> Result<SubmitSpec, String> {
        spec_of(serde_json::from_value(json).map_err(|e| e.to_string())?)
    }

    #[test]
    fn hostile_forms_are_refused_with_a_reason() {
        let module = "ab".repeat(32);
        for (bad, why) in [
            (json!({"module": "zz"}), "not a blob id"),
            (json!({"module": module, "tasks": 0}), "not in 1..="),
            (json!({"module": module, "tasks": 2_000_000}), "not in 1..="),
            (
                json!({"module": module, "name": "../x.wasm"}),
                "plain file name",
            ),
            (json!({"module": module, "name": ""}), "plain file name"),
            (json!({"module": module, "args": ["a\u{0}b"]}), "NUL"),
            (
                json!({"module": module, "inputs": [{"name": "a", "blob": module}, {"name": "a", "blob": module}]}),
                "twice",
            ),
            (
                json!({"module": module, "inputs": [{"name": "a/b", "blob": module}]}),
                "plain file name",
            ),
            (json!({"module": module, "extra": 1}), "unknown field"),
            (
                json!({"module": module, "engine": "gpu"}),
                "unknown variant",
            ),
        ] {
            let got = form(bad.clone()).expect_err("refused");
            assert!(got.contains(why), "{bad}: {got}");
        }
    }

    #[test]
    fn a_form_becomes_what_corral_run_submits() {
        let module = "ab".repeat(32);
        let spec = form(json!({
            "module": module, "name": "render.wasm", "args": ["{task}", "8"], "tasks": 8,
            "engine": "Interp", "verify": 2,
        }))
        .expect("a job");
        assert_eq!(spec.module.to_hex(), module);
        assert_eq!(spec.module_name, "render.wasm");
        assert_eq!(spec.args, ["{task}", "8"]);
        assert_eq!((spec.tasks, spec.verify), (8, 2));
        assert_eq!(spec.engine, EngineReq::Interp);
        assert_eq!(spec.limits, Limits::default());
        assert!(spec.output && spec.inputs.is_empty() && spec.stdin.is_none());
    }
}
