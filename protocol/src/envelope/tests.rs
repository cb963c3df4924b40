//! Signing and verifying envelopes: tampering, wrong keys, time checks,
//! batches and weak keys.

use super::*;
use crate::manifest::tests::sample as manifest;
use crate::receipt::tests::sample as receipt;

const NOW: u64 = 1_700_000_000_000 + 1000;

fn key(n: u8) -> SigningKey {
    signing_key(&[n; 32])
}

#[test]
fn a_signed_manifest_verifies() {
    let k = key(1);
    let m = manifest(peer_key(&k));
    let signed = Signed::sign(&m, &k);
    assert_eq!(signed.verify(NOW), Ok(m.clone()));
    assert_eq!(signed.verify_from(&peer_key(&k), NOW), Ok(m));
}

#[test]
fn changing_any_byte_of_the_payload_is_caught() {
    let k = key(1);
    let signed = Signed::sign(&manifest(peer_key(&k)), &k);
    for i in 0..signed.payload.len() {
        let mut t = signed.clone();
        t.payload_bytes_mut()[i] ^= 0x01;
        assert_eq!(
            t.verify(NOW).expect_err("tampered").code(),
            "bad_signature",
            "byte {i}"
        );
    }
    let mut t = signed.clone();
    t.signature[10] ^= 0x80;
    assert_eq!(t.verify(NOW).expect_err("bad sig").code(), "bad_signature");
}

#[test]
fn the_wrong_key_is_caught() {
    let (a, b) = (key(1), key(2));
    let signed = Signed::sign(&manifest(peer_key(&a)), &a);
    let err = signed
        .verify_from(&peer_key(&b), NOW)
        .expect_err("wrong signer");
    assert_eq!(err.code(), "wrong_signer");
    // Re-labelling the signer breaks the signature.
    let mut relabelled = signed.clone();
    relabelled.signer = peer_key(&b);
    assert_eq!(
        relabelled.verify(NOW).expect_err("relabelled").code(),
        "bad_signature"
    );
    // A manifest naming someone else as submitter is refused even if signed.
    let forged = Signed::sign(&manifest(peer_key(&a)), &b);
    assert_eq!(
        forged.verify(NOW).expect_err("mismatch").code(),
        "signer_mismatch"
    );
}

#[test]
fn expiry_and_future_creation_are_enforced() {
    let k = key(1);
    let m = manifest(peer_key(&k));
    let signed = Signed::sign(&m, &k);
    assert_eq!(
        signed.verify(m.expires_ms).expect_err("expired").code(),
        "expired"
    );
    assert!(signed.verify(m.expires_ms - 1).is_ok());
    let early = m.created_ms - CLOCK_SKEW_MS - 1;
    assert_eq!(
        signed.verify(early).expect_err("future").code(),
        "not_yet_valid"
    );
}

#[test]
fn the_signer_reads_its_own_expired_manifest_back_signature_checked() {
    let k = key(1);
    let m = manifest(peer_key(&k));
    let signed = Signed::sign(&m, &k);
    assert_eq!(
        signed
            .verify_signature_from(&peer_key(&k))
            .expect("no time checks"),
        m
    );
    assert_eq!(
        signed
            .verify_signature_from(&peer_key(&key(2)))
            .expect_err("another signer")
            .code(),
        "wrong_signer"
    );
    let mut tampered = signed.clone();
    let last = tampered.payload_bytes_mut().len() - 1;
    tampered.payload_bytes_mut()[last] ^= 1;
    assert!(tampered.verify_signature_from(&peer_key(&k)).is_err());
}

#[test]
fn invalid_payloads_are_refused_after_the_signature() {
    let k = key(1);
    let mut m = manifest(peer_key(&k));
    m.redundancy = 0;
    let signed = Signed::sign(&m, &k);
    assert_eq!(
        signed.verify(NOW).expect_err("invalid").code(),
        "invalid_manifest"
    );
}

#[test]
fn a_peer_sent_disk_limit_past_the_maximum_is_refused_naming_it() {
    let k = key(1);
    for (disk_bytes, files) in [(crate::manifest::MAX_DISK_BYTES + 1, 10), (1 << 20, 0)] {
        let mut m = manifest(peer_key(&k));
        m.limits.disk_bytes = disk_bytes;
        m.limits.files = files;
        let signed = Signed::sign(&m, &k);
        let error = signed.verify(NOW).expect_err("out of bounds");
        assert_eq!(error.code(), "invalid_manifest");
        assert!(error.to_string().contains("limits."), "{error}");
    }
}

#[test]
fn a_manifest_signature_is_not_a_receipt_signature() {
    let k = key(3);
    let r = receipt(peer_key(&k));
    let signed = Signed::sign(&r, &k);
    assert_eq!(signed.verify(0), Ok(r));
    // Same key, same bytes, other context: the signature must not carry over.
    let as_manifest: Signed<JobManifest> = Signed {
        payload: signed.payload.clone(),
        signer: signed.signer,
        signature: signed.signature,
        _kind: std::marker::PhantomData,
    };
    assert_eq!(
        as_manifest.verify(0).expect_err("context").code(),
        "bad_signature"
    );
}

#[test]
fn a_batch_is_verified_together_and_each_failure_is_told_apart() {
    let (k, other) = (key(4), key(5));
    let me = peer_key(&k);
    let receipts: Vec<TaskReceipt> = (0..8)
        .map(|i| {
            let mut r = receipt(me);
            r.index = i;
            r
        })
        .collect();
    let mut batch: Vec<Signed<TaskReceipt>> =
        receipts.iter().map(|r| Signed::sign(r, &k)).collect();
    let all = Signed::verify_all_from(&batch, &me, 0);
    assert_eq!(all, receipts.iter().cloned().map(Ok).collect::<Vec<_>>());
    // One changed, one signed by someone else: only they fail, each
    // with its own reason, in its place.
    batch[2].payload_bytes_mut()[0] ^= 1;
    batch[5] = Signed::sign(&receipts[5], &other);
    let all = Signed::verify_all_from(&batch, &me, 0);
    for (i, result) in all.iter().enumerate() {
        match i {
            2 => assert_eq!(
                result.as_ref().map_err(EnvelopeError::code),
                Err("bad_signature")
            ),
            5 => assert_eq!(
                result.as_ref().map_err(EnvelopeError::code),
                Err("wrong_signer")
            ),
            _ => assert_eq!(result.as_ref(), Ok(&receipts[i]), "item {i}"),
        }
    }
    assert!(Signed::<TaskReceipt>::verify_all_from(&[], &me, 0).is_empty());
}

#[test]
fn a_weak_key_is_refused_in_a_batch_as_alone() {
    // The identity point: a small-order key. With R the identity and
    // s = 0 the plain equation holds for any message, in a batch too;
    // only the strict check refuses it.
    let mut weak = [0u8; 32];
    weak[0] = 1;
    let weak = PeerKey::from_bytes(weak);
    let forged: Vec<Signed<TaskReceipt>> = (0..2)
        .map(|i| {
            let mut r = receipt(weak);
            r.index = i;
            let mut signature = [0u8; 64];
            signature[0] = 1;
            Signed {
                payload: codec::to_canonical_bytes(&r),
                signer: weak,
                signature,
                _kind: std::marker::PhantomData,
            }
        })
        .collect();
    for result in Signed::verify_all_from(&forged, &weak, 0) {
        assert_eq!(result.map_err(|e| e.code()), Err("bad_signature"));
    }
    assert_eq!(
        forged[0].verify(0).map_err(|e| e.code()),
        Err("bad_signature")
    );
}

#[test]
fn a_point_that_is_not_a_key_is_refused() {
    let k = key(1);
    let mut signed = Signed::sign(&manifest(peer_key(&k)), &k);
    // y = 2 does not decode to a point on the curve.
    let mut bytes = [0u8; 32];
    bytes[0] = 2;
    signed.signer = PeerKey::from_bytes(bytes);
    let code = signed.verify(NOW).expect_err("bad key").code();
    assert!(code == "bad_key" || code == "bad_signature", "{code}");
}

#[test]
fn a_receipt_from_another_signer_is_refused_before_its_signature_is_checked() {
    let (k, other) = (key(4), key(5));
    let me = peer_key(&k);
    // Signed by someone else, and its signature broken too: the cheap
    // compare of signers answers first, so no signature is checked.
    let mut theirs = Signed::sign(&receipt(peer_key(&other)), &other);
    theirs.payload_bytes_mut()[0] ^= 1;
    for result in Signed::verify_all_from(&[theirs.clone(), theirs.clone()], &me, 0) {
        assert_eq!(result.map_err(|e| e.code()), Err("wrong_signer"));
    }
    assert_eq!(
        theirs.verify_from(&me, 0).map_err(|e| e.code()),
        Err("wrong_signer")
    );
}

fn receipts_of(k: &SigningKey, n: u32) -> Vec<TaskReceipt> {
    (0..n)
        .map(|i| {
            let mut r = receipt(peer_key(k));
            r.index = i;
            r
        })
        .collect()
}

#[test]
fn a_batch_under_one_signature_gives_each_receipt_and_refuses_bad_ones_alone() {
    let (k, other) = (key(6), key(7));
    let me = peer_key(&k);
    let mut receipts = receipts_of(&k, 6);
    let signed = Signed::sign(&ReceiptBatch::new(receipts.clone()), &k);
    assert_eq!(
        signed.open_receipts_from(&me, 0),
        Ok(receipts.iter().cloned().map(Ok).collect::<Vec<_>>())
    );
    // A receipt naming another worker, and one out of bounds: signed by
    // the sender, but each refused in its place; the others stand.
    receipts[1].worker = peer_key(&other);
    receipts[4].attempt = 0;
    let signed = Signed::sign(&ReceiptBatch::new(receipts.clone()), &k);
    let opened = signed.open_receipts_from(&me, 0).expect("the batch holds");
    let codes: Vec<Result<u32, &str>> = opened
        .iter()
        .map(|r| r.as_ref().map(|r| r.index).map_err(EnvelopeError::code))
        .collect();
    assert_eq!(
        codes,
        [
            Ok(0),
            Err("signer_mismatch"),
            Ok(2),
            Ok(3),
            Err("invalid_receipt"),
            Ok(5)
        ]
    );
}

#[test]
fn a_batch_tampered_forged_empty_or_too_long_is_refused_whole() {
    let (k, other) = (key(6), key(7));
    let me = peer_key(&k);
    let signed = Signed::sign(&ReceiptBatch::new(receipts_of(&k, 3)), &k);
    for i in [0, signed.payload.len() / 2, signed.payload.len() - 1] {
        let mut t = signed.clone();
        t.payload_bytes_mut()[i] ^= 0x01;
        assert_eq!(
            t.open_receipts_from(&me, 0).expect_err("tampered").code(),
            "bad_signature",
            "byte {i}"
        );
    }
    // Signed by a peer other than the sender: refused before its signature
    // is looked at, even though the receipts name the sender.
    let forged = Signed::sign(&ReceiptBatch::new(receipts_of(&k, 3)), &other);
    assert_eq!(
        forged
            .open_receipts_from(&me, 0)
            .expect_err("forged")
            .code(),
        "wrong_signer"
    );
    // A receipt's own signature does not vouch for a batch of the same bytes.
    let one = Signed::sign(&receipts_of(&k, 1).remove(0), &k);
    let as_batch: Signed<ReceiptBatch> = Signed {
        payload: one.payload.clone(),
        signer: one.signer,
        signature: one.signature,
        _kind: std::marker::PhantomData,
    };
    assert_eq!(
        as_batch
            .open_receipts_from(&me, 0)
            .expect_err("context")
            .code(),
        "bad_signature"
    );
    for n in [0, crate::messages::MAX_BATCH as u32 + 1] {
        let signed = Signed::sign(&ReceiptBatch::new(receipts_of(&k, n)), &k);
        let err = signed.open_receipts_from(&me, 0).expect_err("count");
        assert_eq!(err.code(), "invalid_receipt", "{n} receipts");
        assert!(err.to_string().contains("receipts"), "{err}");
    }
}
