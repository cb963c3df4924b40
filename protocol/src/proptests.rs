//! Property tests: every message survives an encode/decode round trip, and
//! no sequence of bytes makes a decoder panic.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::codec::{self, WireMessage};
use crate::envelope::{Signed, peer_key, signing_key};
use crate::hash::ContentHash;
use crate::ids::{JobId, Nonce, PeerKey};
use crate::manifest::{DirSpec, EngineReq, InputSpec, JobManifest, Limits, TaskSet};
use crate::messages::{BlobRequest, BlobResponse, RejectReason, TaskRequest, TaskResponse};
use crate::receipt::{Captured, EngineKind, OutputFile, TaskReceipt, TaskStatus};

fn hash() -> impl Strategy<Value = ContentHash> {
    any::<[u8; 32]>().prop_map(ContentHash::from_bytes)
}

fn manifest() -> impl Strategy<Value = JobManifest> {
    (
        any::<[u8; 16]>(),
        hash(),
        1u64..1 << 28,
        prop::collection::vec("[a-z{}/.0-9 ]{0,12}", 0..6),
        prop::collection::btree_map("[A-Z_]{1,8}", "[ -~]{0,12}", 0..4),
        prop::collection::vec(("/[a-z]{1,8}", hash(), any::<bool>()), 0..3),
        prop_oneof![
            (1u32..1000).prop_map(TaskSet::Count),
            prop::collection::vec(("[a-z]{1,8}\\.txt", hash(), any::<u64>()), 1..4).prop_map(|v| {
                TaskSet::Inputs(
                    v.into_iter()
                        .map(|(name, hash, size)| InputSpec { name, hash, size })
                        .collect(),
                )
            }),
        ],
        (
            1u64..=crate::manifest::MAX_TIMEOUT_MS,
            1u64..=crate::manifest::MAX_MEMORY_BYTES,
            1u64..=crate::manifest::MAX_OUTPUT_BYTES,
            1u64..=crate::manifest::MAX_DISK_BYTES,
            1u64..=crate::manifest::MAX_FILES,
        ),
        prop_oneof![
            Just(EngineReq::Any),
            Just(EngineReq::Jit),
            Just(EngineReq::Interp)
        ],
        (1u8..=8, 0u64..1 << 45, 1u64..1 << 20, any::<[u8; 16]>()),
    )
        .prop_map(
            |(job, module_hash, module_size, args, env, dirs, tasks, limits, engine, rest)| {
                let (redundancy, created_ms, lifetime, nonce) = rest;
                // A job over inputs is a batch, with /output.
                let output = nonce[3] % 2 == 0 || matches!(tasks, TaskSet::Inputs(_));
                JobManifest {
                    version: crate::PROTOCOL_VERSION,
                    job: JobId::from_bytes(job),
                    submitter: PeerKey::from_bytes([0; 32]),
                    module_hash,
                    module_size,
                    args,
                    env: env.into_iter().collect::<BTreeMap<_, _>>(),
                    dirs: dirs
                        .into_iter()
                        .map(|(guest_path, tree_hash, writable)| DirSpec {
                            guest_path,
                            tree_hash,
                            writable,
                        })
                        .collect(),
                    tasks,
                    limits: Limits {
                        timeout_ms: limits.0,
                        memory_bytes: limits.1,
                        output_bytes: limits.2,
                        disk_bytes: limits.3,
                        files: limits.4,
                    },
                    engine,
                    redundancy,
                    created_ms,
                    expires_ms: created_ms + lifetime,
                    nonce: Nonce(nonce),
                    stdin: (nonce[0] % 2 == 0).then(|| crate::manifest::StdinSpec {
                        hash: crate::hash::ContentHash::from_bytes([nonce[1]; 32]),
                        size: u64::from(nonce[2]),
                    }),
                    output,
                }
            },
        )
}

fn status() -> impl Strategy<Value = TaskStatus> {
    prop_oneof![
        any::<i32>().prop_map(|code| TaskStatus::Exited { code }),
        "[ -~]{0,40}".prop_map(|message| TaskStatus::Trapped { message }),
        Just(TaskStatus::TimedOut),
        Just(TaskStatus::MemoryLimit),
        Just(TaskStatus::OutputLimit),
        Just(TaskStatus::DiskLimit),
    ]
}

fn receipt() -> impl Strategy<Value = TaskReceipt> {
    (
        any::<[u8; 16]>(),
        any::<u32>(),
        1u32..10,
        status(),
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(any::<u8>(), 0..50),
        prop::collection::btree_set("/output/[a-z]{1,6}", 0..4),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(job, index, attempt, status, out, err, paths, jit, duration_ms)| TaskReceipt {
                job: JobId::from_bytes(job),
                index,
                attempt,
                worker: PeerKey::from_bytes([0; 32]),
                status,
                stdout: Captured::new(out, false),
                stderr: Captured::new(err, true),
                files: paths
                    .into_iter()
                    .map(|path| OutputFile {
                        hash: ContentHash::of(path.as_bytes()),
                        size: path.len() as u64,
                        path,
                    })
                    .collect(),
                engine: if jit {
                    EngineKind::Jit
                } else {
                    EngineKind::Interp
                },
                arch: "aarch64".into(),
                duration_ms,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn manifests_round_trip_and_validate(mut m in manifest()) {
        prop_assert_eq!(m.validate(), Ok(()));
        let key = signing_key(&[4; 32]);
        m.submitter = peer_key(&key);
        let signed = Signed::sign(&m, &key);
        let offer = TaskRequest::Offer { manifest: signed, index: 0, attempt: 1 };
        let frame = codec::encode(&offer);
        let back: TaskRequest = codec::decode(&frame).expect("round trip");
        prop_assert_eq!(&back, &offer);
        let TaskRequest::Offer { manifest, .. } = back else { unreachable!() };
        prop_assert_eq!(manifest.verify(m.created_ms), Ok(m));
    }

    #[test]
    fn receipts_round_trip_and_validate(mut r in receipt()) {
        let key = signing_key(&[6; 32]);
        r.worker = peer_key(&key);
        prop_assert_eq!(r.validate(), Ok(()));
        let message = TaskRequest::Result(Signed::sign(&r, &key));
        let back: TaskRequest = codec::decode(&codec::encode(&message)).expect("round trip");
        let TaskRequest::Result(signed) = back else { unreachable!() };
        prop_assert_eq!(signed.verify(0), Ok(r));
    }

    #[test]
    fn small_messages_round_trip(offset in any::<u64>(), len in any::<u32>(), bytes in prop::collection::vec(any::<u8>(), 0..300), code in 0usize..RejectReason::ALL.len()) {
        let req = BlobRequest { hash: ContentHash::of(&bytes), offset, len };
        prop_assert_eq!(codec::decode::<BlobRequest>(&codec::encode(&req)), Ok(req));
        let resp = BlobResponse::Chunk { total: offset, offset, bytes };
        prop_assert_eq!(codec::decode::<BlobResponse>(&codec::encode(&resp)), Ok(resp));
        let r = TaskResponse::Rejected(RejectReason::ALL[code]);
        prop_assert_eq!(codec::decode::<TaskResponse>(&codec::encode(&r)), Ok(r));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = codec::decode::<TaskRequest>(&bytes);
        let _ = codec::decode::<TaskResponse>(&bytes);
        let _ = codec::decode::<BlobRequest>(&bytes);
        let _ = codec::decode::<BlobResponse>(&bytes);
        if let Ok(s) = codec::from_canonical_bytes::<Signed<JobManifest>>(&bytes, 1 << 20) {
            let _ = s.verify(0);
        }
        if let Ok(s) = codec::from_canonical_bytes::<Signed<TaskReceipt>>(&bytes, 1 << 20) {
            let _ = s.verify(0);
        }
    }

    #[test]
    fn valid_frames_with_a_header_of_the_right_kind_but_mutated_bodies_never_panic(
        mut r in receipt(), flip in any::<prop::sample::Index>(), xor in 1u8..,
    ) {
        let key = signing_key(&[6; 32]);
        r.worker = peer_key(&key);
        let mut frame = codec::encode(&TaskRequest::Result(Signed::sign(&r, &key)));
        let i = 2 + flip.index(frame.len() - 2);
        frame[i] ^= xor;
        if let Ok(TaskRequest::Result(signed)) = codec::decode::<TaskRequest>(&frame) {
            // Either the damage hit the envelope's structure (and the decoded
            // value differs) or the signature check must catch it.
            if let Ok(back) = signed.verify(0) {
                prop_assert_eq!(back, r);
            }
        }
        prop_assert!(TaskRequest::KIND == 1);
    }
}
