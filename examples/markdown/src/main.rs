//! Markdown to HTML, as a WAGI module for `corral serve` (and a plain
//! filter otherwise).
//!
//! Under `corral serve` (CGI/1.1: `REQUEST_METHOD` set) it answers
//!   GET, HEAD  a small page with a form and how to use it;
//!   POST       the body, Markdown, rendered as HTML (the page form's
//!              `markdown` field when the body is that form);
//!   other      405 with `Allow: GET, HEAD, POST`;
//! a body that is no UTF-8 text gets 400. Raw HTML in the Markdown is shown
//! as text, not passed through: what a stranger posts cannot put script
//! into the page it gets back.
//!
//! Without `REQUEST_METHOD` it reads Markdown on stdin and writes the HTML
//! on stdout, with no headers: `corral run --local markdown.wasm < x.md`.

use std::io::{Read, Write};

use pulldown_cmark::{Event, Options, Parser, html};

/// Largest body read (the server bounds it too).
const MAX_INPUT: u64 = 8 * 1024 * 1024;

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Markdown on the mesh</title></head>
<body>
<h1>Markdown to HTML</h1>
<p>POST Markdown to this address and get HTML back, rendered on whichever
device of the mesh was idle:</p>
<pre>curl --data-binary @README.md URL</pre>
<form method="post">
<textarea name="markdown" rows="12" cols="72"># Hello

*from the mesh*</textarea>
<p><button type="submit">Render</button></p>
</form>
</body>
</html>
"#;

/// The HTML of `markdown`, raw HTML in it escaped as text.
fn render(markdown: &str) -> String {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let events = Parser::new_ext(markdown, options).map(|event| match event {
        Event::Html(raw) | Event::InlineHtml(raw) => Event::Text(raw),
        other => other,
    });
    let mut out = String::with_capacity(markdown.len() * 3 / 2);
    html::push_html(&mut out, events);
    out
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The `markdown` field of a form body.
fn form_field(body: &str) -> Option<String> {
    body.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| *name == "markdown")
        .and_then(|(_, value)| form_decode(value))
}

/// A CGI response: status (when not 200), content type, extra headers, body.
fn respond(status: Option<&str>, extra: &[&str], body: &str) {
    let mut out = std::io::stdout().lock();
    let mut head = String::new();
    if let Some(status) = status {
        head.push_str(&format!("Status: {status}\n"));
    }
    for line in extra {
        head.push_str(line);
        head.push('\n');
    }
    let kind = if status.is_some() {
        "text/plain; charset=utf-8"
    } else {
        "text/html; charset=utf-8"
    };
    head.push_str(&format!("Content-Type: {kind}\n\n"));
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(body.as_bytes());
    let _ = out.flush();
}

fn read_input() -> Result<String, ()> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_end(&mut bytes)
        .map_err(|_| ())?;
    String::from_utf8(bytes).map_err(|_| ())
}

fn main() {
    let Ok(method) = std::env::var("REQUEST_METHOD") else {
        // A plain filter.
        match read_input() {
            Ok(text) => print!("{}", render(&text)),
            Err(()) => {
                eprintln!("markdown: stdin is not UTF-8 text");
                std::process::exit(1);
            }
        }
        return;
    };
    match method.as_str() {
        "GET" => respond(None, &[], PAGE),
        "HEAD" => respond(None, &[], ""),
        "POST" => {
            let Ok(body) = read_input() else {
                respond(Some("400 Bad Request"), &[], "the body is not UTF-8 text\n");
                return;
            };
            // The page's form sends its `markdown` field; anything else
            // (curl --data-binary sends the form type too) is Markdown.
            let form = std::env::var("CONTENT_TYPE")
                .is_ok_and(|t| t.starts_with("application/x-www-form-urlencoded"));
            let markdown = match form.then(|| form_field(&body)).flatten() {
                Some(field) => field,
                None => body,
            };
            respond(None, &[], &render(&markdown));
        }
        _ => respond(
            Some("405 Method Not Allowed"),
            &["Allow: GET, HEAD, POST"],
            "use GET for the form, POST to render Markdown\n",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_becomes_html_and_raw_html_stays_text() {
        assert_eq!(render("# Hi\n"), "<h1>Hi</h1>\n");
        let out = render("a <script>alert(1)</script> b\n");
        assert!(!out.contains("<script>"), "{out}");
        assert!(out.contains("&lt;script&gt;"), "{out}");
    }

    #[test]
    fn form_fields_decode() {
        assert_eq!(
            form_field("x=1&markdown=%23+Hi%0A").as_deref(),
            Some("# Hi\n")
        );
        assert_eq!(form_field("markdown=%zz"), None);
        assert_eq!(form_field("other=1"), None);
    }
}
