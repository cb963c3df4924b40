//! Module records: a publisher's signed statement that `name@version` is
//! the module with a given content hash, and every check a record passes
//! before anyone believes it.
//!
//! A record says nothing about trust: it only proves who published it. Which
//! publishers count is the reader's choice, made when resolving a reference
//! ([`resolve`]): records of keys it does not trust are ignored.
//!
//! Rules, and why:
//!
//! - **Names** are 1 to [`MAX_NAME_BYTES`] bytes of `a-z`, `0-9`, `-`, `_`
//!   and `.`, starting with a letter, without `..`: safe as one part of a
//!   path and as a word on a command line, and never holding `@`, which
//!   separates a name from its version in a [`ModuleRef`].
//! - **Versions** are strict semver (`MAJOR.MINOR.PATCH[-PRE]`, at most
//!   [`MAX_VERSION_BYTES`] bytes). Build metadata (`+…`) is refused, not
//!   ignored: semver gives `1.0.0+a` and `1.0.0+b` the same precedence, so
//!   they would be two modules under one version, and a requirement could
//!   not tell which it meant.
//! - **Versions are immutable per publisher**: a publisher that signs the
//!   same `name@version` again with another module is refused by the
//!   [`Catalog`] (the first one it held wins), and two trusted publishers
//!   that disagree are a [`ResolveError::Conflict`], never a silent choice.
//! - **Descriptions** are one line of printable text, at most
//!   [`MAX_DESCRIPTION_BYTES`] bytes: no control characters at all (no
//!   newline, tab or terminal escape) and no bidirectional controls, which
//!   can make a listing read as something it is not.
//! - **Sizes** are 1 to [`MAX_MODULE_BYTES`], the bound every job has.
//! - **Bytes**: the signed envelope is at most [`MAX_SIGNED_RECORD_BYTES`]
//!   and must be the canonical encoding of what it holds, so one record has
//!   exactly one byte form (a copy can be recognised by its bytes).
//! - **Time**: a record published further ahead of the reader's clock than
//!   [`CLOCK_SKEW_MS`] is refused; records do not expire.

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::envelope::{CLOCK_SKEW_MS, EnvelopeError, Signable, Signed, SigningKey};
use crate::hash::ContentHash;
use crate::ids::PeerKey;
use crate::manifest::MAX_MODULE_BYTES;

mod catalog;
mod reference;
mod resolve;

pub use catalog::{Catalog, Insert, MAX_CATALOG_RECORDS, MAX_VERSIONS_PER_PUBLISHER, Refusal};
pub use reference::{MAX_REF_BYTES, ModuleRef, RefError};
pub use resolve::{Claim, ResolveError, Resolved, resolve};

/// Longest module name.
pub const MAX_NAME_BYTES: usize = 64;
/// Longest version, as text.
pub const MAX_VERSION_BYTES: usize = 64;
/// Longest description.
pub const MAX_DESCRIPTION_BYTES: usize = 1024;
/// Most bytes of an encoded record (the signed payload). The largest valid
/// record takes about 1240.
pub const MAX_RECORD_BYTES: usize = 2 * 1024;
/// Most bytes of a signed record (the envelope: the payload, its length,
/// the signer and the signature).
pub const MAX_SIGNED_RECORD_BYTES: usize = MAX_RECORD_BYTES + 128;

/// A publisher's statement that `name@version` is the module `module`,
/// `size` bytes long. Signed by the publisher ([`Signable`]); read with
/// [`verify_record`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModuleRecord {
    /// The module's name (see [`check_name`]).
    pub name: String,
    /// Its version, strict semver without build metadata (see
    /// [`parse_version`]); on the wire, its text.
    pub version: Version,
    /// The module's content hash.
    pub module: ContentHash,
    /// The module's size in bytes.
    pub size: u64,
    /// What it does, for people: one line of printable text.
    pub description: String,
    /// Who publishes it; the record must be signed by this key.
    pub publisher: PeerKey,
    /// When it was published, unix milliseconds (the publisher's clock).
    pub published_ms: u64,
}

impl Signable for ModuleRecord {
    const CONTEXT: &'static [u8] = b"corral/module/1";
    const MAX_BYTES: usize = MAX_RECORD_BYTES;

    /// Only who signed it: the fields are checked by [`verify_record`],
    /// whose errors name them.
    fn check(&self, signer: &PeerKey) -> Result<(), EnvelopeError> {
        if &self.publisher != signer {
            return Err(EnvelopeError::SignerMismatch {
                claimed: self.publisher.short(),
                signer: signer.short(),
            });
        }
        Ok(())
    }
}

/// A module name that breaks the naming rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("module name {name:?} {why}")]
pub struct NameError {
    /// The name (its first 64 characters).
    pub name: String,
    /// What is wrong with it.
    pub why: String,
}

/// A version that is not strict semver without build metadata.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version {version:?} {why}")]
pub struct VersionError {
    /// The version (its first 64 characters).
    pub version: String,
    /// What is wrong with it.
    pub why: String,
}

/// Why a module record was refused; each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// More bytes than any record.
    #[error("a module record of {len} bytes is over the limit of {limit}")]
    TooLarge {
        /// Bytes seen.
        len: usize,
        /// The bound.
        limit: usize,
    },
    /// The bytes do not decode as a signed record.
    #[error("the module record is damaged: {0}")]
    Malformed(CodecError),
    /// The bytes decode, but are not the one encoding of what they hold.
    #[error(
        "the module record is not in canonical form (re-encoded by something other than corral?)"
    )]
    NotCanonical,
    /// The signer's key is not an ed25519 public key.
    #[error("the module record's signer is not a valid ed25519 public key")]
    BadKey,
    /// The signature does not hold: the record was edited after signing.
    #[error("the module record's signature does not hold: it was changed after {signer} signed it")]
    BadSignature {
        /// The claimed signer (short).
        signer: String,
    },
    /// Signed by someone other than the publisher it names.
    #[error("the module record names {publisher} as publisher but was signed by {signer}")]
    SignerMismatch {
        /// The publisher it names (short).
        publisher: String,
        /// Who signed it (short).
        signer: String,
    },
    /// The name breaks the rules.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// The version breaks the rules.
    #[error(transparent)]
    BadVersion(#[from] VersionError),
    /// The description is too long or not printable.
    #[error("the module's description {0}")]
    BadDescription(String),
    /// The size is zero or over the module bound.
    #[error("module size {size} is not in 1..={MAX_MODULE_BYTES} bytes")]
    BadSize {
        /// The size claimed.
        size: u64,
    },
    /// Published further ahead of the reader's clock than clock skew allows.
    #[error(
        "the module record was published at {published_ms}, more than {CLOCK_SKEW_MS} ms after \
         now ({now_ms}); check the publisher's clock"
    )]
    PublishedInFuture {
        /// When it claims to have been published.
        published_ms: u64,
        /// The reader's clock.
        now_ms: u64,
    },
    /// Any other refusal of the envelope (none arises for records today).
    #[error("the module record's envelope: {0}")]
    Envelope(EnvelopeError),
}

impl RecordError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RecordError::TooLarge { .. } => "too_large",
            RecordError::Malformed(_) => "malformed",
            RecordError::NotCanonical => "not_canonical",
            RecordError::BadKey => "bad_key",
            RecordError::BadSignature { .. } => "bad_signature",
            RecordError::SignerMismatch { .. } => "signer_mismatch",
            RecordError::BadName(_) => "bad_name",
            RecordError::BadVersion(_) => "bad_version",
            RecordError::BadDescription(_) => "bad_description",
            RecordError::BadSize { .. } => "bad_size",
            RecordError::PublishedInFuture { .. } => "published_in_future",
            RecordError::Envelope(e) => e.code(),
        }
    }
}

/// Text from outside, shortened for an error message (which shows it with
/// `{:?}`, so control characters are escaped).
fn shown(text: &str) -> String {
    const SHOWN_CHARS: usize = 64;
    match text.char_indices().nth(SHOWN_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Checks a module name against the rules (see the module docs).
pub fn check_name(name: &str) -> Result<(), NameError> {
    let bad = |why: String| NameError {
        name: shown(name),
        why,
    };
    let Some(first) = name.chars().next() else {
        return Err(bad("is empty".into()));
    };
    if name.len() > MAX_NAME_BYTES {
        return Err(bad(format!("is longer than {MAX_NAME_BYTES} bytes")));
    }
    if !first.is_ascii_lowercase() {
        return Err(bad("must start with a lowercase letter (a-z)".into()));
    }
    for c in name.chars() {
        let why = match c {
            'a'..='z' | '0'..='9' | '-' | '_' | '.' => continue,
            '@' => "holds `@`, which separates a name from its version".into(),
            '/' | '\\' => format!("holds `{c}`: a name is a single word, not a path"),
            'A'..='Z' => format!("holds the uppercase {c:?}: names are lowercase"),
            _ => format!("holds {c:?}; names have only a-z, 0-9, `-`, `_` and `.`"),
        };
        return Err(bad(why));
    }
    if name.contains("..") {
        return Err(bad("holds `..`".into()));
    }
    Ok(())
}

/// Parses a version: strict semver, without build metadata, at most
/// [`MAX_VERSION_BYTES`] bytes.
pub fn parse_version(text: &str) -> Result<Version, VersionError> {
    let bad = |why: String| VersionError {
        version: shown(text),
        why,
    };
    if text.len() > MAX_VERSION_BYTES {
        return Err(bad(format!("is longer than {MAX_VERSION_BYTES} bytes")));
    }
    if text.contains('+') {
        return Err(build_metadata(text));
    }
    if text.starts_with(['v', 'V']) {
        return Err(bad(
            "has a leading `v`: write the bare version, such as 1.2.3".into(),
        ));
    }
    let version = Version::parse(text).map_err(|e| {
        bad(format!(
            "is not strict semver ({e}); write MAJOR.MINOR.PATCH, such as 1.2.3 or 1.2.3-beta.1"
        ))
    })?;
    check_version(&version)?;
    Ok(version)
}

fn build_metadata(text: &str) -> VersionError {
    VersionError {
        version: shown(text),
        why: "has build metadata (`+…`), which corral refuses: semver ignores it when \
              comparing versions, so it cannot tell two modules apart"
            .into(),
    }
}

/// Checks a version built in code against the rules [`parse_version`]
/// applies to text.
pub fn check_version(version: &Version) -> Result<(), VersionError> {
    let text = version.to_string();
    if !version.build.is_empty() {
        return Err(build_metadata(&text));
    }
    if text.len() > MAX_VERSION_BYTES {
        return Err(VersionError {
            version: shown(&text),
            why: format!("is longer than {MAX_VERSION_BYTES} bytes"),
        });
    }
    Ok(())
}

/// Whether `c` reorders text when shown (the Unicode bidirectional
/// controls: embeddings, overrides, isolates and marks).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Checks a description: one line of printable text, bounded.
pub fn check_description(description: &str) -> Result<(), RecordError> {
    if description.len() > MAX_DESCRIPTION_BYTES {
        return Err(RecordError::BadDescription(format!(
            "is {} bytes; at most {MAX_DESCRIPTION_BYTES}",
            description.len()
        )));
    }
    if let Some(c) = description.chars().find(|c| c.is_control()) {
        return Err(RecordError::BadDescription(format!(
            "holds the control character {c:?}; a description is one line of printable text"
        )));
    }
    if let Some(c) = description.chars().find(|c| is_bidi_control(*c)) {
        return Err(RecordError::BadDescription(format!(
            "holds the bidirectional control U+{:04X}, which can make text read as something else",
            u32::from(c)
        )));
    }
    Ok(())
}

impl ModuleRecord {
    /// Checks every field against the rules (signature and time apart).
    pub fn validate(&self) -> Result<(), RecordError> {
        check_name(&self.name)?;
        check_version(&self.version)?;
        if self.size == 0 || self.size > MAX_MODULE_BYTES {
            return Err(RecordError::BadSize { size: self.size });
        }
        check_description(&self.description)?;
        Ok(())
    }

    /// The record signed with `key` (the publisher's), as the canonical
    /// bytes [`verify_record`] reads.
    pub fn to_signed_bytes(&self, key: &SigningKey) -> Vec<u8> {
        codec::to_canonical_bytes(&Signed::sign(self, key))
    }

    /// Whether two records name the same module (hash and size).
    pub fn same_module(&self, other: &ModuleRecord) -> bool {
        self.module == other.module && self.size == other.size
    }
}

/// Reads a signed record from its canonical bytes and checks everything:
/// size, encoding, signature, that the publisher signed it, every field, and
/// that it was not published after `now_ms` (plus clock skew).
pub fn verify_record(bytes: &[u8], now_ms: u64) -> Result<ModuleRecord, RecordError> {
    if bytes.len() > MAX_SIGNED_RECORD_BYTES {
        return Err(RecordError::TooLarge {
            len: bytes.len(),
            limit: MAX_SIGNED_RECORD_BYTES,
        });
    }
    let signed: Signed<ModuleRecord> =
        codec::from_canonical_bytes(bytes, MAX_SIGNED_RECORD_BYTES).map_err(malformed)?;
    if codec::to_canonical_bytes(&signed) != bytes {
        return Err(RecordError::NotCanonical);
    }
    verify_signed_record(&signed, now_ms)
}

/// [`verify_record`] for an envelope already decoded (one that arrived
/// inside another message).
pub fn verify_signed_record(
    signed: &Signed<ModuleRecord>,
    now_ms: u64,
) -> Result<ModuleRecord, RecordError> {
    let record = signed.verify(now_ms).map_err(|e| match e {
        EnvelopeError::BadKey => RecordError::BadKey,
        EnvelopeError::BadSignature(signer) => RecordError::BadSignature { signer },
        EnvelopeError::SignerMismatch { claimed, signer } => RecordError::SignerMismatch {
            publisher: claimed,
            signer,
        },
        // The signature held (it is checked before the payload is read):
        // say which field the publisher got wrong, if one did.
        EnvelopeError::Codec(e) => diagnose(signed).unwrap_or_else(|| malformed(e)),
        other => RecordError::Envelope(other),
    })?;
    if codec::to_canonical_bytes(&record) != signed.payload_bytes() {
        return Err(RecordError::NotCanonical);
    }
    record.validate()?;
    if record.published_ms > now_ms.saturating_add(CLOCK_SKEW_MS) {
        return Err(RecordError::PublishedInFuture {
            published_ms: record.published_ms,
            now_ms,
        });
    }
    Ok(record)
}

fn malformed(e: CodecError) -> RecordError {
    match e {
        CodecError::TooLarge { len, limit } => RecordError::TooLarge { len, limit },
        other => RecordError::Malformed(other),
    }
}

/// A record as it travels, with the version as text: read only to name
/// what is wrong with a signed payload that does not decode as a record
/// (postcard keeps no message from a failed field).
#[derive(Serialize, Deserialize)]
struct WireRecord {
    name: String,
    version: String,
    module: ContentHash,
    size: u64,
    description: String,
    publisher: PeerKey,
    published_ms: u64,
}

/// Why a signed payload did not decode, if a field says so.
fn diagnose(signed: &Signed<ModuleRecord>) -> Option<RecordError> {
    let wire: WireRecord =
        codec::from_canonical_bytes(signed.payload_bytes(), MAX_RECORD_BYTES).ok()?;
    if &wire.publisher != signed.signer() {
        return Some(RecordError::SignerMismatch {
            publisher: wire.publisher.short(),
            signer: signed.signer().short(),
        });
    }
    parse_version(&wire.version)
        .err()
        .map(RecordError::BadVersion)
}

#[cfg(test)]
pub(crate) mod tests;
