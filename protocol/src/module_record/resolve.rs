//! Resolution: which module a reference means, among the records a node
//! holds, counting only publishers it trusts.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::fmt;

use semver::{Version, VersionReq};

use super::{ModuleRecord, ModuleRef};
use crate::hash::ContentHash;
use crate::ids::PeerKey;

/// Most entries an error message lists; the error itself holds them all.
const LISTED: usize = 8;

/// What a reference resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The record chosen: of the trusted records of the newest matching
    /// version, which all name the same module, the first published (then
    /// the smallest publisher key), so the choice does not depend on order.
    pub record: ModuleRecord,
    /// Every trusted publisher of that module at that version, sorted.
    pub publishers: Vec<PeerKey>,
}

/// One publisher's claim of what a version is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Claim {
    /// Who claims it.
    pub publisher: PeerKey,
    /// The module's hash.
    pub module: ContentHash,
    /// The module's size.
    pub size: u64,
}

impl Claim {
    /// What `record` claims.
    pub fn of(record: &ModuleRecord) -> Self {
        Self {
            publisher: record.publisher,
            module: record.module,
            size: record.size,
        }
    }
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} says {} ({} bytes)",
            self.publisher.short(),
            self.module.short(),
            self.size
        )
    }
}

/// Why a reference did not resolve; each names what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// No trusted publisher has a matching version (and no untrusted one
    /// either).
    #[error(
        "no trusted publisher has {name} at {}; versions from trusted publishers: {}",
        wanted(req),
        listed(versions_known)
    )]
    NotFound {
        /// The name wanted.
        name: String,
        /// The versions wanted.
        req: VersionReq,
        /// Every version of `name` from trusted publishers, ascending.
        versions_known: Vec<Version>,
    },
    /// Only publishers this node does not trust have a matching version.
    #[error(
        "{name} at a version wanted is published only by keys this device does not trust: {}; \
         if you mean to run their modules, trust one with `corral trust add KEY`",
        listed(signers)
    )]
    UntrustedOnly {
        /// The name wanted.
        name: String,
        /// Those publishers, sorted.
        signers: Vec<PeerKey>,
    },
    /// Trusted records of the chosen version name different modules.
    #[error(
        "trusted records of {name}@{version} disagree on the module: {}; ask its publishers, \
         or stop trusting one",
        listed(claims)
    )]
    Conflict {
        /// The name.
        name: String,
        /// The version.
        version: Version,
        /// Every distinct trusted claim, sorted.
        claims: Vec<Claim>,
    },
}

impl ResolveError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ResolveError::NotFound { .. } => "not_found",
            ResolveError::UntrustedOnly { .. } => "untrusted_only",
            ResolveError::Conflict { .. } => "conflict",
        }
    }
}

/// A requirement for people: `*` reads as "any version".
fn wanted(req: &VersionReq) -> String {
    if *req == VersionReq::STAR {
        "any version".into()
    } else {
        req.to_string()
    }
}

/// The first [`LISTED`] of `items`, comma-separated, and how many more.
fn listed<T: fmt::Display>(items: &[T]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let mut text = items
        .iter()
        .take(LISTED)
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > LISTED {
        text.push_str(&format!(" and {} more", items.len() - LISTED));
    }
    text
}

/// The module `want` means among `records`: the newest version that matches
/// its requirement, counting only records whose publisher `trusted` accepts
/// (pre-releases only as [`ModuleRef`] allows them).
///
/// `records` are taken as verified ([`super::verify_record`]): this trusts
/// each one's `publisher` field. Records of untrusted keys are ignored, but
/// named in the error when only they match. If the trusted records of the
/// newest matching version disagree on the module (its hash or size, from
/// two publishers or from one that signed twice), that is a conflict, never
/// a choice; identical copies agree.
pub fn resolve<'a>(
    records: impl IntoIterator<Item = &'a ModuleRecord>,
    trusted: impl Fn(&PeerKey) -> bool,
    want: &ModuleRef,
) -> Result<Resolved, ResolveError> {
    // The trusted matching records of the newest version seen so far.
    let mut newest: Vec<&ModuleRecord> = Vec::new();
    let mut versions_known = BTreeSet::new();
    let mut untrusted = BTreeSet::new();
    for record in records {
        if record.name != want.name {
            continue;
        }
        let matches = want.req.matches(&record.version);
        if !trusted(&record.publisher) {
            if matches {
                untrusted.insert(record.publisher);
            }
            continue;
        }
        versions_known.insert(&record.version);
        if !matches {
            continue;
        }
        // Precedence, not equality: versions differing only in build
        // metadata (which valid records never have) are one version.
        match newest
            .first()
            .map(|best| record.version.cmp_precedence(&best.version))
        {
            None | Some(Ordering::Greater) => newest = vec![record],
            Some(Ordering::Equal) => newest.push(record),
            Some(Ordering::Less) => {}
        }
    }
    let chosen = newest.iter().min_by(|a, b| {
        (a.published_ms, &a.publisher, &a.description).cmp(&(
            b.published_ms,
            &b.publisher,
            &b.description,
        ))
    });
    let Some(chosen) = chosen else {
        if !untrusted.is_empty() {
            return Err(ResolveError::UntrustedOnly {
                name: want.name.clone(),
                signers: untrusted.into_iter().collect(),
            });
        }
        return Err(ResolveError::NotFound {
            name: want.name.clone(),
            req: want.req.clone(),
            versions_known: versions_known.into_iter().cloned().collect(),
        });
    };
    if newest.iter().any(|r| !r.same_module(chosen)) {
        let claims: BTreeSet<Claim> = newest.iter().map(|r| Claim::of(r)).collect();
        return Err(ResolveError::Conflict {
            name: want.name.clone(),
            version: chosen.version.clone(),
            claims: claims.into_iter().collect(),
        });
    }
    let publishers: BTreeSet<PeerKey> = newest.iter().map(|r| r.publisher).collect();
    Ok(Resolved {
        record: (*chosen).clone(),
        publishers: publishers.into_iter().collect(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::module_record::tests::{PUBLISHED, record};

    fn pk(n: u8) -> PeerKey {
        PeerKey::from_bytes([n; 32])
    }

    const A: u8 = 1;
    const B: u8 = 2;
    const C: u8 = 3;

    fn want(text: &str) -> ModuleRef {
        ModuleRef::parse(text).expect(text)
    }

    /// A's (trusted) releases of `render`, one of `other`, and B's
    /// (untrusted) newer `render` and its own `secret`.
    fn shelf() -> Vec<ModuleRecord> {
        let mut records: Vec<ModuleRecord> = ["1.0.0", "1.2.0", "1.10.0", "2.0.0", "2.1.0-beta.1"]
            .into_iter()
            .map(|v| record("render", v, pk(A), &format!("render {v}")))
            .collect();
        records.push(record("other", "9.0.0", pk(A), "other"));
        records.push(record("render", "3.0.0", pk(B), "render 3 by B"));
        records.push(record("render", "2.0.0", pk(B), "render 2 by B"));
        records.push(record("secret", "1.0.0", pk(B), "secret"));
        records
    }

    fn only_a(key: &PeerKey) -> bool {
        *key == pk(A)
    }

    fn version_of(records: &[ModuleRecord], reference: &str) -> String {
        resolve(records, only_a, &want(reference))
            .expect(reference)
            .record
            .version
            .to_string()
    }

    #[test]
    fn the_newest_trusted_matching_version_is_chosen() {
        let shelf = shelf();
        assert_eq!(
            version_of(&shelf, "render"),
            "2.0.0",
            "no pre-release, no B"
        );
        assert_eq!(
            version_of(&shelf, "render@^1"),
            "1.10.0",
            "semver, not text"
        );
        assert_eq!(version_of(&shelf, "render@^1.2"), "1.10.0");
        assert_eq!(version_of(&shelf, "render@~1.2"), "1.2.0");
        assert_eq!(version_of(&shelf, "render@1.0.0"), "1.0.0");
        assert_eq!(version_of(&shelf, "render@1"), "1.10.0");
        assert_eq!(version_of(&shelf, "render@>=1.1, <2"), "1.10.0");
        assert_eq!(version_of(&shelf, "render@^2.1.0-beta"), "2.1.0-beta.1");
        assert_eq!(version_of(&shelf, "render@2.1.0-beta.1"), "2.1.0-beta.1");
        assert_eq!(version_of(&shelf, "other"), "9.0.0");
        let got = resolve(&shelf, only_a, &want("render")).expect("render");
        assert_eq!(got.record, shelf[3]);
        assert_eq!(got.publishers, vec![pk(A)]);
    }

    #[test]
    fn untrusted_records_are_ignored_but_named_when_only_they_match() {
        let shelf = shelf();
        let err = resolve(&shelf, only_a, &want("secret")).expect_err("untrusted");
        assert_eq!(
            err,
            ResolveError::UntrustedOnly {
                name: "secret".into(),
                signers: vec![pk(B)],
            }
        );
        let text = err.to_string();
        assert!(text.contains(&pk(B).to_string()), "the whole key: {text}");
        assert!(text.contains("corral trust add"), "{text}");
        // B's 3.0.0 is the only one matching ^3.
        let err = resolve(&shelf, only_a, &want("render@^3")).expect_err("untrusted");
        assert_eq!(err.code(), "untrusted_only");
        // Trusting nobody: everything is untrusted.
        let err = resolve(&shelf, |_| false, &want("render")).expect_err("nobody");
        let ResolveError::UntrustedOnly { signers, .. } = err else {
            panic!("{err:?}");
        };
        assert_eq!(signers, vec![pk(A), pk(B)]);
    }

    #[test]
    fn not_found_lists_only_trusted_versions() {
        let shelf = shelf();
        let err = resolve(&shelf, only_a, &want("render@^4")).expect_err("none");
        let ResolveError::NotFound {
            name,
            req,
            versions_known,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!((name.as_str(), req.to_string().as_str()), ("render", "^4"));
        let known: Vec<String> = versions_known.iter().map(ToString::to_string).collect();
        assert_eq!(known, ["1.0.0", "1.2.0", "1.10.0", "2.0.0", "2.1.0-beta.1"]);
        assert!(err.to_string().contains("1.10.0, 2.0.0"), "{err}");
        assert!(err.to_string().contains("render at ^4;"), "{err}");
        let err = resolve(&shelf, only_a, &want("nothing")).expect_err("unknown");
        assert_eq!(err.code(), "not_found");
        assert!(err.to_string().contains("nothing at any version;"), "{err}");
        assert!(err.to_string().ends_with("none"), "{err}");
        let err = resolve(std::iter::empty(), only_a, &want("render")).expect_err("empty");
        assert_eq!(err.code(), "not_found");
    }

    #[test]
    fn two_trusted_publishers_that_disagree_are_a_conflict() {
        let mut shelf = shelf();
        shelf.push(record("render", "2.0.0", pk(C), "render 2 by C"));
        let a_or_c = |k: &PeerKey| *k == pk(A) || *k == pk(C);
        let err = resolve(&shelf, a_or_c, &want("render")).expect_err("conflict");
        let ResolveError::Conflict {
            name,
            version,
            claims,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert_eq!(
            (name.as_str(), version.to_string().as_str()),
            ("render", "2.0.0")
        );
        assert_eq!(
            claims,
            &vec![Claim::of(&shelf[3]), Claim::of(&shelf[shelf.len() - 1])]
        );
        let text = err.to_string();
        assert!(text.contains(&pk(A).short()) && text.contains(&pk(C).short()));
        // No quiet fall-back to an older version, in any order.
        shelf.reverse();
        assert_eq!(resolve(&shelf, a_or_c, &want("render")), Err(err.clone()));
        // An older version on which they do not disagree still resolves.
        assert_eq!(
            resolve(&shelf, a_or_c, &want("render@^1")).map(|r| r.record.version.to_string()),
            Ok("1.10.0".into())
        );
        // B disagrees too, but B is not trusted: no conflict.
        assert!(resolve(&shelf, only_a, &want("render")).is_ok());
    }

    #[test]
    fn one_publisher_with_two_modules_for_a_version_is_a_conflict() {
        let mut shelf = shelf();
        shelf.push(record("render", "2.0.0", pk(A), "render 2, again"));
        let err = resolve(&shelf, only_a, &want("render")).expect_err("conflict");
        assert_eq!(err.code(), "conflict");
        // The same hash with another size is another module too.
        let mut shelf = self::shelf();
        let mut odd = shelf[3].clone();
        odd.size += 1;
        shelf.push(odd);
        let err = resolve(&shelf, only_a, &want("render")).expect_err("conflict");
        assert_eq!(err.code(), "conflict");
    }

    #[test]
    fn identical_copies_agree_and_the_choice_does_not_depend_on_order() {
        let mut shelf = shelf();
        let mut by_c = record("render", "2.0.0", pk(C), "render 2.0.0");
        by_c.description = "C's words".into();
        by_c.published_ms = PUBLISHED - 1;
        shelf.push(shelf[3].clone());
        shelf.push(by_c.clone());
        let trusted: BTreeSet<PeerKey> = [pk(A), pk(C)].into();
        let is_trusted = |k: &PeerKey| trusted.contains(k);
        let got = resolve(&shelf, is_trusted, &want("render")).expect("agree");
        assert_eq!(got.record, by_c, "the first published");
        assert_eq!(got.publishers, vec![pk(A), pk(C)]);
        shelf.reverse();
        assert_eq!(resolve(&shelf, is_trusted, &want("render")), Ok(got));
    }

    #[test]
    fn long_lists_in_messages_are_cut() {
        let records: Vec<ModuleRecord> = (0..20)
            .map(|n| record("render", &format!("1.0.{n}"), pk(A), "x"))
            .collect();
        let err = resolve(&records, only_a, &want("render@^2")).expect_err("none");
        assert!(err.to_string().ends_with("and 12 more"), "{err}");
    }

    fn records() -> impl Strategy<Value = Vec<ModuleRecord>> {
        let one = (
            prop::sample::select(vec!["render", "other"]),
            prop::sample::select(vec!["1.0.0", "1.1.0", "1.1.0-rc.1", "2.0.0", "2.0.1-beta"]),
            0u8..4,
            0u8..3,
        )
            .prop_map(|(name, version, publisher, content)| {
                record(name, version, pk(publisher), &format!("module {content}"))
            });
        prop::collection::vec(one, 0..24)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn resolution_never_returns_an_untrusted_record_and_never_hides_a_newer_one(
            records in records(),
            trusted_mask in 0u8..16,
            reference in prop::sample::select(vec![
                "render", "render@^1", "render@~1.1", "render@1.1.0", "render@^2.0.1-beta",
                "render@>=1, <2", "render@1.1.0-rc.1", "other", "other@2",
            ]),
        ) {
            let trusted = |k: &PeerKey| trusted_mask & (1 << k.as_bytes()[0]) != 0;
            let want = want(reference);
            let matching: Vec<&ModuleRecord> =
                records.iter().filter(|r| want.matches(r)).collect();
            let trusted_matching: Vec<&&ModuleRecord> =
                matching.iter().filter(|r| trusted(&r.publisher)).collect();
            match resolve(&records, trusted, &want) {
                Ok(got) => {
                    prop_assert!(trusted(&got.record.publisher));
                    prop_assert!(got.publishers.iter().all(trusted));
                    prop_assert!(got.publishers.contains(&got.record.publisher));
                    prop_assert!(want.matches(&got.record));
                    prop_assert!(records.contains(&got.record));
                    for r in &trusted_matching {
                        prop_assert!(r.version <= got.record.version);
                        if r.version == got.record.version {
                            prop_assert!(r.same_module(&got.record));
                        }
                    }
                }
                Err(ResolveError::Conflict { version, claims, .. }) => {
                    prop_assert!(claims.len() >= 2);
                    prop_assert!(claims.iter().all(|c| trusted(&c.publisher)));
                    prop_assert!(trusted_matching.iter().all(|r| r.version <= version));
                }
                Err(ResolveError::UntrustedOnly { signers, .. }) => {
                    prop_assert!(trusted_matching.is_empty());
                    prop_assert!(!signers.is_empty());
                    prop_assert!(!signers.iter().any(trusted));
                }
                Err(ResolveError::NotFound { .. }) => prop_assert!(matching.is_empty()),
            }
        }
    }
}
