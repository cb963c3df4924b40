//! Tests of the invite token: formats old and new, refusals, bounds.

use super::*;

const NOW: u64 = 1_800_000_000_000;

fn signer(seed: u8) -> SigningKey {
    corral_protocol::envelope::signing_key(&[seed; 32])
}

fn invite(key: &SigningKey) -> Invite {
    Invite {
        mesh_key: [7; 32],
        inviter: corral_protocol::envelope::peer_key(key),
        name: "laptop".into(),
        addresses: vec!["/ip4/192.0.2.1/tcp/4001".into()],
        relays: vec![RELAY.into()],
        expires_ms: NOW + 3_600_000,
    }
}

const RELAY: &str =
    "/ip4/203.0.113.5/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";

/// A `corral2` token made by the build before relays (signer(1), the
/// invite above without relays): one handed out then must still work.
const GOLDEN_V2: &str = "corral26607070707070707070707070707070707070707070707070707070707070707078a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c066c6170746f7001172f6970342f3139322e302e322e312f7463702f3430303180fdccc4b1348a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c401f15759cf98cebb7b2416e5f2d62a8d8f7c4a4c91921c92cf8b7f72f9ca190e84546b69ab1e97bfa5960f1a4e75997f17204e2c773dad3223091b7f59c9e2b07";

#[test]
fn a_token_of_the_format_before_relays_still_joins() {
    let key = signer(1);
    let mut expected = invite(&key);
    expected.relays.clear();
    assert_eq!(Invite::decode(GOLDEN_V2, NOW), Ok(expected));
    // Its signature covers the old context only: relabelled as the new
    // format it no longer decodes, and an edit to it is still caught.
    let relabelled = GOLDEN_V2.replacen("corral2", "corral3", 1);
    assert!(Invite::decode(&relabelled, NOW).is_err());
    let edited = GOLDEN_V2.replacen("6c6170746f70", "6c6170746f71", 1);
    assert!(matches!(
        Invite::decode(&edited, NOW),
        Err(TokenError::Tampered(_))
    ));
}

#[test]
fn relays_in_a_token_are_signed_bounded_and_checked() {
    let key = signer(1);
    let token = invite(&key).encode(&key);
    assert!(token.starts_with("corral3"));
    assert_eq!(Invite::decode(&token, NOW), Ok(invite(&key)));
    // Another relay put in place of the inviter's: the signature fails.
    let other = RELAY.replace("203.0.113.5", "203.0.113.9");
    let forged = token.replacen(&hex::encode(RELAY), &hex::encode(&other), 1);
    assert_ne!(forged, token);
    assert!(matches!(
        Invite::decode(&forged, NOW),
        Err(TokenError::Tampered(_))
    ));
    // Signed, but too many relays.
    let mut many = invite(&key);
    many.relays = vec![RELAY.into(); crate::net::relay::MAX_RELAYS + 1];
    assert_eq!(
        Invite::decode(&many.encode(&key), NOW),
        Err(TokenError::OutOfBounds)
    );
    // Signed, but not a relay's address: each refusal names why.
    for (bad, why) in [
        ("/ip4/203.0.113.5/tcp/4001", "does not name the relay"),
        (
            "/ip4/203.0.113.5/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN",
            "circuit",
        ),
        ("relay.example", "not a multiaddr"),
    ] {
        let mut odd = invite(&key);
        odd.relays = vec![bad.into()];
        let err = Invite::decode(&odd.encode(&key), NOW).expect_err(bad);
        assert!(matches!(err, TokenError::BadRelay(_)), "{bad}: {err}");
        assert!(err.to_string().contains(why), "{bad}: {err}");
    }
}

#[test]
fn invite_tokens_round_trip_and_damage_is_named() {
    let key = signer(1);
    let invite = invite(&key);
    let token = invite.encode(&key);
    assert!(token.starts_with("corral3"));
    assert_eq!(
        Invite::decode(&format!("  {token}\n"), NOW).expect("valid"),
        invite
    );
    assert_eq!(Invite::decode("hello", NOW), Err(TokenError::NotAToken));
    assert!(matches!(
        Invite::decode(&token[..token.len() - 4], NOW),
        Err(TokenError::Damaged(_))
    ));
    assert!(matches!(
        Invite::decode(&format!("{token}zz"), NOW),
        Err(TokenError::Damaged(_))
    ));
    let long = format!("{TOKEN_PREFIX}{}", "00".repeat(MAX_TOKEN_BYTES));
    assert!(matches!(
        Invite::decode(&long, NOW),
        Err(TokenError::Damaged(_))
    ));
}

#[test]
fn an_expired_token_is_refused_with_when() {
    let key = signer(1);
    let token = invite(&key).encode(&key);
    let err = Invite::decode(&token, NOW + 3_600_000 + 90_000).expect_err("expired");
    assert!(matches!(err, TokenError::Expired { .. }), "{err}");
    assert!(err.to_string().contains("expired 1m 30s ago"), "{err}");
    // One far beyond what an invite may last is refused as well.
    let mut forever = invite(&key);
    forever.expires_ms = NOW + 400 * 24 * 3_600_000;
    let err = Invite::decode(&forever.encode(&key), NOW).expect_err("too far");
    assert!(matches!(err, TokenError::TooFarAhead { .. }), "{err}");
}

#[test]
fn an_edited_token_is_refused_as_tampered() {
    let key = signer(1);
    let token = invite(&key).encode(&key);
    let bytes = hex::decode(&token[TOKEN_PREFIX.len()..]).expect("hex");
    let signed: Signed<Invite> =
        corral_protocol::codec::from_canonical_bytes(&bytes, MAX_TOKEN_BYTES).expect("decode");
    // The expiry moved a year on, the rest kept, the signature kept.
    let mut edited: Invite =
        corral_protocol::codec::from_canonical_bytes(signed.payload_bytes(), MAX_TOKEN_BYTES)
            .expect("payload");
    edited.expires_ms += 365 * 24 * 3_600_000;
    let forged = hex::encode(corral_protocol::codec::to_canonical_bytes(&edited));
    let original = hex::encode(signed.payload_bytes());
    let tampered = token.replace(&original, &forged);
    assert_ne!(tampered, token);
    let err = Invite::decode(&tampered, NOW).expect_err("tampered");
    assert!(matches!(err, TokenError::Tampered(_)), "{err}");
    // Signed by someone other than the inviter it names.
    let other = signer(2);
    let err = Invite::decode(&invite(&key).encode(&other), NOW).expect_err("mismatch");
    assert!(matches!(err, TokenError::Tampered(_)), "{err}");
}

#[test]
fn an_old_token_asks_for_a_new_invite() {
    let err = Invite::decode("corral1a4006d...", NOW).expect_err("old");
    assert_eq!(err, TokenError::OldFormat);
    assert!(err.to_string().contains("corral invite"), "{err}");
}

#[test]
fn reading_is_bounded_and_skips_blank_lines_at_a_terminal() {
    let huge = vec![b'a'; MAX_TOKEN_INPUT_BYTES + 1];
    assert!(matches!(
        read_token(&huge[..], "stdin", false),
        Err(TokenError::TooLong { .. })
    ));
    assert!(matches!(
        read_token(&huge[..], "stdin", true),
        Err(TokenError::TooLong { .. })
    ));
    let exact = vec![b'a'; MAX_TOKEN_INPUT_BYTES];
    assert!(read_token(&exact[..], "stdin", false).is_ok());
    assert_eq!(
        read_token(&b"\n \ncorral2ab\nrest"[..], "stdin", true).expect("line"),
        "\n \ncorral2ab\n"
    );
    assert!(matches!(
        read_token(&b" \n"[..], "f", false),
        Err(TokenError::Empty { .. })
    ));
    assert!(matches!(
        read_token(&[0xff, 0xfe][..], "f", false),
        Err(TokenError::Damaged(_))
    ));
}

/// The seeds of the `invite_token` fuzz target (node/fuzz/corpus), valid
/// at its clock (`NOW`); run by hand after a change to the token:
/// `cargo test -p corral-node --lib -- --ignored invite_fuzz_seeds`.
#[test]
#[ignore = "writes files; run by hand to refresh the fuzz seeds"]
fn invite_fuzz_seeds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/invite_token");
    std::fs::create_dir_all(&dir).expect("corpus dir");
    let key = signer(1);
    let token = invite(&key).encode(&key);
    std::fs::write(dir.join("valid"), format!("{token}\n")).expect("seed");
    std::fs::write(dir.join("pasted"), format!("\n  {token}  \n\n")).expect("seed");
    let mut many = invite(&key);
    many.addresses = (0..MAX_ADDRESSES)
        .map(|i| format!("/ip6/2001:db8::{i}/tcp/4001"))
        .collect();
    many.name = "n".repeat(MAX_NAME_BYTES);
    many.relays = vec![RELAY.into(); crate::net::relay::MAX_RELAYS];
    let largest = many.encode(&key);
    assert_eq!(Invite::decode(&largest, NOW), Ok(many));
    std::fs::write(dir.join("largest"), largest).expect("seed");
    std::fs::write(dir.join("old"), "corral1a4006d00\n").expect("seed");
    std::fs::write(dir.join("before-relays"), format!("{GOLDEN_V2}\n")).expect("seed");
}

#[test]
fn validity_is_positive_and_bounded() {
    assert_eq!(parse_validity("2h"), Ok(Duration::from_secs(7200)));
    assert!(parse_validity("0s").is_err());
    assert!(parse_validity("31days").is_err());
    assert!(parse_validity("soon").is_err());
}
