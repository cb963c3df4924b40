//! A WAGI module's stdout read as a CGI response (RFC 3875 §6): header
//! lines (`Content-Type`, `Status: 404 Not Found`, `Location`, and others
//! passed through when they are valid HTTP), a blank line, the body. A
//! response that breaks the rules is refused with the reason (the server
//! answers 502 and logs it); nothing the module writes can make the
//! server send an invalid response or panic.

use hyper::StatusCode;
use hyper::header::{HeaderName, HeaderValue};

/// Largest header block a module may write.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines.
pub const MAX_HEAD_LINES: usize = 64;

/// Headers a module may not set: the server owns the connection and the
/// framing (it counts the body itself).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// A module's response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgiResponse {
    /// From `Status:`; 302 with only `Location`; else 200.
    pub status: StatusCode,
    /// The headers to send, in order (without `Status` and hop-by-hop ones).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Everything after the blank line.
    pub body: Vec<u8>,
}

/// Why a module's output is not a CGI response.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CgiResponseError {
    /// The output ends before the blank line that ends the headers.
    #[error("no blank line after the headers")]
    NoBlankLine,
    /// The header block is over [`MAX_HEAD_BYTES`] or [`MAX_HEAD_LINES`].
    #[error("the headers are over {MAX_HEAD_BYTES} bytes or {MAX_HEAD_LINES} lines")]
    HeadTooLarge,
    /// A header line that is not `Name: value`.
    #[error("header line {0} is not `Name: value`")]
    BadLine(usize),
    /// A header name or value HTTP does not allow.
    #[error("header line {0} holds a name or value HTTP does not allow")]
    BadHeader(usize),
    /// `Status:` is not a final status code (200–599) with an optional reason.
    #[error("bad Status header: {0:?}")]
    BadStatus(String),
    /// `Status:` twice.
    #[error("Status is given twice")]
    TwoStatuses,
    /// None of `Content-Type`, `Location` or `Status`.
    #[error("no Content-Type, Location or Status header")]
    NoCgiHeader,
}

/// Reads `output` as a CGI response.
pub fn parse_response(output: &[u8]) -> Result<CgiResponse, CgiResponseError> {
    let mut status: Option<StatusCode> = None;
    let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let mut has_type = false;
    let mut has_location = false;
    let mut at = 0usize;
    let mut line_no = 0usize;
    let body_start = loop {
        let Some(end) = output[at..].iter().position(|&b| b == b'\n') else {
            return Err(if output.len() > MAX_HEAD_BYTES {
                CgiResponseError::HeadTooLarge
            } else {
                CgiResponseError::NoBlankLine
            });
        };
        let raw = &output[at..at + end];
        let next = at + end + 1;
        if next > MAX_HEAD_BYTES + 2 {
            return Err(CgiResponseError::HeadTooLarge);
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        at = next;
        if line.is_empty() {
            break at;
        }
        line_no += 1;
        if line_no > MAX_HEAD_LINES {
            return Err(CgiResponseError::HeadTooLarge);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(CgiResponseError::BadLine(line_no))?;
        let name = HeaderName::from_bytes(&line[..colon])
            .map_err(|_| CgiResponseError::BadHeader(line_no))?;
        let value = line[colon + 1..].trim_ascii();
        if name.as_str() == "status" {
            if status.is_some() {
                return Err(CgiResponseError::TwoStatuses);
            }
            status = Some(parse_status(value)?);
            continue;
        }
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let value =
            HeaderValue::from_bytes(value).map_err(|_| CgiResponseError::BadHeader(line_no))?;
        has_type |= name == hyper::header::CONTENT_TYPE;
        has_location |= name == hyper::header::LOCATION;
        headers.push((name, value));
    };
    if status.is_none() && !has_type && !has_location {
        return Err(CgiResponseError::NoCgiHeader);
    }
    let status = status.unwrap_or(if has_location && !has_type {
        StatusCode::FOUND
    } else {
        StatusCode::OK
    });
    Ok(CgiResponse {
        status,
        headers,
        body: output[body_start..].to_vec(),
    })
}

/// `404`, `404 Not Found`: a final status code (the reason is not kept;
/// the server sends the standard one).
fn parse_status(value: &[u8]) -> Result<StatusCode, CgiResponseError> {
    let bad = || CgiResponseError::BadStatus(String::from_utf8_lossy(value).into_owned());
    let code = value.get(..3).ok_or_else(bad)?;
    if value.len() > 3 && value[3] != b' ' {
        return Err(bad());
    }
    let code: u16 = std::str::from_utf8(code)
        .ok()
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    if !(200..=599).contains(&code) {
        return Err(bad());
    }
    StatusCode::from_u16(code).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_response_is_read() {
        let r = parse_response(b"Content-Type: text/html\n\n<p>hi</p>\n").expect("response");
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.headers[0].0, hyper::header::CONTENT_TYPE);
        assert_eq!(r.headers[0].1, "text/html");
        assert_eq!(r.body, b"<p>hi</p>\n");
        // CRLF line ends, an empty body, extra headers passed through.
        let r = parse_response(b"Content-Type: text/plain\r\nX-Thing:  a b \r\n\r\n")
            .expect("response");
        assert_eq!(r.body, b"");
        assert_eq!(r.headers[1].1, "a b");
    }

    #[test]
    fn status_and_location_set_the_code() {
        let r = parse_response(b"Status: 404 Not Found\nContent-Type: text/plain\n\nno\n")
            .expect("response");
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert!(r.headers.iter().all(|(n, _)| n != "status"));
        assert_eq!(parse_response(b"Status: 405\n\n").expect("r").status, 405);
        let r = parse_response(b"Location: /elsewhere\n\n").expect("response");
        assert_eq!(r.status, StatusCode::FOUND);
        let r = parse_response(b"Status: 303 See Other\nLocation: /x\n\n").expect("response");
        assert_eq!(r.status, StatusCode::SEE_OTHER);
    }

    #[test]
    fn malformed_output_is_refused_with_the_reason() {
        use CgiResponseError as E;
        for (output, want) in [
            (&b""[..], E::NoBlankLine),
            (
                &b"Content-Type: text/html\n<p>no blank line"[..],
                E::NoBlankLine,
            ),
            (&b"<html>just a page</html>\n\n"[..], E::BadLine(1)),
            (&b"Content Type: x\n\n"[..], E::BadHeader(1)),
            (&b"Content-Type: a\x01b\n\n"[..], E::BadHeader(1)),
            (&b"X-Other: 1\n\nbody"[..], E::NoCgiHeader),
            (&b"Status: 200\nStatus: 404\n\n"[..], E::TwoStatuses),
        ] {
            assert_eq!(
                parse_response(output),
                Err(want),
                "{}",
                String::from_utf8_lossy(output)
            );
        }
        for status in [
            "abc",
            "99",
            "100 Continue",
            "600",
            "2000",
            "20x",
            "404Not",
            "",
        ] {
            let output = format!("Status: {status}\n\n");
            assert!(
                matches!(parse_response(output.as_bytes()), Err(E::BadStatus(_))),
                "{status}"
            );
        }
        // Binary garbage never panics.
        let garbage: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
        assert!(parse_response(&garbage).is_err());
    }

    #[test]
    fn the_header_block_is_bounded() {
        let mut big = b"Content-Type: text/plain\nX-Pad: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES));
        big.extend(b"\n\nbody");
        assert_eq!(parse_response(&big), Err(CgiResponseError::HeadTooLarge));
        let mut long = Vec::new();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
        assert_eq!(parse_response(&long), Err(CgiResponseError::HeadTooLarge));
        let mut many = b"Content-Type: text/plain\n".to_vec();
        for i in 0..MAX_HEAD_LINES {
            many.extend(format!("X-{i}: v\n").as_bytes());
        }
        many.extend(b"\n");
        assert_eq!(parse_response(&many), Err(CgiResponseError::HeadTooLarge));
        // A big body after a small head is fine.
        let mut ok = b"Content-Type: text/plain\n\n".to_vec();
        ok.extend(std::iter::repeat_n(b'x', 1 << 20));
        assert_eq!(parse_response(&ok).expect("ok").body.len(), 1 << 20);
    }

    #[test]
    fn the_module_cannot_set_the_framing() {
        let r = parse_response(
            b"Content-Type: text/plain\nContent-Length: 999\nTransfer-Encoding: chunked\nConnection: close\n\nhi",
        )
        .expect("response");
        assert_eq!(r.headers.len(), 1, "{:?}", r.headers);
        assert_eq!(r.body, b"hi");
    }
}
