//! What a device keeps of the module records it hears: hostile records
//! first (bad signatures, oversize bytes, strangers flooding), then
//! resolution over both catalogs, announcement batches and the store.

use corral_protocol::envelope::{SigningKey, peer_key, signing_key};
use corral_protocol::module_record::{MAX_SIGNED_RECORD_BYTES, RecordError, parse_version};

use super::*;

const PUBLISHED: u64 = 1_700_000_000_000;
const NOW: u64 = PUBLISHED + 1000;

fn key(n: u8) -> SigningKey {
    signing_key(&[n; 32])
}

fn record(name: &str, version: &str, k: &SigningKey, content: &str) -> ModuleRecord {
    ModuleRecord {
        name: name.into(),
        version: parse_version(version).expect("a strict semver version"),
        module: ContentHash::of(content.as_bytes()),
        size: content.len() as u64,
        description: format!("{name} from {content}"),
        publisher: peer_key(k),
        published_ms: PUBLISHED,
    }
}

fn signed(name: &str, version: &str, k: &SigningKey, content: &str) -> Vec<u8> {
    record(name, version, k, content).to_signed_bytes(k)
}

/// Trusts key 1 and key 2 only.
fn trusting(p: &PeerKey) -> bool {
    *p == peer_key(&key(1)) || *p == peer_key(&key(2))
}

fn want(text: &str) -> ModuleRef {
    ModuleRef::parse(text).expect("a reference")
}

#[test]
fn a_record_whose_signature_does_not_hold_is_refused_and_not_kept() {
    let mut known = Known::new();
    let mut bytes = signed("render", "1.0.0", &key(1), "m");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let refusal = known.take(&bytes, NOW, &trusting).expect_err("refused");
    assert_eq!(refusal.code(), "bad_signature", "{refusal}");
    // An edited payload, too.
    let mut bytes = signed("render", "1.0.0", &key(1), "m");
    bytes[3] ^= 0x20;
    assert!(known.take(&bytes, NOW, &trusting).is_err());
    assert!(known.is_empty());
    assert_eq!(
        known
            .resolve(&trusting, &want("render"))
            .err()
            .map(|e| e.code()),
        Some("not_found")
    );
}

#[test]
fn oversize_and_garbage_bytes_are_refused_with_their_reason() {
    let mut known = Known::new();
    let big = vec![7u8; MAX_SIGNED_RECORD_BYTES + 1];
    let refusal = known.take(&big, NOW, &trusting).expect_err("refused");
    assert!(
        matches!(*refusal, Refusal::Invalid(RecordError::TooLarge { .. })),
        "{refusal}"
    );
    assert!(known.take(b"hello", NOW, &trusting).is_err());
    assert!(known.take(&[], NOW, &trusting).is_err());
    // From the future: refused too.
    let mut r = record("render", "1.0.0", &key(1), "m");
    r.published_ms = NOW + 3_600_000;
    let refusal = known
        .take(&r.to_signed_bytes(&key(1)), NOW, &trusting)
        .expect_err("refused");
    assert_eq!(refusal.code(), "published_in_future");
    assert!(known.is_empty());
}

#[test]
fn a_record_from_an_untrusted_key_is_kept_but_never_chosen() {
    let mut known = Known::new();
    // A stranger publishes a newer version than the trusted publisher.
    known
        .take(&signed("render", "2.0.0", &key(9), "evil"), NOW, &trusting)
        .expect("kept");
    assert_eq!(
        known
            .resolve(&trusting, &want("render@^2"))
            .err()
            .map(|e| e.code()),
        Some("untrusted_only")
    );
    known
        .take(&signed("render", "1.0.0", &key(1), "good"), NOW, &trusting)
        .expect("kept");
    let chosen = known.resolve(&trusting, &want("render")).expect("resolved");
    assert_eq!(chosen.record.publisher, peer_key(&key(1)));
    assert_eq!(chosen.record.module, ContentHash::of(b"good"));
    assert_eq!(known.list().len(), 2);
    // Trusted later: the stranger's record counts at once.
    let all = |_: &PeerKey| true;
    let chosen = known.resolve(&all, &want("render")).expect("resolved");
    assert_eq!(chosen.record.version.to_string(), "2.0.0");
}

#[test]
fn two_trusted_publishers_that_disagree_are_a_conflict() {
    let mut known = Known::new();
    for (k, content) in [(key(1), "one"), (key(2), "two")] {
        known
            .take(&signed("render", "1.4.0", &k, content), NOW, &trusting)
            .expect("kept");
    }
    let err = known
        .resolve(&trusting, &want("render@^1"))
        .expect_err("conflict");
    assert_eq!(err.code(), "conflict", "{err}");
    // Agreeing publishers are not a conflict.
    let mut known = Known::new();
    for k in [key(1), key(2)] {
        known
            .take(&signed("render", "1.4.0", &k, "same"), NOW, &trusting)
            .expect("kept");
    }
    let chosen = known
        .resolve(&trusting, &want("render@1.4"))
        .expect("resolved");
    assert_eq!(chosen.publishers.len(), 2);
}

#[test]
fn strangers_fill_only_their_own_catalog() {
    let mut known = Known::new();
    // One stranger key can hold 64 versions of a name; use many names.
    'fill: for n in 0..=u16::MAX {
        let name = format!("junk{n}");
        for v in 0..MAX_STRANGER_RECORDS {
            if known.len() == MAX_STRANGER_RECORDS {
                break 'fill;
            }
            let bytes = signed(&name, &format!("1.0.{v}"), &key(9), "x");
            match known.take(&bytes, NOW, &trusting) {
                Ok(_) => {}
                Err(refusal) => {
                    assert_eq!(refusal.code(), "too_many_versions");
                    break;
                }
            }
        }
    }
    assert_eq!(known.len(), MAX_STRANGER_RECORDS);
    let refusal = known
        .take(&signed("more", "1.0.0", &key(8), "y"), NOW, &trusting)
        .expect_err("the strangers' catalog is full");
    assert_eq!(refusal.code(), "catalog_full");
    // A trusted publisher's record still gets in.
    assert!(matches!(
        known.take(&signed("render", "1.0.0", &key(1), "m"), NOW, &trusting),
        Ok(Taken::New(_))
    ));
    assert!(known.resolve(&trusting, &want("render")).is_ok());
}

#[test]
fn versions_stay_immutable_when_trust_changes() {
    let mut known = Known::new();
    let nobody = |_: &PeerKey| false;
    known
        .take(&signed("render", "1.0.0", &key(1), "first"), NOW, &nobody)
        .expect("kept as a stranger's");
    // Trusted now, the same publisher signs another module as 1.0.0.
    let refusal = known
        .take(
            &signed("render", "1.0.0", &key(1), "second"),
            NOW,
            &trusting,
        )
        .expect_err("refused");
    assert_eq!(refusal.code(), "version_taken", "{refusal}");
    let chosen = known
        .resolve(&trusting, &want("render@1.0.0"))
        .expect("resolved");
    assert_eq!(chosen.record.module, ContentHash::of(b"first"));
}

#[test]
fn the_same_bytes_heard_again_are_a_duplicate_and_edits_replace() {
    let mut known = Known::new();
    let bytes = signed("render", "1.0.0", &key(1), "m");
    assert!(matches!(
        known.take(&bytes, NOW, &trusting),
        Ok(Taken::New(_))
    ));
    assert_eq!(known.take(&bytes, NOW, &trusting), Ok(Taken::Duplicate));
    let mut edited = record("render", "1.0.0", &key(1), "m");
    edited.description = "now with docs".into();
    edited.published_ms += 10;
    let edited_bytes = edited.to_signed_bytes(&key(1));
    assert!(matches!(
        known.take(&edited_bytes, NOW, &trusting),
        Ok(Taken::Replaced(_))
    ));
    assert_eq!(
        known.signed(&key_of(&edited)),
        Some(edited_bytes.as_slice())
    );
    // The older copy heard again changes nothing.
    assert_eq!(known.take(&bytes, NOW, &trusting), Ok(Taken::Duplicate));
    assert_eq!(known.list()[0].description, "now with docs");
}

#[test]
fn announcement_batches_go_round_every_record() {
    let mut known = Known::new();
    assert!(known.next_batch(4).is_empty());
    let mut all = Vec::new();
    for v in 0..10 {
        let bytes = signed("render", &format!("1.0.{v}"), &key(1), &format!("m{v}"));
        known.take(&bytes, NOW, &trusting).expect("kept");
        all.push(bytes);
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        let batch = known.next_batch(4);
        assert!(batch.len() <= 4);
        seen.extend(batch);
    }
    all.sort();
    let mut first_round = seen[..10].to_vec();
    first_round.sort();
    assert_eq!(first_round, all, "every record in the first round");
    // Fewer records than a batch: each once.
    let mut small = Known::new();
    small
        .take(&signed("a", "1.0.0", &key(1), "a"), NOW, &trusting)
        .expect("kept");
    assert_eq!(small.next_batch(4).len(), 1);
    assert_eq!(small.next_batch(4).len(), 1);
}

#[test]
fn the_store_keeps_what_is_taken_and_loading_drops_what_no_longer_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let mut known = Known::new();
    let bytes = signed("render", "1.0.0", &key(1), "m");
    let Ok(Taken::New(record)) = known.take(&bytes, NOW, &trusting) else {
        panic!("kept");
    };
    keep(&store, &record, &bytes).expect("stored");
    // A damaged record in the store.
    store
        .put_raw(Records::Modules, b"junk\x001.0.0\x00ab", b"not a record")
        .expect("stored");
    let loaded = Known::load(&store, NOW, &trusting);
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded
            .resolve(&trusting, &want("render@1"))
            .map(|r| r.record),
        Ok(*record)
    );
    assert_eq!(store.scan_raw(Records::Modules, b"").len(), 1);
    assert_eq!(loaded.published_by(&peer_key(&key(1))).len(), 1);
}
