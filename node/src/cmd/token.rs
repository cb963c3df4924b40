//! The invite token: what it carries (mesh key, inviter, addresses, relays,
//! expiry), signed by the inviter's node key, and its text form (`corral3` +
//! hex of the signed envelope's canonical bytes; `corral2` tokens, made
//! before relays, are still read); reading one from stdin or a file with a
//! size bound; every refusal named (damaged, tampered, expired, old).

use std::io::{BufRead, Read};
use std::time::Duration;

use corral_protocol::envelope::{EnvelopeError, Signable, Signed, SigningKey};
use corral_protocol::ids::PeerKey;
use serde::{Deserialize, Serialize};

/// What an invite token carries: the mesh key, the inviter's public key and
/// name, addresses where it was listening, and when it stops being valid.
/// The inviter signs it with its node key, so none of it can be edited.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The mesh key (PSK).
    pub mesh_key: [u8; 32],
    /// The inviter, trusted as a job submitter by whoever joins; the token
    /// must be signed by this key.
    pub inviter: PeerKey,
    /// The inviter's name.
    pub name: String,
    /// Multiaddrs the inviter listened on.
    pub addresses: Vec<String>,
    /// Relays of the mesh (each a multiaddr ending in the relay's
    /// `/p2p/<id>`): a device joining from another network reserves an
    /// address there and reaches the mesh through them.
    pub relays: Vec<String>,
    /// When the token expires (ms since the Unix epoch, inviter's clock).
    pub expires_ms: u64,
}

/// The token of the second format, before relays: the same fields but
/// `relays`, under its own signing context. Still read (as an invite with no
/// relays) so that tokens handed out before the change keep working.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct InviteV2 {
    mesh_key: [u8; 32],
    inviter: PeerKey,
    name: String,
    addresses: Vec<String>,
    expires_ms: u64,
}

/// Tokens start with this, so a wrong paste is recognised.
pub const TOKEN_PREFIX: &str = "corral3";
/// What tokens of the second format (no relays) start with.
const V2_TOKEN_PREFIX: &str = "corral2";
/// What tokens of the first format (unsigned, no expiry) start with.
const OLD_TOKEN_PREFIX: &str = "corral1";
/// Longest token accepted (its text, prefix and hex).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Most bytes read from stdin or a token file: a token with room for
/// surrounding blank lines, never a whole file read into memory.
pub const MAX_TOKEN_INPUT_BYTES: usize = 16 * 1024;
/// Most addresses a token names.
pub const MAX_ADDRESSES: usize = 16;
/// Longest inviter name.
const MAX_NAME_BYTES: usize = 64;
/// Longest validity `corral invite --expires` gives a token.
pub const MAX_VALIDITY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Validity of a token when `--expires` is not given.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// Clock difference between inviter and joiner tolerated for an expiry that
/// lies further ahead than [`MAX_VALIDITY`].
const CLOCK_SKEW: Duration = Duration::from_secs(24 * 3600);

/// Why a token was refused; each names what is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// More bytes than any token (stdin or a file).
    #[error(
        "{from} holds more than {limit} bytes; an invite token is one line of a few KiB \
         (print one with `corral invite`)"
    )]
    TooLong {
        /// Where it was read from.
        from: String,
        /// The bound.
        limit: usize,
    },
    /// The token was not readable (stdin, a file).
    #[error("cannot read the invite token from {from}: {reason}")]
    Unreadable {
        /// Where it was read from.
        from: String,
        /// The I/O error.
        reason: String,
    },
    /// Nothing there.
    #[error("{from} holds no invite token (it is empty)")]
    Empty {
        /// Where it was read from.
        from: String,
    },
    /// Not a corral token at all.
    #[error("not a corral invite token (it should start with {TOKEN_PREFIX})")]
    NotAToken,
    /// A token of the first format: unsigned, without an expiry.
    #[error(
        "this invite token is of an older format, unsigned and without an expiry, which is no \
         longer accepted; run `corral invite` again on the inviting device"
    )]
    OldFormat,
    /// The text or the bytes do not decode.
    #[error("the invite token is damaged ({0}); copy it again")]
    Damaged(String),
    /// The signature does not hold: the token was edited.
    #[error(
        "the invite token was tampered with ({0}); ask the inviter for a new one with \
         `corral invite`"
    )]
    Tampered(String),
    /// Past its expiry.
    #[error(
        "the invite token expired {ago} ago (at {at}); run `corral invite` again on the \
         inviting device"
    )]
    Expired {
        /// How long ago, for people.
        ago: String,
        /// When, for people (RFC 3339, UTC).
        at: String,
    },
    /// An expiry further ahead than any corral gives.
    #[error(
        "the invite token claims to be valid for {ahead}, longer than corral's invites last \
         ({max}); check the inviting device's clock and make a new invite"
    )]
    TooFarAhead {
        /// How far ahead, for people.
        ahead: String,
        /// The longest validity, for people.
        max: String,
    },
    /// Out of bounds although signed.
    #[error(
        "the invite token holds too many addresses or relays (at most {MAX_ADDRESSES} and {}) \
         or too long a name",
        crate::net::relay::MAX_RELAYS
    )]
    OutOfBounds,
    /// A relay the token names is not a relay's address.
    #[error("the invite token names a relay that cannot be used: {0}")]
    BadRelay(String),
}

/// Both formats are signed by the inviter they name.
fn signed_by_inviter(inviter: &PeerKey, signer: &PeerKey) -> Result<(), EnvelopeError> {
    if inviter != signer {
        return Err(EnvelopeError::SignerMismatch {
            claimed: inviter.short(),
            signer: signer.short(),
        });
    }
    Ok(())
}

impl Signable for Invite {
    const CONTEXT: &'static [u8] = b"corral/invite/3";
    const MAX_BYTES: usize = MAX_TOKEN_BYTES;

    fn check(&self, signer: &PeerKey) -> Result<(), EnvelopeError> {
        signed_by_inviter(&self.inviter, signer)
    }
}

impl Signable for InviteV2 {
    const CONTEXT: &'static [u8] = b"corral/invite/2";
    const MAX_BYTES: usize = MAX_TOKEN_BYTES;

    fn check(&self, signer: &PeerKey) -> Result<(), EnvelopeError> {
        signed_by_inviter(&self.inviter, signer)
    }
}

impl From<InviteV2> for Invite {
    fn from(v2: InviteV2) -> Self {
        Invite {
            mesh_key: v2.mesh_key,
            inviter: v2.inviter,
            name: v2.name,
            addresses: v2.addresses,
            relays: Vec::new(),
            expires_ms: v2.expires_ms,
        }
    }
}

/// Decodes and verifies the signed envelope of one format from hex.
fn open<T: Signable + serde::de::DeserializeOwned>(
    hex_part: &str,
    now_ms: u64,
) -> Result<T, TokenError> {
    let bytes = hex::decode(hex_part).map_err(|_| TokenError::Damaged("not hexadecimal".into()))?;
    let signed: Signed<T> = corral_protocol::codec::from_canonical_bytes(&bytes, MAX_TOKEN_BYTES)
        .map_err(|e| TokenError::Damaged(e.to_string()))?;
    signed.verify(now_ms).map_err(|e| match e {
        EnvelopeError::Codec(e) => TokenError::Damaged(e.to_string()),
        other => TokenError::Tampered(other.to_string()),
    })
}

impl Invite {
    /// The token text, signed with `key` (the inviter's node key).
    pub fn encode(&self, key: &SigningKey) -> String {
        let signed = Signed::sign(self, key);
        format!(
            "{TOKEN_PREFIX}{}",
            hex::encode(corral_protocol::codec::to_canonical_bytes(&signed))
        )
    }

    /// Parses and checks a token at `now_ms`, naming what is wrong.
    pub fn decode(token: &str, now_ms: u64) -> Result<Self, TokenError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::Damaged(format!(
                "{} bytes, too long to be a corral invite",
                token.len()
            )));
        }
        if token.starts_with(OLD_TOKEN_PREFIX) {
            return Err(TokenError::OldFormat);
        }
        let invite = if let Some(hex_part) = token.strip_prefix(TOKEN_PREFIX) {
            open::<Invite>(hex_part, now_ms)?
        } else if let Some(hex_part) = token.strip_prefix(V2_TOKEN_PREFIX) {
            open::<InviteV2>(hex_part, now_ms)?.into()
        } else {
            return Err(TokenError::NotAToken);
        };
        if invite.addresses.len() > MAX_ADDRESSES
            || invite.relays.len() > crate::net::relay::MAX_RELAYS
            || invite.name.len() > MAX_NAME_BYTES
        {
            return Err(TokenError::OutOfBounds);
        }
        for relay in &invite.relays {
            crate::net::relay::parse_relay_addr(relay).map_err(TokenError::BadRelay)?;
        }
        invite.check_expiry(now_ms)?;
        Ok(invite)
    }

    /// Refuses a token past its expiry, or one whose expiry lies further
    /// ahead than any invite corral makes (with room for clock skew).
    fn check_expiry(&self, now_ms: u64) -> Result<(), TokenError> {
        let human = |ms: u64| {
            // Whole seconds read better than `1h 2m 3s 456ms`.
            humantime::format_duration(Duration::from_secs(ms / 1000)).to_string()
        };
        if self.expires_ms <= now_ms {
            let at = std::time::UNIX_EPOCH + Duration::from_millis(self.expires_ms);
            return Err(TokenError::Expired {
                ago: human(now_ms - self.expires_ms),
                at: humantime::format_rfc3339_seconds(at).to_string(),
            });
        }
        let ahead = self.expires_ms - now_ms;
        if u128::from(ahead) > (MAX_VALIDITY + CLOCK_SKEW).as_millis() {
            return Err(TokenError::TooFarAhead {
                ahead: human(ahead),
                max: humantime::format_duration(MAX_VALIDITY).to_string(),
            });
        }
        Ok(())
    }
}

/// Checks `--expires`: a positive duration no longer than [`MAX_VALIDITY`].
pub fn parse_validity(text: &str) -> Result<Duration, String> {
    let validity = humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration ({e}); try 30m, 24h or 7d"))?;
    if validity.is_zero() {
        return Err(format!("`{text}` is zero; give a positive duration"));
    }
    if validity > MAX_VALIDITY {
        return Err(format!(
            "`{text}` is longer than an invite may last ({})",
            humantime::format_duration(MAX_VALIDITY)
        ));
    }
    Ok(validity)
}

/// Reads a token from `reader` (stdin or a file, named `source` in errors),
/// at most [`MAX_TOKEN_INPUT_BYTES`] of it: the first non-blank line when
/// `one_line` (a person pasting at a terminal), else the whole input.
pub fn read_token(reader: impl Read, source: &str, one_line: bool) -> Result<String, TokenError> {
    let mut limited = std::io::BufReader::new(reader.take(MAX_TOKEN_INPUT_BYTES as u64 + 1));
    let unreadable = |e: std::io::Error| TokenError::Unreadable {
        from: source.to_string(),
        reason: e.to_string(),
    };
    let mut bytes = Vec::new();
    if one_line {
        loop {
            let before = bytes.len();
            if limited.read_until(b'\n', &mut bytes).map_err(unreadable)? == 0
                || !bytes[before..].trim_ascii().is_empty()
            {
                break;
            }
        }
    } else {
        limited.read_to_end(&mut bytes).map_err(unreadable)?;
    }
    if bytes.len() > MAX_TOKEN_INPUT_BYTES {
        return Err(TokenError::TooLong {
            from: source.to_string(),
            limit: MAX_TOKEN_INPUT_BYTES,
        });
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| TokenError::Damaged(format!("{source} is not text")))?;
    if text.trim().is_empty() {
        return Err(TokenError::Empty {
            from: source.to_string(),
        });
    }
    Ok(text)
}

/// Where the relays this device uses are kept (space-separated multiaddrs):
/// from the token it joined with, or the last `corral up --relay-addr`.
pub const RELAYS_KEY: &str = "relays";

/// The relays kept in `store` (unreadable entries skipped: the token and the
/// CLI checked them when they were written).
pub fn stored_relays(store: &crate::store::Store) -> anyhow::Result<Vec<libp2p::Multiaddr>> {
    Ok(store
        .get(RELAYS_KEY)?
        .unwrap_or_default()
        .split(' ')
        .filter_map(|a| crate::net::relay::parse_relay_addr(a).ok())
        .collect())
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
