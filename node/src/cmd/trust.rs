//! `corral trust add|remove|list`: the submitters whose jobs this device
//! runs, through the daemon when it runs, else straight in the store.

use std::path::PathBuf;
use std::process::ExitCode;

use corral_protocol::ids::PeerKey;

use super::UsageError;
use crate::cli::TrustCommand;
use crate::clock::now_ms;
use crate::config::DataDir;
use crate::control::{self, Request};
use crate::store::Store;

/// `corral trust add|remove|list`.
pub fn trust(data_dir: Option<PathBuf>, command: TrustCommand) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let request = match &command {
        TrustCommand::Add { key, name } => {
            let parsed: PeerKey = key.parse().map_err(|e| UsageError(format!("{e}")))?;
            Request::TrustAdd {
                key: parsed.to_string(),
                name: name.clone().unwrap_or_default(),
            }
        }
        TrustCommand::Remove { key } => {
            let parsed: PeerKey = key.parse().map_err(|e| UsageError(format!("{e}")))?;
            Request::TrustRemove {
                key: parsed.to_string(),
            }
        }
        TrustCommand::List { .. } => Request::TrustList,
    };
    let answer = if control::client::daemon_running(dir.root()) {
        control::client::call(dir.root(), request)?
    } else {
        let store = Store::open(dir.root())?;
        match request {
            Request::TrustAdd { key, name } => {
                let key: PeerKey = key.parse().map_err(|e| UsageError(format!("{e}")))?;
                store.trust_add(&key, &name, now_ms())?;
                serde_json::json!({"trusted": key.to_string(), "name": name})
            }
            Request::TrustRemove { key } => {
                let key: PeerKey = key.parse().map_err(|e| UsageError(format!("{e}")))?;
                serde_json::json!({"removed": store.trust_remove(&key)?})
            }
            _ => serde_json::json!(store.trust_list()?),
        }
    };
    match command {
        TrustCommand::List { json: true } => println!("{}", serde_json::to_string_pretty(&answer)?),
        TrustCommand::List { json: false } => {
            for entry in answer.as_array().into_iter().flatten() {
                println!(
                    "{}  {}",
                    entry["key"].as_str().unwrap_or_default(),
                    entry["name"].as_str().unwrap_or_default()
                );
            }
        }
        TrustCommand::Remove { .. } if answer["removed"] == false => {
            return Err(UsageError("that key was not trusted".into()).into());
        }
        _ => {}
    }
    Ok(ExitCode::SUCCESS)
}
