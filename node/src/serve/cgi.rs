//! A request as a WAGI module sees it: the CGI/1.1 environment (RFC 3875
//! §4.1) built from the HTTP request. The body goes on stdin (the
//! request's handler puts it there); the module's stdout comes back as a
//! CGI response ([`super::response`]).
//!
//! Request headers become `HTTP_*` variables, bounded in number and size,
//! except those that would hand something to the module it must not have:
//! `Authorization`, `Proxy-Authorization` and `Cookie` (the credentials
//! of the front door's users; the task runs on whichever device of the mesh
//! is idle, and the module's author never asked for them — a module that
//! needs a credential takes it in the body or the query), `Proxy` (it
//! would become `HTTP_PROXY`, which HTTP libraries read as their proxy:
//! "httpoxy"), and any name holding `_` (`X_Forwarded_For` and
//! `X-Forwarded-For` would both become `HTTP_X_FORWARDED_FOR`, so one
//! could stand in for the other). `Content-Type` and `Content-Length` are
//! `CONTENT_TYPE` and `CONTENT_LENGTH`, as CGI has them.

use std::net::SocketAddr;

use hyper::HeaderMap;

/// Most request headers forwarded as `HTTP_*` variables.
pub const MAX_HEADERS: usize = 64;
/// Most bytes of forwarded header names and values together.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// `SERVER_SOFTWARE`.
pub const SERVER_SOFTWARE: &str = concat!("corral/", env!("CARGO_PKG_VERSION"));

/// Headers never forwarded (lowercase), and why is in the file's docs.
const WITHHELD: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "proxy",
    "content-type",
    "content-length",
];

/// What the environment is built from.
#[derive(Debug)]
pub struct CgiRequest<'a> {
    /// `GET`, `POST`, …
    pub method: &'a str,
    /// The route's own part of the path.
    pub script_name: &'a str,
    /// The rest of the path, as the client sent it (percent-encoded).
    pub path_info: &'a str,
    /// The query, without `?` (empty when none).
    pub query: &'a str,
    /// The request's headers.
    pub headers: &'a HeaderMap,
    /// Bytes of the body (on stdin).
    pub body_len: usize,
    /// The address the server listens on.
    pub server: SocketAddr,
    /// The client's address.
    pub remote: SocketAddr,
    /// `HTTP/1.1` or `HTTP/1.0`.
    pub protocol: &'a str,
}

/// Why a request cannot be handed to a module.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CgiRequestError {
    /// PATH_INFO decodes to something that is no text, or holds a NUL.
    #[error("the path does not decode to text")]
    BadPath,
}

/// The module's whole environment for `request`, sorted by name.
pub fn environment(request: &CgiRequest<'_>) -> Result<Vec<(String, String)>, CgiRequestError> {
    let path_info = percent_decode(request.path_info).ok_or(CgiRequestError::BadPath)?;
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let server_name = header("host")
        .map(|host| host_name(host).to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| request.server.ip().to_string());
    let mut env: Vec<(String, String)> = vec![
        ("GATEWAY_INTERFACE".into(), "CGI/1.1".into()),
        ("REQUEST_METHOD".into(), request.method.to_string()),
        ("SCRIPT_NAME".into(), request.script_name.to_string()),
        ("PATH_INFO".into(), path_info),
        ("QUERY_STRING".into(), request.query.to_string()),
        ("SERVER_NAME".into(), server_name),
        ("SERVER_PORT".into(), request.server.port().to_string()),
        ("SERVER_PROTOCOL".into(), request.protocol.to_string()),
        ("SERVER_SOFTWARE".into(), SERVER_SOFTWARE.to_string()),
        ("REMOTE_ADDR".into(), request.remote.ip().to_string()),
        ("REMOTE_PORT".into(), request.remote.port().to_string()),
    ];
    if request.body_len > 0 || header("content-length").is_some() {
        env.push(("CONTENT_LENGTH".into(), request.body_len.to_string()));
    }
    if let Some(kind) = header("content-type") {
        env.push(("CONTENT_TYPE".into(), kind.to_string()));
    }
    env.extend(forwarded_headers(request.headers));
    env.sort();
    Ok(env)
}

/// The `HTTP_*` variables of `headers`: at most [`MAX_HEADERS`] of at
/// most [`MAX_HEADER_BYTES`] together (the rest are left out), repeated
/// headers joined with `, `, values that are no visible text left out.
pub fn forwarded_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut bytes = 0usize;
    for name in headers.keys() {
        let lower = name.as_str();
        if WITHHELD.contains(&lower) || lower.contains('_') {
            continue;
        }
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .collect();
        if values.is_empty() {
            continue;
        }
        let var = format!("HTTP_{}", lower.to_ascii_uppercase().replace('-', "_"));
        let value = values.join(", ");
        if out.len() >= MAX_HEADERS || bytes + var.len() + value.len() > MAX_HEADER_BYTES {
            tracing::debug!(
                header = lower,
                "a request header was left out (over the bounds)"
            );
            continue;
        }
        bytes += var.len() + value.len();
        out.push((var, value));
    }
    out
}

/// The host of a `Host` header (`example.org:8080` → `example.org`,
/// `[::1]:80` → `::1`); empty when it holds anything a host name cannot.
fn host_name(host: &str) -> &str {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    if name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
    {
        name
    } else {
        ""
    }
}

/// `%XX` decoded; `None` when the result is no UTF-8 text or holds NUL.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.contains('\0')).then_some(text)
}

#[cfg(test)]
mod tests {
    use hyper::header::{HeaderName, HeaderValue};

    use super::*;

    fn request<'a>(headers: &'a HeaderMap, path_info: &'a str) -> CgiRequest<'a> {
        CgiRequest {
            method: "POST",
            script_name: "/api",
            path_info,
            query: "a=1&b=2",
            headers,
            body_len: 5,
            server: "10.0.0.1:8080".parse().expect("addr"),
            remote: "10.0.0.9:5555".parse().expect("addr"),
            protocol: "HTTP/1.1",
        }
    }

    fn get<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_environment_holds_the_cgi_variables() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("example.org:8080"));
        headers.insert("content-type", HeaderValue::from_static("text/markdown"));
        headers.insert("content-length", HeaderValue::from_static("5"));
        headers.insert("x-request-id", HeaderValue::from_static("abc"));
        headers.append("accept", HeaderValue::from_static("text/html"));
        headers.append("accept", HeaderValue::from_static("*/*"));
        let env = environment(&request(&headers, "/users/a%20b")).expect("env");
        for (name, value) in [
            ("GATEWAY_INTERFACE", "CGI/1.1"),
            ("REQUEST_METHOD", "POST"),
            ("SCRIPT_NAME", "/api"),
            ("PATH_INFO", "/users/a b"),
            ("QUERY_STRING", "a=1&b=2"),
            ("CONTENT_TYPE", "text/markdown"),
            ("CONTENT_LENGTH", "5"),
            ("SERVER_NAME", "example.org"),
            ("SERVER_PORT", "8080"),
            ("SERVER_PROTOCOL", "HTTP/1.1"),
            ("REMOTE_ADDR", "10.0.0.9"),
            ("HTTP_X_REQUEST_ID", "abc"),
            ("HTTP_ACCEPT", "text/html, */*"),
            ("HTTP_HOST", "example.org:8080"),
        ] {
            assert_eq!(get(&env, name), Some(value), "{name} in {env:?}");
        }
        assert!(get(&env, "SERVER_SOFTWARE").is_some_and(|s| s.starts_with("corral/")));
        // Content-Type and -Length are not repeated as HTTP_*.
        assert_eq!(get(&env, "HTTP_CONTENT_TYPE"), None);
        assert_eq!(get(&env, "HTTP_CONTENT_LENGTH"), None);
        let mut sorted = env.clone();
        sorted.sort();
        assert_eq!(env, sorted);
    }

    #[test]
    fn credentials_proxies_and_ambiguous_names_are_not_forwarded() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("authorization", "Bearer secret"),
            ("proxy-authorization", "Basic secret"),
            ("cookie", "session=secret"),
            ("proxy", "http://evil:3128"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        headers.insert(
            "x-bin",
            HeaderValue::from_bytes(b"caf\xc3\xa9").expect("value"),
        );
        let env = environment(&request(&headers, "")).expect("env");
        assert!(
            !env.iter()
                .any(|(_, v)| v.contains("secret") || v.contains("evil")),
            "{env:?}"
        );
        assert_eq!(get(&env, "HTTP_PROXY"), None);
        assert_eq!(get(&env, "HTTP_X_FORWARDED_FOR"), Some("5.6.7.8"));
        // Not visible ASCII: left out rather than mangled.
        assert_eq!(get(&env, "HTTP_X_BIN"), None);
        // No Host header: the server's own address.
        assert_eq!(get(&env, "SERVER_NAME"), Some("10.0.0.1"));
    }

    #[test]
    fn forwarded_headers_are_bounded_in_number_and_size() {
        let mut headers = HeaderMap::new();
        for i in 0..(MAX_HEADERS + 20) {
            headers.insert(
                HeaderName::from_bytes(format!("x-h{i}").as_bytes()).expect("name"),
                HeaderValue::from_static("v"),
            );
        }
        assert_eq!(forwarded_headers(&headers).len(), MAX_HEADERS);
        let mut headers = HeaderMap::new();
        let big = "v".repeat(MAX_HEADER_BYTES / 3);
        for i in 0..5 {
            headers.insert(
                HeaderName::from_bytes(format!("x-big{i}").as_bytes()).expect("name"),
                HeaderValue::from_str(&big).expect("value"),
            );
        }
        let kept = forwarded_headers(&headers);
        let bytes: usize = kept.iter().map(|(k, v)| k.len() + v.len()).sum();
        assert!(
            bytes <= MAX_HEADER_BYTES && kept.len() == 2,
            "{}",
            kept.len()
        );
    }

    #[test]
    fn path_info_is_decoded_and_must_be_text() {
        let headers = HeaderMap::new();
        let env = environment(&request(&headers, "/a%2Fb/%C3%A9")).expect("env");
        assert_eq!(get(&env, "PATH_INFO"), Some("/a/b/é"));
        for bad in ["/%00", "/%ff", "/%zz", "/%4"] {
            assert_eq!(
                environment(&request(&headers, bad)).map(|_| ()),
                Err(CgiRequestError::BadPath),
                "{bad}"
            );
        }
        assert_eq!(host_name("[::1]:80"), "::1");
        assert_eq!(host_name("a.example"), "a.example");
        assert_eq!(host_name("evil/host"), "");
    }
}
