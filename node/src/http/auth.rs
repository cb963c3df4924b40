//! Who may use the page. On a loopback address: anyone on this device,
//! but only under a loopback host name (a web page elsewhere cannot reach
//! it by rebinding its own name to 127.0.0.1). On any other address: only
//! with the login token (`$DATA_DIR/http.token`, mode 0600), given once as
//! `?token=` and then carried by an HttpOnly, SameSite=Strict cookie that
//! holds a digest of it, never the token. Actions (POST) also need the
//! page's own header and, when the browser names one, an Origin matching
//! the Host: a form or script of another site can send neither.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use corral_protocol::hash::ContentHash;
use hyper::header::{AUTHORIZATION, COOKIE, HOST, HeaderMap, ORIGIN};

/// The login token's file in the data dir.
pub const TOKEN_FILE: &str = "http.token";
/// The header the page sends with every action.
pub(super) const CSRF_HEADER: &str = "x-corral-csrf";
/// The session cookie's name.
const COOKIE_NAME: &str = "corral_session";

/// The checks of one page's address.
pub(super) struct Gate {
    /// The login token, when the address is not loopback.
    token: Option<String>,
}

/// Why a request is refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No token or a wrong one (401).
    Unauthorized,
    /// Not this page's host, or an action without the CSRF proofs (403).
    Forbidden(&'static str),
}

impl Gate {
    /// The gate of a page on `addr`: with a login token (read, or made
    /// now) unless `addr` is loopback.
    pub(super) fn for_addr(addr: SocketAddr, data_dir: &Path) -> anyhow::Result<Self> {
        let token = if addr.ip().is_loopback() {
            None
        } else {
            Some(load_or_make_token(data_dir)?)
        };
        Ok(Self { token })
    }

    #[cfg(test)]
    fn with_token(token: Option<&str>) -> Self {
        Self {
            token: token.map(str::to_string),
        }
    }

    /// Whether a request with these headers (and `query_token`, the
    /// `?token=` it carries) may be answered.
    pub(super) fn admit(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<(), Refusal> {
        let Some(token) = &self.token else {
            return match headers.get(HOST).and_then(|h| h.to_str().ok()) {
                Some(host) if is_loopback_host(host) => Ok(()),
                _ => Err(Refusal::Forbidden(
                    "this page answers only at a loopback address (127.0.0.1, localhost)",
                )),
            };
        };
        let bearer = headers
            .get(AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        let by_token = [query_token, bearer]
            .into_iter()
            .flatten()
            .any(|given| same(given.as_bytes(), token.as_bytes()));
        let session = session_of(token);
        let by_cookie = cookies(headers)
            .filter(|(name, _)| *name == COOKIE_NAME)
            .any(|(_, value)| same(value.as_bytes(), session.as_bytes()));
        if by_token || by_cookie {
            Ok(())
        } else {
            Err(Refusal::Unauthorized)
        }
    }

    /// Whether an action (POST) carries the page's proofs: its header,
    /// and an Origin (when the browser sends one) naming this very host.
    pub(super) fn action(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !headers.contains_key(CSRF_HEADER) {
            return Err(Refusal::Forbidden(
                "an action needs the x-corral-csrf header (the page sends it)",
            ));
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let host = headers.get(HOST).and_then(|h| h.to_str().ok());
            let matches = origin
                .to_str()
                .ok()
                .and_then(|o| o.strip_prefix("http://"))
                .is_some_and(|o| Some(o) == host);
            if !matches {
                return Err(Refusal::Forbidden("an action from another origin"));
            }
        }
        Ok(())
    }

    /// The `Set-Cookie` value that keeps a browser logged in, when the
    /// page has a token.
    pub(super) fn session_cookie(&self) -> Option<String> {
        self.token.as_ref().map(|token| {
            format!(
                "{COOKIE_NAME}={}; HttpOnly; SameSite=Strict; Path=/",
                session_of(token)
            )
        })
    }
}

/// The cookie's value: a digest of the token, so the cookie jar never
/// holds the token itself.
fn session_of(token: &str) -> String {
    ContentHash::of(format!("corral http session\0{token}").as_bytes()).to_string()
}

/// Each `name=value` of the request's cookies.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|c| c.trim().split_once('='))
}

/// Compares in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether a Host header names this device by a loopback name.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Reads the login token of the page in `data_dir` (`corral dashboard
/// --url`).
pub fn read_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the page's login token {}", path.display()))?;
    let token = text.trim().to_string();
    anyhow::ensure!(
        token.len() >= 32 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "{} does not hold a login token: remove it and restart the daemon to make a new one",
        path.display()
    );
    Ok(token)
}

/// The login token, made (32 random bytes, hex, mode 0600) the first time.
fn load_or_make_token(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if path.exists() {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private", path.display()))?;
        return read_token(data_dir);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("no randomness for a token: {e}"))?;
    let token = hex::encode(bytes);
    let mut options = std::fs::OpenOptions::new();
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.write(true).create_new(true).mode(0o600);
    }
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn loopback_pages_answer_only_loopback_host_names() {
        let gate = Gate::with_token(None);
        for host in [
            "127.0.0.1:7420",
            "localhost:7420",
            "[::1]:7420",
            "LOCALHOST",
        ] {
            assert_eq!(
                gate.admit(&headers(&[("host", host)]), None),
                Ok(()),
                "{host}"
            );
        }
        for host in [
            "evil.example:7420",
            "192.168.1.4:7420",
            "127.0.0.1.evil.example",
        ] {
            assert!(
                matches!(
                    gate.admit(&headers(&[("host", host)]), None),
                    Err(Refusal::Forbidden(_))
                ),
                "{host}"
            );
        }
        assert!(gate.admit(&headers(&[]), None).is_err());
    }

    #[test]
    fn other_addresses_need_the_token_or_its_cookie() {
        let token = "ab".repeat(32);
        let gate = Gate::with_token(Some(&token));
        let h = headers(&[("host", "10.0.0.2:7420")]);
        assert_eq!(gate.admit(&h, None), Err(Refusal::Unauthorized));
        assert_eq!(gate.admit(&h, Some("nope")), Err(Refusal::Unauthorized));
        assert_eq!(gate.admit(&h, Some(&token)), Ok(()));
        let bearer = format!("Bearer {token}");
        assert_eq!(
            gate.admit(&headers(&[("authorization", &bearer)]), None),
            Ok(())
        );
        let cookie = gate.session_cookie().expect("a cookie");
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains(&token), "the cookie holds a digest");
        let value = cookie.split(';').next().expect("name=value");
        let jar = format!("theme=dark; {value}");
        assert_eq!(gate.admit(&headers(&[("cookie", &jar)]), None), Ok(()));
        let forged = format!("{COOKIE_NAME}={token}");
        assert_eq!(
            gate.admit(&headers(&[("cookie", &forged)]), None),
            Err(Refusal::Unauthorized)
        );
    }

    #[test]
    fn actions_need_the_header_and_a_matching_origin() {
        let gate = Gate::with_token(None);
        let host = ("host", "127.0.0.1:7420");
        assert!(gate.action(&headers(&[host])).is_err());
        assert_eq!(gate.action(&headers(&[host, (CSRF_HEADER, "1")])), Ok(()));
        let same = [
            host,
            (CSRF_HEADER, "1"),
            ("origin", "http://127.0.0.1:7420"),
        ];
        assert_eq!(gate.action(&headers(&same)), Ok(()));
        let other = [host, (CSRF_HEADER, "1"), ("origin", "http://evil.example")];
        assert!(gate.action(&headers(&other)).is_err());
    }

    #[test]
    fn the_token_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = load_or_make_token(dir.path()).expect("made");
        assert_eq!(token.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(TOKEN_FILE))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_or_make_token(dir.path()).expect("read"), token);
        assert_eq!(read_token(dir.path()).expect("read"), token);
    }
}
