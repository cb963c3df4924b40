//! The task and blob messages: reason codes, batch bounds and each
//! request variant's frame bound.

use super::*;

#[test]
fn reason_codes_are_stable() {
    assert_eq!(RejectReason::BadSignature.code(), 1);
    assert_eq!(RejectReason::NotTrusted.code(), 2);
    assert_eq!(RejectReason::Malformed.code(), 11);
    assert_eq!(RejectReason::InputsUnavailable.code(), 12);
    assert_eq!(RejectReason::NotTrusted.describe(), "submitter not trusted");
}

#[test]
fn a_refusal_is_lasting_transient_or_neither_never_both() {
    use RejectReason as R;
    for (i, r) in R::ALL.into_iter().enumerate() {
        assert_eq!(usize::from(r.code()), i + 1, "ALL is in code order");
    }
    for r in R::ALL {
        assert!(!(r.is_lasting() && r.is_transient()), "{r:?}");
    }
    assert!(R::NotTrusted.is_lasting() && R::ModuleHashMismatch.is_lasting());
    assert!(R::Busy.is_transient() && R::Draining.is_transient());
    assert!(!R::Replay.is_lasting() && !R::InputsUnavailable.is_transient());
}

#[test]
fn batches_hold_one_to_max_batch_items() {
    let cancel = TaskRequest::Cancel {
        job: JobId::from_bytes([1; 16]),
        index: 0,
    };
    assert!(cancel.is_bounded());
    assert!(!TaskRequest::Results(Vec::new()).is_bounded());
    let alive = |n: usize| TaskRequest::Alive {
        job: JobId::from_bytes([1; 16]),
        tasks: vec![
            TaskRef {
                index: 0,
                attempt: 1
            };
            n
        ],
    };
    assert!(alive(1).is_bounded() && alive(MAX_BATCH).is_bounded());
    assert!(!alive(0).is_bounded() && !alive(MAX_BATCH + 1).is_bounded());
    let receipts = |n: usize| {
        let key = crate::envelope::signing_key(&[5; 32]);
        let receipt = crate::receipt::TaskReceipt {
            job: JobId::from_bytes([1; 16]),
            index: 0,
            attempt: 1,
            worker: crate::envelope::peer_key(&key),
            status: crate::receipt::TaskStatus::Exited { code: 0 },
            stdout: crate::receipt::Captured::new(Vec::new(), false),
            stderr: crate::receipt::Captured::new(Vec::new(), false),
            files: Vec::new(),
            engine: crate::receipt::EngineKind::Jit,
            arch: "x86_64".into(),
            duration_ms: 1,
        };
        TaskRequest::Results(vec![Signed::sign(&receipt, &key); n])
    };
    assert!(receipts(1).is_bounded());
    assert!(receipts(MAX_BATCH).is_bounded());
    assert!(!receipts(MAX_BATCH + 1).is_bounded());
    let output = |n: usize| TaskRequest::Output {
        job: JobId::from_bytes([1; 16]),
        index: 0,
        attempt: 1,
        stdout_at: 0,
        stdout: vec![b'x'; n],
        stderr_at: 0,
        stderr: Vec::new(),
    };
    assert!(output(MAX_LIVE_CHUNK).is_bounded());
    assert!(!output(MAX_LIVE_CHUNK + 1).is_bounded());
}

#[test]
fn blob_requests_are_bounded() {
    let hash = ContentHash::of(b"");
    assert!(
        BlobRequest {
            hash,
            offset: 0,
            len: MAX_CHUNK_BYTES
        }
        .is_valid()
    );
    assert!(
        !BlobRequest {
            hash,
            offset: 0,
            len: MAX_CHUNK_BYTES + 1
        }
        .is_valid()
    );
    assert!(
        !BlobRequest {
            hash,
            offset: u64::MAX,
            len: 2
        }
        .is_valid()
    );
    assert!(
        !BlobRequest {
            hash,
            offset: 0,
            len: 0
        }
        .is_valid()
    );
}

fn job() -> JobId {
    JobId::from_bytes([7; 16])
}

fn receipt_of(stdout: usize) -> Signed<crate::receipt::TaskReceipt> {
    let key = crate::envelope::signing_key(&[5; 32]);
    Signed::sign(&unsigned_receipt(stdout), &key)
}

fn unsigned_receipt(stdout: usize) -> crate::receipt::TaskReceipt {
    let key = crate::envelope::signing_key(&[5; 32]);
    crate::receipt::TaskReceipt {
        job: job(),
        index: u32::MAX,
        attempt: u32::MAX,
        worker: crate::envelope::peer_key(&key),
        status: crate::receipt::TaskStatus::Exited { code: i32::MIN },
        stdout: crate::receipt::Captured::new(vec![b'o'; stdout], true),
        stderr: crate::receipt::Captured::new(Vec::new(), false),
        files: Vec::new(),
        engine: crate::receipt::EngineKind::Jit,
        arch: "x86_64".into(),
        duration_ms: u64::MAX,
    }
}

/// The largest of each small variant, and a batch of results as a worker
/// fills one (each receipt counted as its payload plus 128 bytes).
fn largest_small_requests() -> Vec<TaskRequest> {
    let per_receipt = 4 * 1024;
    let receipt = receipt_of(per_receipt);
    let count = MAX_BATCH_RECEIPT_BYTES / (receipt.payload_bytes().len() + 128);
    let key = crate::envelope::signing_key(&[5; 32]);
    let batch = crate::receipt::ReceiptBatch::new(vec![
        unsigned_receipt(per_receipt);
        count.min(MAX_BATCH)
    ]);
    vec![
        TaskRequest::Cancel {
            job: job(),
            index: u32::MAX,
        },
        TaskRequest::HandBack {
            job: job(),
            index: u32::MAX,
            reason: RejectReason::InputsUnavailable,
        },
        TaskRequest::Output {
            job: job(),
            index: u32::MAX,
            attempt: u32::MAX,
            stdout_at: u64::MAX,
            stdout: vec![b'x'; MAX_LIVE_CHUNK],
            stderr_at: u64::MAX,
            stderr: vec![b'y'; MAX_LIVE_CHUNK],
        },
        TaskRequest::Results(vec![receipt; count.min(MAX_BATCH)]),
        TaskRequest::Result(receipt_of(1024)),
        TaskRequest::Alive {
            job: job(),
            tasks: vec![
                TaskRef {
                    index: u32::MAX,
                    attempt: u32::MAX
                };
                MAX_BATCH
            ],
        },
        TaskRequest::SignedResults(Signed::sign(&batch, &key)),
    ]
}

#[test]
fn each_request_variant_at_its_largest_fits_its_own_bound() {
    for request in largest_small_requests() {
        let frame = crate::codec::encode(&request);
        let bound = TaskRequest::max_frame_bytes(&frame[2..]);
        assert!(
            frame.len() <= bound,
            "{} bytes over the bound of {bound}",
            frame.len()
        );
        assert_eq!(crate::codec::decode::<TaskRequest>(&frame), Ok(request));
    }
}

#[test]
fn a_small_request_variant_cannot_bring_a_large_frame() {
    // The variant indices the bounds are chosen by.
    let tags: Vec<u8> = largest_small_requests()
        .iter()
        .map(|r| crate::codec::encode(r)[2])
        .collect();
    assert_eq!(tags, [1, 3, 6, 5, 2, 7, 8]);
    for (tag, most) in [
        (1u8, 512),
        (3, 512),
        (6, 2 * MAX_LIVE_CHUNK + 512),
        (5, MAX_BATCH_RECEIPT_BYTES + 2048),
        (7, MAX_BATCH * 10 + 512),
        (8, MAX_BATCH_RECEIPT_BYTES + 2048),
        (99, 16),
    ] {
        let mut frame = crate::codec::encode(&TaskRequest::Cancel {
            job: job(),
            index: 0,
        });
        frame[2] = tag;
        frame.resize(4 * 1024 * 1024, 0);
        let bound = TaskRequest::max_frame_bytes(&frame[2..]);
        assert!(bound <= most, "variant {tag}: {bound} bytes");
        assert!(
            matches!(
                crate::codec::decode::<TaskRequest>(&frame),
                Err(crate::codec::CodecError::TooLarge { limit, .. }) if limit == bound
            ),
            "variant {tag}"
        );
    }
    // An offer may carry the largest manifest.
    assert!(TaskRequest::max_frame_bytes(&[0]) > MAX_MANIFEST_BYTES);
    assert!(TaskRequest::max_frame_bytes(&[4]) > MAX_MANIFEST_BYTES);
    assert!(TaskRequest::max_frame_bytes(&[2]) > MAX_RECEIPT_BYTES);
}

/// Which [`RequestVariant`] a request is: exhaustive, so a new request
/// does not compile without one (and with it, a frame bound).
fn variant_of(request: &TaskRequest) -> RequestVariant {
    match request {
        TaskRequest::Offer { .. } => RequestVariant::Offer,
        TaskRequest::Cancel { .. } => RequestVariant::Cancel,
        TaskRequest::Result(_) => RequestVariant::Result,
        TaskRequest::HandBack { .. } => RequestVariant::HandBack,
        TaskRequest::Offers { .. } => RequestVariant::Offers,
        TaskRequest::Results(_) => RequestVariant::Results,
        TaskRequest::Output { .. } => RequestVariant::Output,
        TaskRequest::Alive { .. } => RequestVariant::Alive,
        TaskRequest::SignedResults(_) => RequestVariant::SignedResults,
    }
}

#[test]
fn every_request_is_bounded_by_its_own_variant() {
    let key = crate::envelope::signing_key(&[5; 32]);
    let manifest = Signed::sign(
        &crate::manifest::tests::sample(crate::envelope::peer_key(&key)),
        &key,
    );
    let mut requests = largest_small_requests();
    requests.push(TaskRequest::Offer {
        manifest: manifest.clone(),
        index: 0,
        attempt: 1,
    });
    requests.push(TaskRequest::Offers {
        manifest,
        tasks: vec![TaskRef {
            index: 0,
            attempt: 1,
        }],
    });
    let mut seen = Vec::new();
    for request in &requests {
        let frame = crate::codec::encode(request);
        let variant: RequestVariant =
            postcard::from_bytes(&frame[2..3]).expect("the index names a variant");
        assert_eq!(variant, variant_of(request), "{request:?}");
        assert_eq!(
            TaskRequest::max_frame_bytes(&frame[2..]),
            variant.max_frame_bytes()
        );
        seen.push(variant);
    }
    seen.sort_by_key(|v| *v as u8);
    seen.dedup();
    assert_eq!(seen.len(), 9, "an example of every request");
}
