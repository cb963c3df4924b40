//! References to a module by name and version requirement, as people write
//! them: `render`, `render@1.2.3`, `render@^1.2`, `render@~1.2`,
//! `render@>=1, <2`.

use std::fmt;
use std::str::FromStr;

use semver::{Op, VersionReq};

use super::{ModuleRecord, NameError, check_name, shown};

/// Longest reference, as text.
pub const MAX_REF_BYTES: usize = 256;

/// A module wanted by name and version requirement.
///
/// A bare name wants any version; a version without an operator wants
/// exactly that version (`render@1.2.3` is `=1.2.3`, and `render@1.2` is
/// `=1.2`, any 1.2.x), not semver's default caret; `^`, `~`, `>=`, `<`, `*`
/// and comma-separated lists mean what they mean in semver. Pre-releases
/// match only a requirement that names one of the same `MAJOR.MINOR.PATCH`
/// (semver's rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRef {
    /// The module's name.
    pub name: String,
    /// The versions wanted.
    pub req: VersionReq,
}

/// A reference that does not parse; each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// Longer than any reference.
    #[error("a module reference of {len} bytes is over the limit of {limit}")]
    TooLong {
        /// Bytes seen.
        len: usize,
        /// The bound.
        limit: usize,
    },
    /// The name breaks the naming rules.
    #[error(transparent)]
    BadName(#[from] NameError),
    /// `name@` with nothing after the `@`.
    #[error("{name}@ names no version; write {name} for any version or {name}@1.2.3 for one")]
    EmptyRequirement {
        /// The name.
        name: String,
    },
    /// A requirement with build metadata, which versions never have.
    #[error(
        "version requirement {req:?} has build metadata (`+…`); module versions never do, so \
         leave it out"
    )]
    BuildMetadata {
        /// The requirement (its first 64 characters).
        req: String,
    },
    /// Not a semver requirement.
    #[error(
        "version requirement {req:?} does not parse ({why}); write 1.2.3, ^1.2, ~1.2 or \
         \">=1, <2\""
    )]
    BadRequirement {
        /// The requirement (its first 64 characters).
        req: String,
        /// semver's reason.
        why: String,
    },
}

impl RefError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            RefError::TooLong { .. } => "too_long",
            RefError::BadName(_) => "bad_name",
            RefError::EmptyRequirement { .. } => "empty_requirement",
            RefError::BuildMetadata { .. } => "build_metadata",
            RefError::BadRequirement { .. } => "bad_requirement",
        }
    }
}

impl ModuleRef {
    /// Parses `name` or `name@REQUIREMENT`.
    pub fn parse(text: &str) -> Result<Self, RefError> {
        if text.len() > MAX_REF_BYTES {
            return Err(RefError::TooLong {
                len: text.len(),
                limit: MAX_REF_BYTES,
            });
        }
        let (name, req) = match text.split_once('@') {
            Some((name, req)) => (name, Some(req)),
            None => (text, None),
        };
        check_name(name)?;
        let req = match req {
            None => VersionReq::STAR,
            Some(req) => parse_req(name, req)?,
        };
        Ok(Self {
            name: name.to_string(),
            req,
        })
    }

    /// Whether `record` is of this module, at a version wanted.
    pub fn matches(&self, record: &ModuleRecord) -> bool {
        record.name == self.name && self.req.matches(&record.version)
    }
}

/// A requirement, with a bare version meaning exactly that version.
fn parse_req(name: &str, text: &str) -> Result<VersionReq, RefError> {
    if text.trim().is_empty() {
        return Err(RefError::EmptyRequirement {
            name: name.to_string(),
        });
    }
    if text.contains('+') {
        return Err(RefError::BuildMetadata { req: shown(text) });
    }
    let mut req = VersionReq::parse(text).map_err(|e| RefError::BadRequirement {
        req: shown(text),
        why: e.to_string(),
    })?;
    // A parsed list has one comparator per comma-separated part; a part
    // that starts with a digit had no operator, and semver gave it a caret.
    for (comparator, part) in req.comparators.iter_mut().zip(text.split(',')) {
        let bare = part
            .trim_start_matches(' ')
            .starts_with(|c: char| c.is_ascii_digit());
        if bare && comparator.op == Op::Caret {
            comparator.op = Op::Exact;
        }
    }
    Ok(req)
}

impl FromStr for ModuleRef {
    type Err = RefError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl fmt::Display for ModuleRef {
    /// `name` for any version, else `name@REQUIREMENT` (which parses back
    /// to the same reference).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.req == VersionReq::STAR {
            f.write_str(&self.name)
        } else {
            write!(f, "{}@{}", self.name, self.req)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module_record::parse_version;

    fn wants(reference: &str, version: &str) -> bool {
        let r = ModuleRef::parse(reference).expect(reference);
        r.req.matches(&parse_version(version).expect(version))
    }

    #[test]
    fn a_bare_name_wants_any_release() {
        let r = ModuleRef::parse("render").expect("bare");
        assert_eq!(r.name, "render");
        assert_eq!(r.req, VersionReq::STAR);
        assert!(wants("render", "0.0.1") && wants("render", "99.0.0"));
        assert!(!wants("render", "1.0.0-rc.1"), "* wants no pre-release");
        assert_eq!(ModuleRef::parse("render@*"), Ok(r));
    }

    #[test]
    fn a_bare_version_is_exact_not_caret() {
        assert!(wants("render@1.2.3", "1.2.3"));
        for other in ["1.2.4", "1.3.0", "1.2.2", "1.2.3-rc.1"] {
            assert!(!wants("render@1.2.3", other), "{other}");
        }
        // A shorter bare version is exact in the parts it has.
        assert!(wants("render@1.2", "1.2.9") && !wants("render@1.2", "1.3.0"));
        assert!(wants("render@1", "1.9.0") && !wants("render@1", "2.0.0"));
        // In a list too, and an explicit operator is kept.
        assert!(wants("render@1.2.3, <2", "1.2.3") && !wants("render@1.2.3, <2", "1.2.4"));
        assert!(wants("render@>=1.0.0, 1.4.0", "1.4.0"));
        assert!(!wants("render@>=1.0.0, 1.4.0", "1.5.0"));
        assert!(wants("render@=1.2.3", "1.2.3"));
        assert!(wants("render@1.*", "1.7.0"));
    }

    #[test]
    fn caret_tilde_and_ranges_mean_what_semver_says() {
        assert!(wants("render@^1.2", "1.9.0") && !wants("render@^1.2", "2.0.0"));
        assert!(!wants("render@^1.2", "1.1.9"));
        assert!(wants("render@^0.2.3", "0.2.9") && !wants("render@^0.2.3", "0.3.0"));
        assert!(wants("render@~1.2", "1.2.9") && !wants("render@~1.2", "1.3.0"));
        assert!(wants("render@>=1, <2", "1.99.0") && !wants("render@>=1, <2", "2.0.0"));
        assert!(!wants("render@>=1, <2", "0.9.0"));
    }

    #[test]
    fn pre_releases_match_only_a_requirement_that_names_one() {
        assert!(!wants("render@^1.0", "1.1.0-beta.1"));
        assert!(wants("render@^1.1.0-beta", "1.1.0-beta.2"));
        assert!(wants("render@^1.1.0-beta", "1.1.0"));
        assert!(!wants("render@^1.1.0-beta", "1.2.0-alpha"), "other triple");
        assert!(wants("render@1.1.0-beta.1", "1.1.0-beta.1"));
        assert!(!wants("render@1.1.0-beta.1", "1.1.0"));
    }

    #[test]
    fn references_print_as_they_parse() {
        for text in ["render", "render@=1.2.3", "render@^1.2", "render@>=1, <2"] {
            let r = ModuleRef::parse(text).expect(text);
            assert_eq!(r.to_string(), text);
            assert_eq!(r.to_string().parse::<ModuleRef>(), Ok(r));
        }
        let exact = ModuleRef::parse("render@1.2.3").expect("exact");
        assert_eq!(exact.to_string(), "render@=1.2.3");
    }

    #[test]
    fn references_that_do_not_parse_say_why() {
        let cases = [
            ("", "bad_name"),
            ("@1.2.3", "bad_name"),
            ("Render@1.2.3", "bad_name"),
            ("ren/der", "bad_name"),
            ("render@", "empty_requirement"),
            ("render@ ", "empty_requirement"),
            ("render@1.2.3+build", "build_metadata"),
            ("render@v1.2.3", "bad_requirement"),
            ("render@1.2.3@4", "bad_requirement"),
            ("render@latest", "bad_requirement"),
            ("render@>=1,", "bad_requirement"),
            ("render@01.2.3", "bad_requirement"),
            ("render@\u{1b}[31m", "bad_requirement"),
        ];
        for (text, code) in cases {
            let err = ModuleRef::parse(text).expect_err(text);
            assert_eq!(err.code(), code, "{text:?}: {err}");
            assert!(!err.to_string().contains('\u{1b}'), "{err}");
        }
        let long = format!("render@{}", ">=1, ".repeat(60));
        assert_eq!(
            ModuleRef::parse(&long).expect_err("long").code(),
            "too_long"
        );
        let many = format!("render@{}1", ">=1, ".repeat(40));
        assert_eq!(
            ModuleRef::parse(&many).expect_err("many").code(),
            "bad_requirement",
            "semver bounds a list at 32"
        );
    }
}
