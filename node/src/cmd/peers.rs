//! `corral status` and `corral peers`: the daemon's answers, as JSON or as
//! lines for people.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::DataDir;
use crate::control::{self, Request};

/// `corral status` and `corral peers`.
pub fn query(data_dir: Option<PathBuf>, request: Request, json: bool) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let answer = control::client::call(dir.root(), request.clone())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(ExitCode::SUCCESS);
    }
    match request {
        Request::Status => {
            println!(
                "{} ({})",
                answer["name"].as_str().unwrap_or("?"),
                answer["id"].as_str().unwrap_or("?")
            );
            println!(
                "  arch {}  engines {}  mesh {}",
                answer["arch"], answer["engines"], answer["mesh"]
            );
            println!(
                "  share {}  state {}  peers {}",
                answer["share"], answer["state"], answer["peers"]
            );
            for a in answer["addresses"].as_array().into_iter().flatten() {
                println!("  listening on {}", a.as_str().unwrap_or_default());
            }
            let reach = &answer["reachability"];
            println!(
                "  reachable: {}{}",
                reach["kind"].as_str().unwrap_or("?"),
                if answer["relay"] == true {
                    " (serving as the mesh's relay)"
                } else {
                    ""
                }
            );
            for a in reach["external"].as_array().into_iter().flatten() {
                println!(
                    "  reachable from outside at {}",
                    a.as_str().unwrap_or_default()
                );
            }
            for a in reach["relays"].as_array().into_iter().flatten() {
                println!("  relay {}", a.as_str().unwrap_or_default());
            }
        }
        _ => {
            let peers = answer.as_array().cloned().unwrap_or_default();
            if peers.is_empty() {
                println!("no other devices seen yet");
            }
            for p in peers {
                let reached = match (p["via"].as_str(), p["rtt_ms"].as_f64()) {
                    (Some(via), Some(rtt)) => format!("  {via} {rtt:.1} ms"),
                    (Some(via), None) => format!("  {via}"),
                    _ => String::new(),
                };
                println!("{}{reached}  seen {} ms ago", peer_line(&p), p["age_ms"]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line describing a peer of `corral peers --json`, for people.
pub fn peer_line(p: &serde_json::Value) -> String {
    let engines = p["engines"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format!(
        "{:<16} {:<8} {:<12} slots {}/{}  {}",
        p["name"].as_str().unwrap_or("?"),
        p["arch"].as_str().unwrap_or("?"),
        engines,
        p["slots_free"],
        p["slots_total"],
        p["state"].as_str().unwrap_or("?"),
    )
}
