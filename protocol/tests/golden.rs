//! Golden bytes: fixed values encoded and compared byte for byte with the
//! committed fixtures, so the wire format cannot change by accident. After an
//! intended change, regenerate with `CORRAL_BLESS=1 cargo test -p
//! corral-protocol --test golden`, review the diff and bump the version.

use std::collections::BTreeMap;
use std::path::PathBuf;

use corral_protocol::codec::{self, WireMessage};
use corral_protocol::envelope::{Signed, peer_key, signing_key};
use corral_protocol::hash::ContentHash;
use corral_protocol::ids::{JobId, Nonce};
use corral_protocol::manifest::{DirSpec, EngineReq, InputSpec, JobManifest, Limits, TaskSet};
use corral_protocol::messages::{
    BlobRequest, BlobResponse, RejectReason, TaskRef, TaskRequest, TaskResponse,
};
use corral_protocol::receipt::{
    Captured, EngineKind, OutputFile, ReceiptBatch, TaskReceipt, TaskStatus,
};

const CREATED: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

fn manifest() -> JobManifest {
    JobManifest {
        version: corral_protocol::PROTOCOL_VERSION,
        job: JobId::from_bytes(*b"corral-golden-01"),
        submitter: peer_key(&signing_key(&[11; 32])),
        module_hash: ContentHash::of(b"primes.wasm"),
        module_size: 64_317,
        args: vec!["{input}".into(), "{task}".into(), "20".into()],
        env: BTreeMap::from([("LANG".into(), "C".into()), ("MODE".into(), "fast".into())]),
        dirs: vec![DirSpec {
            guest_path: "/data".into(),
            tree_hash: ContentHash::of(b"tree"),
            writable: true,
        }],
        tasks: TaskSet::Inputs(vec![
            InputSpec {
                name: "a.txt".into(),
                hash: ContentHash::of(b"a"),
                size: 1,
            },
            InputSpec {
                name: "b.txt".into(),
                hash: ContentHash::of(b"bb"),
                size: 2,
            },
        ]),
        limits: Limits {
            timeout_ms: 30_000,
            memory_bytes: 256 << 20,
            output_bytes: 1 << 20,
            disk_bytes: 64 << 20,
            files: 500,
        },
        engine: EngineReq::Any,
        redundancy: 2,
        created_ms: CREATED,
        expires_ms: CREATED + 3_600_000,
        nonce: Nonce(*b"nonce-nonce-0001"),
        stdin: Some(corral_protocol::manifest::StdinSpec {
            hash: ContentHash::of(b"stdin"),
            size: 5,
        }),
        output: true,
    }
}

fn receipt() -> TaskReceipt {
    TaskReceipt {
        job: JobId::from_bytes(*b"corral-golden-01"),
        index: 1,
        attempt: 2,
        worker: peer_key(&signing_key(&[12; 32])),
        status: TaskStatus::Trapped {
            message: "wasm `unreachable` instruction executed".into(),
        },
        stdout: Captured::new(b"partial\n".to_vec(), false),
        stderr: Captured::new(b"panicked\n".to_vec(), true),
        files: vec![OutputFile {
            path: "/output/freq.tsv".into(),
            size: 3,
            hash: ContentHash::of(b"a\t1"),
        }],
        engine: EngineKind::Interp,
        arch: "arm".into(),
        duration_ms: 1234,
    }
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Compares (or, when blessing, writes) one fixture; returns the committed bytes.
fn golden(name: &str, bytes: &[u8]) -> Vec<u8> {
    let path = fixture(name);
    if std::env::var_os("CORRAL_BLESS").is_some() || !path.exists() {
        std::fs::write(&path, bytes).expect("write fixture");
        eprintln!("blessed {}", path.display());
    }
    let committed = std::fs::read(&path).expect("read fixture");
    assert!(
        committed == bytes,
        "{name}: the encoding changed ({} bytes now, {} committed). If intended, bless and bump the wire version.",
        bytes.len(),
        committed.len()
    );
    committed
}

fn check<T: WireMessage + PartialEq + std::fmt::Debug>(name: &str, value: &T) {
    let committed = golden(name, &codec::encode(value));
    assert_eq!(
        &codec::decode::<T>(&committed).expect("fixture decodes"),
        value,
        "{name}"
    );
}

#[test]
fn offer_message() {
    let m = manifest();
    let signed = Signed::sign(&m, &signing_key(&[11; 32]));
    let offer = TaskRequest::Offer {
        manifest: signed,
        index: 1,
        attempt: 1,
    };
    check("task_offer.bin", &offer);
    // The committed signature still verifies (ed25519 signing is deterministic).
    let committed = std::fs::read(fixture("task_offer.bin")).expect("fixture");
    let TaskRequest::Offer { manifest, .. } = codec::decode(&committed).expect("decodes") else {
        panic!("not an offer")
    };
    assert_eq!(manifest.verify(CREATED + 1), Ok(m));
}

#[test]
fn result_message() {
    let r = receipt();
    let signed = Signed::sign(&r, &signing_key(&[12; 32]));
    check("task_result.bin", &TaskRequest::Result(signed));
}

#[test]
fn batched_messages() {
    let signed = Signed::sign(&manifest(), &signing_key(&[11; 32]));
    check(
        "task_offers.bin",
        &TaskRequest::Offers {
            manifest: signed,
            tasks: vec![
                TaskRef {
                    index: 1,
                    attempt: 1,
                },
                TaskRef {
                    index: 2,
                    attempt: 3,
                },
            ],
        },
    );
    let key = signing_key(&[12; 32]);
    let mut second = receipt();
    second.index += 1;
    check(
        "task_results.bin",
        &TaskRequest::Results(vec![
            Signed::sign(&receipt(), &key),
            Signed::sign(&second, &key),
        ]),
    );
    check(
        "task_signed_results.bin",
        &TaskRequest::SignedResults(Signed::sign(
            &ReceiptBatch::new(vec![receipt(), second.clone()]),
            &key,
        )),
    );
    check(
        "task_each.bin",
        &TaskResponse::Each(vec![None, Some(RejectReason::Busy)]),
    );
}

#[test]
fn small_messages() {
    check(
        "task_cancel.bin",
        &TaskRequest::Cancel {
            job: JobId::from_bytes([3; 16]),
            index: 7,
        },
    );
    check(
        "task_hand_back.bin",
        &TaskRequest::HandBack {
            job: JobId::from_bytes([3; 16]),
            index: 7,
            reason: RejectReason::OwnerBusy,
        },
    );
    check("task_accepted.bin", &TaskResponse::Accepted);
    check(
        "task_rejected.bin",
        &TaskResponse::Rejected(RejectReason::NotTrusted),
    );
    check("task_ack.bin", &TaskResponse::Ack);
    check(
        "task_output.bin",
        &TaskRequest::Output {
            job: JobId::from_bytes([3; 16]),
            index: 0,
            attempt: 2,
            stdout_at: 6,
            stdout: b"tick 1\n".to_vec(),
            stderr_at: 0,
            stderr: Vec::new(),
        },
    );
    check(
        "blob_request.bin",
        &BlobRequest {
            hash: ContentHash::of(b"primes.wasm"),
            offset: 1 << 20,
            len: 65536,
        },
    );
    check(
        "blob_chunk.bin",
        &BlobResponse::Chunk {
            total: 10,
            offset: 4,
            bytes: b"chunk".to_vec(),
        },
    );
    check("blob_not_found.bin", &BlobResponse::NotFound);
}

/// A manifest signed and stored by a daemon of wire version 1 (the offer
/// fixture as version 1 wrote it, before the disk limits and the `output`
/// flag): its signer reads it back after the upgrade, with the disk
/// limits' defaults and `/output` as every task had it then; a peer
/// offering it is refused.
#[test]
fn a_version_1_manifest_reads_back_for_its_signer_only() {
    let frame = std::fs::read(fixture("v1_task_offer.bin")).expect("fixture");
    assert_eq!(frame[0], 1, "a version 1 frame");
    assert!(
        codec::decode::<TaskRequest>(&frame).is_err(),
        "version 1 is not spoken"
    );
    let TaskRequest::Offer { manifest: old, .. } =
        codec::from_canonical_bytes(&frame[2..], TaskRequest::MAX_BYTES).expect("its body decodes")
    else {
        panic!("not an offer")
    };
    let signer = peer_key(&signing_key(&[11; 32]));
    assert!(old.verify(CREATED + 1).is_err(), "not accepted from a peer");
    let read = old
        .verify_signature_from(&signer)
        .expect("its signer reads it back");
    let now = manifest();
    assert_eq!(read.job, now.job);
    assert_eq!(read.version, corral_protocol::PROTOCOL_VERSION);
    assert_eq!(read.tasks, now.tasks);
    assert_eq!(read.args, now.args);
    assert_eq!(
        (
            read.limits.timeout_ms,
            read.limits.memory_bytes,
            read.limits.output_bytes
        ),
        (30_000, 256 << 20, 1 << 20)
    );
    assert_eq!(read.limits.disk_bytes, Limits::default().disk_bytes);
    assert_eq!(read.limits.files, Limits::default().files);
    assert!(read.output, "every task had /output in version 1");
    // Changed under its signature: refused.
    let mut forged = old.clone();
    let last = forged.payload_bytes_mut().len() - 1;
    forged.payload_bytes_mut()[last] ^= 1;
    assert!(forged.verify_signature_from(&signer).is_err());
}

/// Writes the seed corpus of the protocol's fuzz targets (protocol/fuzz/
/// corpus/TARGET/): each committed fixture under every frame target that
/// decodes it, and the signed manifest and receipt (and their bare
/// payloads) for the envelope targets. Run by hand after a wire change:
/// `cargo test -p corral-protocol --test golden -- --ignored fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand to refresh the fuzz seeds"]
fn fuzz_seeds() {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(dir.join(name), bytes).expect("seed");
    };
    let mut fixtures: Vec<_> = std::fs::read_dir(fixture(""))
        .expect("fixtures")
        .map(|e| e.expect("fixture").path())
        .collect();
    fixtures.sort();
    for path in fixtures {
        let name = path
            .file_stem()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let frame = std::fs::read(&path).expect("fixture");
        if codec::decode::<TaskRequest>(&frame).is_ok() {
            write("task_request", &name, &frame);
        }
        if codec::decode::<TaskResponse>(&frame).is_ok() {
            write("task_response", &name, &frame);
        }
        if codec::decode::<BlobRequest>(&frame).is_ok()
            || codec::decode::<BlobResponse>(&frame).is_ok()
        {
            write("blob", &name, &frame);
        }
    }
    let m = manifest();
    let signed = Signed::sign(&m, &signing_key(&[11; 32]));
    write(
        "manifest_envelope",
        "signed",
        &codec::to_canonical_bytes(&signed),
    );
    write("manifest_envelope", "bare", &codec::to_canonical_bytes(&m));
    let r = receipt();
    let signed = Signed::sign(&r, &signing_key(&[12; 32]));
    write(
        "receipt_envelope",
        "signed",
        &codec::to_canonical_bytes(&signed),
    );
    write("receipt_envelope", "bare", &codec::to_canonical_bytes(&r));
}
