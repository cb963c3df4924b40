//! `corral dashboard --url`: the local daemon's live page, as a URL to open
//! (carrying the login token when the page listens beyond loopback).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::config::DataDir;
use crate::control::{Request, client};

/// `corral dashboard --url`.
pub fn url(data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let status = client::call(dir.root(), Request::Status)?;
    let addr: SocketAddr = status["http"]
        .as_str()
        .context(
            "this daemon serves no page (started with --no-http, or its address was taken: \
             see its log; `corral up --http ADDR` picks another)",
        )?
        .parse()
        .context("the daemon reported a page address that is not one")?;
    println!(
        "{}",
        page_url(addr, || crate::http::read_token(dir.root()))?
    );
    Ok(ExitCode::SUCCESS)
}

/// The URL of a page listening on `addr`: a page on all addresses is
/// opened here through loopback; one beyond loopback needs its token.
fn page_url(
    addr: SocketAddr,
    token: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<String> {
    let mut shown = addr;
    if addr.ip().is_unspecified() {
        shown.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(if addr.ip().is_loopback() {
        format!("http://{shown}/")
    } else {
        format!("http://{shown}/?token={}", token()?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_carry_the_token_only_beyond_loopback() {
        let no_token = || -> anyhow::Result<String> { anyhow::bail!("not asked") };
        let url = |a: &str| page_url(a.parse().expect("addr"), || Ok("t0k".into()));
        assert_eq!(
            page_url("127.0.0.1:7420".parse().expect("addr"), no_token).expect("url"),
            "http://127.0.0.1:7420/"
        );
        assert_eq!(
            url("10.0.0.5:80").expect("url"),
            "http://10.0.0.5:80/?token=t0k"
        );
        assert_eq!(
            url("0.0.0.0:7420").expect("url"),
            "http://127.0.0.1:7420/?token=t0k"
        );
        assert_eq!(
            url("[::]:7420").expect("url"),
            "http://[::1]:7420/?token=t0k"
        );
    }
}
