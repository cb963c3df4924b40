//! `corral serve`'s routes: `--route PATH=NAME[@REQ][;LIMIT=VALUE…]`
//! parsed and checked, and a request's path matched to the route that
//! serves it. A route may set its own limits (`timeout`, `memory`,
//! `max-body`, `max-output`) over the server's flags. A route is an
//! exact path (`/thumb`) or a prefix (`/api/*`, which serves `/api` and
//! everything under `/api/`); the most specific route wins: an exact path
//! before any prefix, a longer prefix before a shorter one.

use std::time::Duration;

use corral_protocol::module_record::ModuleRef;

use crate::units::{parse_duration, parse_size};

/// Most routes one server holds.
pub const MAX_ROUTES: usize = 64;
/// Longest route path.
pub const MAX_PATH_BYTES: usize = 256;

/// Where a route applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// This path only.
    Exact(String),
    /// This path and every path under it (kept without the trailing `/*`;
    /// `/*` alone is the empty prefix: everything).
    Prefix(String),
}

impl std::fmt::Display for Pattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pattern::Exact(path) => f.write_str(path),
            Pattern::Prefix(path) => write!(f, "{path}/*"),
        }
    }
}

/// One `--route` as given: where, which module by name, and the limits
/// it sets for itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// Where it applies.
    pub pattern: Pattern,
    /// The module reference as written (`markdown`, `markdown@1`, `api@^2`).
    pub reference: String,
    /// Its own limits, where it sets them.
    pub limits: OwnLimits,
}

/// The limits a route sets for itself (`;timeout=5s;memory=128MiB;
/// max-body=4MiB;max-output=1MiB`); the server's flags give the rest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnLimits {
    /// Wall-clock limit of a request's task.
    pub timeout: Option<Duration>,
    /// Its memory cap, bytes.
    pub memory: Option<u64>,
    /// Largest request body, bytes.
    pub max_body: Option<u64>,
    /// Largest response, bytes.
    pub max_output: Option<u64>,
}

/// The limits a route may set, as written after `;`.
const LIMIT_NAMES: &str = "timeout, memory, max-body, max-output";

/// Parses `PATH=NAME[@REQ][;LIMIT=VALUE…]`, with an error saying what is
/// wrong and what would be right.
pub fn parse_route(text: &str) -> Result<RouteSpec, String> {
    let mut parts = text.split(';');
    let route = parts.next().unwrap_or_default();
    let mut limits = OwnLimits::default();
    for option in parts {
        own_limit(&mut limits, option).map_err(|e| format!("--route {text:?}: {e}"))?;
    }
    let Some((path, reference)) = route.split_once('=') else {
        return Err(format!(
            "--route {text:?}: write PATH=NAME[@VERSION], such as /md=markdown@1 or '/api/*=api@^2'"
        ));
    };
    let (path, reference) = (path.trim(), reference.trim());
    if !path.starts_with('/') {
        return Err(format!("--route {text:?}: the path must start with /"));
    }
    if path.len() > MAX_PATH_BYTES {
        return Err(format!(
            "--route {text:?}: the path is longer than {MAX_PATH_BYTES} bytes"
        ));
    }
    let (base, prefix) = match path.strip_suffix("/*") {
        Some(base) => (base, true),
        None => (path, false),
    };
    if let Some(bad) = base
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "/-._~".contains(*c)))
    {
        return Err(format!(
            "--route {text:?}: {bad:?} cannot appear in a route path (letters, digits, / - . _ ~; \
             a prefix ends in /*)"
        ));
    }
    if base.contains("//") || base.split('/').any(|s| s == "." || s == "..") {
        return Err(format!(
            "--route {text:?}: the path holds an empty, . or .. segment"
        ));
    }
    if !prefix && base.len() > 1 && base.ends_with('/') {
        return Err(format!(
            "--route {text:?}: an exact path does not end in / (for everything under it, write {}*)",
            base
        ));
    }
    if reference.is_empty() {
        return Err(format!("--route {text:?}: no module named after ="));
    }
    ModuleRef::parse(reference).map_err(|e| format!("--route {text:?}: {e}"))?;
    let pattern = if prefix {
        Pattern::Prefix(base.to_string())
    } else {
        Pattern::Exact(base.to_string())
    };
    Ok(RouteSpec {
        pattern,
        reference: reference.to_string(),
        limits,
    })
}

/// Takes one `LIMIT=VALUE` into `limits`: a known limit, given once, with
/// a positive value.
fn own_limit(limits: &mut OwnLimits, option: &str) -> Result<(), String> {
    let Some((name, value)) = option.split_once('=') else {
        return Err(format!(
            "{option:?}: write LIMIT=VALUE after ; (limits: {LIMIT_NAMES})"
        ));
    };
    let (name, value) = (name.trim(), value.trim());
    let twice = || format!("{name} is given twice");
    let bad = |e: String| format!("{name}: {e}");
    match name {
        "timeout" if limits.timeout.is_some() => return Err(twice()),
        "timeout" => limits.timeout = Some(parse_duration(value).map_err(bad)?),
        "memory" | "max-body" | "max-output" => {
            let slot = match name {
                "memory" => &mut limits.memory,
                "max-body" => &mut limits.max_body,
                _ => &mut limits.max_output,
            };
            if slot.is_some() {
                return Err(twice());
            }
            *slot = Some(parse_size(value).map_err(bad)?);
        }
        _ => {
            return Err(format!(
                "{name:?} is not a limit a route sets (limits: {LIMIT_NAMES})"
            ));
        }
    }
    Ok(())
}

/// Checks a whole set of routes: at least one, at most [`MAX_ROUTES`], no
/// pattern twice.
pub fn check_routes(routes: &[RouteSpec]) -> Result<(), String> {
    if routes.is_empty() {
        return Err("give at least one --route PATH=NAME[@VERSION]".into());
    }
    if routes.len() > MAX_ROUTES {
        return Err(format!("at most {MAX_ROUTES} routes"));
    }
    for (i, a) in routes.iter().enumerate() {
        if routes[..i].iter().any(|b| b.pattern == a.pattern) {
            return Err(format!("--route {} is given twice", a.pattern));
        }
    }
    Ok(())
}

/// A request's path, as the route that matched it splits it (CGI's
/// `SCRIPT_NAME` and `PATH_INFO`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    /// The index of the route among those given.
    pub route: usize,
    /// The route's own part of the path.
    pub script_name: String,
    /// The rest (empty for an exact route; starts with `/` otherwise).
    pub path_info: String,
}

/// The most specific of the routes' `patterns` (in the order given) that
/// serves `path` (the path of the request's URI, without its query), or
/// `None`.
pub fn find<'a>(patterns: impl IntoIterator<Item = &'a Pattern>, path: &str) -> Option<Matched> {
    let mut best: Option<(usize, Matched)> = None;
    for (i, pattern) in patterns.into_iter().enumerate() {
        let (score, matched) = match pattern {
            Pattern::Exact(p) if p == path => (usize::MAX, (p.clone(), String::new())),
            Pattern::Exact(_) => continue,
            Pattern::Prefix(p) => {
                let Some(rest) = path.strip_prefix(p.as_str()) else {
                    continue;
                };
                if !(rest.is_empty() || rest.starts_with('/')) {
                    // `/api/*` does not serve `/apix`.
                    continue;
                }
                (p.len(), (p.clone(), rest.to_string()))
            }
        };
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            best = Some((
                score,
                Matched {
                    route: i,
                    script_name: matched.0,
                    path_info: matched.1,
                },
            ));
        }
    }
    best.map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(routes: &[RouteSpec]) -> impl Iterator<Item = &Pattern> {
        routes.iter().map(|r| &r.pattern)
    }

    fn routes(list: &[&str]) -> Vec<RouteSpec> {
        list.iter()
            .map(|r| parse_route(r).expect("a good route"))
            .collect()
    }

    #[test]
    fn bad_route_flags_are_refused_with_the_reason() {
        for (text, says) in [
            ("/md", "write PATH=NAME"),
            ("md=markdown", "must start with /"),
            ("/md=", "no module"),
            ("/md=Mark Down", "--route"),
            ("/a b=x", "cannot appear"),
            ("/a?q=x", "cannot appear"),
            ("/a/../b=x", ".."),
            ("/a//b=x", "empty"),
            ("/a/=x", "/a/*"),
            ("/a/*/b=x", "cannot appear"),
            ("/md=markdown@not.a.version", "--route"),
            ("/md=markdown;speed=3", "not a limit"),
            ("/md=markdown;timeout", "LIMIT=VALUE"),
            (
                "/md=markdown;timeout=soon",
                "timeout: `soon` is not a duration",
            ),
            ("/md=markdown;memory=0", "memory: `0` is zero"),
            ("/md=markdown;max-body=1s", "max-body"),
            ("/md=markdown;timeout=1s;timeout=2s", "twice"),
            ("/md=markdown;", "LIMIT=VALUE"),
        ] {
            let e = parse_route(text).expect_err(text);
            assert!(e.contains(says), "{text}: {e}");
        }
        let long = format!("/{}=x", "a".repeat(MAX_PATH_BYTES));
        assert!(parse_route(&long).expect_err("long").contains("longer"));
    }

    #[test]
    fn good_route_flags_parse() {
        assert_eq!(
            parse_route("/md=markdown@1").expect("route"),
            RouteSpec {
                pattern: Pattern::Exact("/md".into()),
                reference: "markdown@1".into(),
                limits: OwnLimits::default(),
            }
        );
        let own = parse_route("/api/*=api@>=1.2, <2; timeout=5s;memory=128MiB;max-body=4KiB")
            .expect("a route with its own limits");
        assert_eq!(own.reference, "api@>=1.2, <2");
        assert_eq!(
            own.limits,
            OwnLimits {
                timeout: Some(Duration::from_secs(5)),
                memory: Some(128 << 20),
                max_body: Some(4096),
                max_output: None,
            }
        );
        assert_eq!(
            parse_route("/api/*=api@^2").expect("route").pattern,
            Pattern::Prefix("/api".into())
        );
        assert_eq!(
            parse_route("/*=site").expect("route").pattern,
            Pattern::Prefix(String::new())
        );
        assert_eq!(
            parse_route("/=home").expect("route").pattern,
            Pattern::Exact("/".into())
        );
    }

    #[test]
    fn a_set_of_routes_is_checked_whole() {
        assert!(check_routes(&[]).is_err());
        let twice = routes(&["/a=x", "/a=y"]);
        assert!(check_routes(&twice).expect_err("twice").contains("twice"));
        assert!(check_routes(&routes(&["/a=x", "/a/*=y"])).is_ok());
        let many: Vec<RouteSpec> = (0..=MAX_ROUTES)
            .map(|i| parse_route(&format!("/r{i}=x")).expect("route"))
            .collect();
        assert!(check_routes(&many).is_err());
    }

    #[test]
    fn the_most_specific_route_serves_a_path() {
        let set = routes(&[
            "/api/*=api",
            "/api/v2/*=api2",
            "/api/health=health",
            "/*=site",
        ]);
        let at =
            |path: &str| find(patterns(&set), path).map(|m| (m.route, m.script_name, m.path_info));
        assert_eq!(
            at("/api/health"),
            Some((2, "/api/health".into(), "".into()))
        );
        assert_eq!(
            at("/api/users/7"),
            Some((0, "/api".into(), "/users/7".into()))
        );
        assert_eq!(at("/api"), Some((0, "/api".into(), "".into())));
        assert_eq!(at("/api/v2/x"), Some((1, "/api/v2".into(), "/x".into())));
        // Not a prefix match at a segment boundary: the catch-all.
        assert_eq!(at("/apix"), Some((3, "".into(), "/apix".into())));
        assert_eq!(at("/"), Some((3, "".into(), "/".into())));
        let exact = routes(&["/md=markdown"]);
        assert_eq!(find(patterns(&exact), "/md/x"), None);
        assert_eq!(find(patterns(&exact), "/m"), None);
        assert_eq!(
            find(patterns(&exact), "/md").map(|m| m.path_info),
            Some(String::new())
        );
    }
}
