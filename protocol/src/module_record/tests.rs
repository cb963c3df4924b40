//! Module records' tests: names, versions, descriptions, sizes, the signed
//! bytes (tampering, signer, bounds, canonical form, time), and properties.

use ed25519_dalek::Signer;
use proptest::prelude::*;

use super::*;
use crate::envelope::{peer_key, signing_key};

/// When the sample records were published.
pub(crate) const PUBLISHED: u64 = 1_700_000_000_000;
/// A verifier's clock a second after [`PUBLISHED`].
const NOW: u64 = PUBLISHED + 1000;

pub(crate) fn key(n: u8) -> SigningKey {
    signing_key(&[n; 32])
}

/// A valid record of `name@version` by `publisher`, whose module is named
/// by `content`.
pub(crate) fn record(name: &str, version: &str, publisher: PeerKey, content: &str) -> ModuleRecord {
    ModuleRecord {
        name: name.into(),
        version: parse_version(version).expect("test versions are strict semver"),
        module: ContentHash::of(content.as_bytes()),
        size: content.len() as u64,
        description: format!("{name}, built from {content}"),
        publisher,
        published_ms: PUBLISHED,
    }
}

fn sample(k: &SigningKey) -> ModuleRecord {
    record("render", "1.2.3", peer_key(k), "render module")
}

/// The envelope's canonical bytes around `payload`, really signed by `k`.
fn sign_raw(payload: &[u8], k: &SigningKey) -> Vec<u8> {
    let mut message = ModuleRecord::CONTEXT.to_vec();
    message.push(0);
    message.extend_from_slice(payload);
    let signature = k.sign(&message).to_bytes();
    let mut bytes = codec::to_canonical_bytes(&payload.to_vec());
    bytes.extend_from_slice(peer_key(k).as_bytes());
    bytes.push(64);
    bytes.extend_from_slice(&signature);
    bytes
}

fn raw_with_version(version: &str, k: &SigningKey) -> Vec<u8> {
    let r = sample(k);
    let raw = WireRecord {
        name: r.name,
        version: version.into(),
        module: r.module,
        size: r.size,
        description: r.description,
        publisher: r.publisher,
        published_ms: r.published_ms,
    };
    sign_raw(&codec::to_canonical_bytes(&raw), k)
}

/// A varint in one byte more than it needs (postcard reads it the same).
fn overlong(varint: &[u8]) -> Vec<u8> {
    let mut long = varint.to_vec();
    let last = long.len() - 1;
    long[last] |= 0x80;
    long.push(0);
    long
}

fn code(result: Result<ModuleRecord, RecordError>) -> &'static str {
    result.expect_err("refused").code()
}

#[test]
fn a_signed_record_verifies_and_its_bytes_are_canonical() {
    let k = key(1);
    let r = sample(&k);
    assert_eq!(r.validate(), Ok(()));
    let bytes = r.to_signed_bytes(&k);
    assert_eq!(verify_record(&bytes, NOW), Ok(r.clone()));
    assert_eq!(bytes, r.to_signed_bytes(&k), "signing is deterministic");
    assert_eq!(
        sign_raw(&codec::to_canonical_bytes(&r), &k),
        bytes,
        "the envelope is what the raw helper builds"
    );
    assert_eq!(
        raw_with_version("1.2.3", &k),
        bytes,
        "the version is its text"
    );
}

#[test]
fn an_edited_payload_or_signature_is_a_bad_signature() {
    let k = key(1);
    let signed = Signed::sign(&sample(&k), &k);
    for i in 0..signed.payload_bytes().len() {
        let mut t = signed.clone();
        t.payload_bytes_mut()[i] ^= 0x01;
        let bytes = codec::to_canonical_bytes(&t);
        assert_eq!(
            code(verify_record(&bytes, NOW)),
            "bad_signature",
            "byte {i}"
        );
    }
    let mut bytes = codec::to_canonical_bytes(&signed);
    let last = bytes.len() - 1;
    bytes[last] ^= 0x80;
    assert_eq!(code(verify_record(&bytes, NOW)), "bad_signature");
}

#[test]
fn a_record_naming_another_publisher_is_refused() {
    let (a, b) = (key(1), key(2));
    // Signed by b, claiming to be a's.
    let forged = sample(&a).to_signed_bytes(&b);
    let err = verify_record(&forged, NOW).expect_err("forged");
    assert_eq!(err.code(), "signer_mismatch");
    assert!(err.to_string().contains(&peer_key(&a).short()), "{err}");
    assert!(err.to_string().contains(&peer_key(&b).short()), "{err}");
}

#[test]
fn names_follow_the_rules_and_each_refusal_says_why() {
    for good in [
        "render",
        "a",
        "ffmpeg-lite",
        "py3.12_tools",
        "x".repeat(64).as_str(),
    ] {
        assert_eq!(check_name(good), Ok(()), "{good:?}");
    }
    let cases = [
        ("", "empty"),
        (&"x".repeat(65), "longer than 64"),
        ("Render", "start with a lowercase letter"),
        ("reNder", "uppercase"),
        ("render@1.0.0", "`@`"),
        ("a/b", "`/`"),
        ("..", "start with a lowercase letter"),
        ("a..b", "`..`"),
        ("1render", "start with a lowercase letter"),
        ("-render", "start with a lowercase letter"),
        ("ren der", "' '"),
        ("ren\0der", "'\\0'"),
        ("ren\nder", "'\\n'"),
        ("ren\u{1b}[31mder", "'\\u{1b}'"),
        ("rendér", "'é'"),
    ];
    for (bad, why) in cases {
        let err = check_name(bad).expect_err(bad);
        assert!(err.to_string().contains(why), "{bad:?}: {err}");
        let mut r = sample(&key(1));
        r.name = bad.into();
        assert_eq!(r.validate().expect_err(bad).code(), "bad_name", "{bad:?}");
    }
    // A hostile name is shown escaped and shortened.
    let err = check_name(&format!("A\u{1b}{}", "x".repeat(500))).expect_err("long");
    assert!(err.to_string().len() < 300, "{err}");
    assert!(!err.to_string().contains('\u{1b}'), "{err}");
}

#[test]
fn versions_are_strict_semver_without_build_metadata() {
    for good in [
        "0.0.1",
        "1.2.3",
        "1.0.0-alpha",
        "1.0.0-beta.2",
        "10.20.30-rc.1.x-y",
    ] {
        assert_eq!(parse_version(good).map(|v| v.to_string()), Ok(good.into()));
    }
    let cases = [
        ("", "empty"),
        ("1", "unexpected end of input"),
        ("1.0", "unexpected end of input"),
        ("v1.0.0", "leading `v`"),
        ("1.0.0+build", "build metadata"),
        ("1.0.0-beta+exp.sha.5114f85", "build metadata"),
        ("01.0.0", "leading zero"),
        ("1.0.0-alpha.01", "leading zero"),
        (" 1.0.0", "unexpected character"),
        ("1.0.0 ", "unexpected character"),
        ("1.0.0-", "empty"),
    ];
    for (bad, why) in cases {
        let err = parse_version(bad).expect_err(bad);
        assert!(err.to_string().contains(why), "{bad:?}: {err}");
    }
    let long = format!("1.0.0-{}", "a".repeat(MAX_VERSION_BYTES));
    assert!(
        parse_version(&long)
            .expect_err("long")
            .to_string()
            .contains("longer than 64 bytes")
    );
    // A version built in code is held to the same rules.
    let mut r = sample(&key(1));
    r.version.build = semver::BuildMetadata::new("build").expect("valid metadata");
    assert_eq!(r.validate().expect_err("build").code(), "bad_version");
    r.version = semver::Version::parse(&long).expect("semver itself has no bound");
    assert_eq!(r.validate().expect_err("long").code(), "bad_version");
}

#[test]
fn bad_versions_in_signed_bytes_are_refused() {
    let k = key(1);
    for (version, why) in [
        ("1", "unexpected end of input"),
        ("v1.0.0", "leading `v`"),
        ("1.0.0+build", "build metadata"),
        ("", "empty"),
    ] {
        let err = verify_record(&raw_with_version(version, &k), NOW).expect_err(version);
        assert_eq!(err.code(), "bad_version", "{version}: {err}");
        assert!(err.to_string().contains(why), "{version}: {err}");
    }
    // Only a payload whose signature holds is read a second time.
    let mut bytes = raw_with_version("1", &k);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    assert_eq!(code(verify_record(&bytes, NOW)), "bad_signature");
}

#[test]
fn descriptions_are_bounded_and_printable() {
    let mut r = sample(&key(1));
    for good in [
        "",
        "Renders one tile: `render TILE COUNT`.",
        "Ünïcødé ✓ 渲染",
    ] {
        r.description = good.into();
        assert_eq!(r.validate(), Ok(()), "{good:?}");
    }
    r.description = "é".repeat(MAX_DESCRIPTION_BYTES / 2);
    assert_eq!(r.validate(), Ok(()), "exactly the bound");
    r.description.push('x');
    let err = r.validate().expect_err("oversize");
    assert_eq!(err.code(), "bad_description");
    assert!(err.to_string().contains("1024"), "{err}");
    for bad in [
        "a\nb",
        "a\tb",
        "\u{1b}[2J",
        "a\u{7f}",
        "\u{85}",
        "a\u{202e}gpj.exe",
    ] {
        r.description = bad.into();
        assert_eq!(
            r.validate().expect_err(bad).code(),
            "bad_description",
            "{bad:?}"
        );
    }
}

#[test]
fn sizes_are_one_byte_to_the_module_bound() {
    let mut r = sample(&key(1));
    for good in [1, MAX_MODULE_BYTES] {
        r.size = good;
        assert_eq!(r.validate(), Ok(()));
    }
    for bad in [0, MAX_MODULE_BYTES + 1, u64::MAX] {
        r.size = bad;
        let err = r.validate().expect_err("size");
        assert_eq!(err.code(), "bad_size");
        assert!(err.to_string().contains(&bad.to_string()), "{err}");
    }
}

#[test]
fn invalid_fields_in_signed_bytes_are_named() {
    let k = key(1);
    let mut r = sample(&k);
    r.name = "Render".into();
    assert_eq!(code(verify_record(&r.to_signed_bytes(&k), NOW)), "bad_name");
    let mut r = sample(&k);
    r.size = 0;
    assert_eq!(code(verify_record(&r.to_signed_bytes(&k), NOW)), "bad_size");
    let mut r = sample(&k);
    r.description = "a\u{0}b".into();
    let bytes = r.to_signed_bytes(&k);
    assert_eq!(code(verify_record(&bytes, NOW)), "bad_description");
}

#[test]
fn the_largest_valid_record_fits_and_larger_bytes_are_refused_unread() {
    let k = key(1);
    let mut r = sample(&k);
    r.name = "n".repeat(MAX_NAME_BYTES);
    r.version = semver::Version::new(u64::MAX, u64::MAX, u64::MAX);
    r.version.pre = semver::Prerelease::new(&"p".repeat(MAX_VERSION_BYTES - 63)).expect("pre");
    assert_eq!(r.version.to_string().len(), MAX_VERSION_BYTES);
    r.description = "😀".repeat(MAX_DESCRIPTION_BYTES / 4);
    r.size = MAX_MODULE_BYTES;
    r.published_ms = u64::MAX;
    assert_eq!(r.validate(), Ok(()));
    let bytes = r.to_signed_bytes(&k);
    assert!(codec::to_canonical_bytes(&r).len() <= MAX_RECORD_BYTES);
    assert!(bytes.len() <= MAX_SIGNED_RECORD_BYTES);
    assert_eq!(verify_record(&bytes, u64::MAX), Ok(r.clone()));

    let err = verify_record(&vec![0; MAX_SIGNED_RECORD_BYTES + 1], NOW).expect_err("big");
    assert_eq!(err.code(), "too_large");
    // A signed record over the bound is refused before it is decoded.
    r.description = "x".repeat(MAX_RECORD_BYTES);
    let bytes = r.to_signed_bytes(&k);
    assert_eq!(code(verify_record(&bytes, u64::MAX)), "too_large");
}

#[test]
fn only_canonical_bytes_are_accepted() {
    let k = key(1);
    let bytes = sample(&k).to_signed_bytes(&k);
    // The payload's length again, in one byte more than it needs: the same
    // signed record, framed differently.
    let prefix = bytes.iter().position(|b| b & 0x80 == 0).expect("a varint") + 1;
    let long = [overlong(&bytes[..prefix]), bytes[prefix..].to_vec()].concat();
    assert_eq!(code(verify_record(&long, NOW)), "not_canonical");
    // The publisher's own payload with its size in one byte too many.
    let r = sample(&k);
    let payload = codec::to_canonical_bytes(&r);
    let tail = [
        codec::to_canonical_bytes(&r.description),
        r.publisher.as_bytes().to_vec(),
        codec::to_canonical_bytes(&r.published_ms),
    ]
    .concat();
    let size = codec::to_canonical_bytes(&r.size);
    let at = payload.len() - tail.len() - size.len();
    assert_eq!(payload[at..at + size.len()], size[..]);
    let odd = [&payload[..at], &overlong(&size), &tail].concat();
    assert_eq!(
        code(verify_record(&sign_raw(&odd, &k), NOW)),
        "not_canonical"
    );
    // Trailing and missing bytes.
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(code(verify_record(&trailing, NOW)), "malformed");
    assert_eq!(
        code(verify_record(&bytes[..bytes.len() - 1], NOW)),
        "malformed"
    );
    assert_eq!(code(verify_record(&[], NOW)), "malformed");
}

#[test]
fn a_record_from_the_future_is_refused_within_the_clock_skew() {
    let k = key(1);
    let r = sample(&k);
    let bytes = r.to_signed_bytes(&k);
    assert!(verify_record(&bytes, r.published_ms - CLOCK_SKEW_MS).is_ok());
    let err = verify_record(&bytes, r.published_ms - CLOCK_SKEW_MS - 1).expect_err("future");
    assert_eq!(err.code(), "published_in_future");
    assert!(
        verify_record(&bytes, u64::MAX).is_ok(),
        "records do not expire"
    );
}

#[test]
fn a_record_signed_for_another_purpose_does_not_verify() {
    let k = key(1);
    let payload = codec::to_canonical_bytes(&sample(&k));
    let mut message = b"corral/manifest/1".to_vec();
    message.push(0);
    message.extend_from_slice(&payload);
    let mut bytes = sign_raw(&payload, &k);
    let at = bytes.len() - 64;
    bytes[at..].copy_from_slice(&k.sign(&message).to_bytes());
    assert_eq!(code(verify_record(&bytes, NOW)), "bad_signature");
}

#[test]
fn error_codes_are_stable() {
    let codes = [
        RecordError::TooLarge { len: 1, limit: 0 }.code(),
        RecordError::Malformed(CodecError::NoHeader).code(),
        RecordError::NotCanonical.code(),
        RecordError::BadKey.code(),
        RecordError::BadSignature { signer: "x".into() }.code(),
    ];
    assert_eq!(
        codes,
        [
            "too_large",
            "malformed",
            "not_canonical",
            "bad_key",
            "bad_signature"
        ]
    );
}

fn version() -> impl Strategy<Value = semver::Version> {
    (
        0u64..1000,
        0u64..1000,
        0u64..1000,
        prop::option::of("[a-z][a-z0-9-]{0,6}(\\.[1-9][0-9]{0,2}){0,2}"),
    )
        .prop_map(|(major, minor, patch, pre)| {
            let mut v = semver::Version::new(major, minor, patch);
            if let Some(pre) = pre {
                v.pre = semver::Prerelease::new(&pre).expect("the pattern is a pre-release");
            }
            v
        })
}

pub(crate) fn valid_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9._-]{0,63}".prop_filter("no `..`", |n| !n.contains(".."))
}

fn valid_record() -> impl Strategy<Value = (ModuleRecord, u8)> {
    (
        valid_name(),
        version(),
        any::<[u8; 32]>(),
        1..=MAX_MODULE_BYTES,
        "\\PC{0,200}",
        any::<u8>(),
        0u64..1 << 50,
    )
        .prop_map(
            |(name, version, hash, size, description, seed, published_ms)| {
                let record = ModuleRecord {
                    name,
                    version,
                    module: ContentHash::from_bytes(hash),
                    size,
                    description,
                    publisher: peer_key(&key(seed)),
                    published_ms,
                };
                (record, seed)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn valid_records_round_trip_through_their_signed_bytes((r, seed) in valid_record()) {
        prop_assert_eq!(r.validate(), Ok(()));
        let bytes = r.to_signed_bytes(&key(seed));
        prop_assert!(bytes.len() <= MAX_SIGNED_RECORD_BYTES);
        prop_assert_eq!(verify_record(&bytes, r.published_ms), Ok(r));
    }

    #[test]
    fn no_bytes_make_verification_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = verify_record(&bytes, NOW);
    }

    #[test]
    fn a_flipped_bit_never_yields_another_valid_record(
        (r, seed) in valid_record(), flip in any::<prop::sample::Index>(), bit in 0u8..8,
    ) {
        let mut bytes = r.to_signed_bytes(&key(seed));
        let i = flip.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(verify_record(&bytes, u64::MAX).is_err());
    }
}
