//! The mesh commands: `init`, `invite`, `join`, `trust`, `status`, `peers`,
//! `leave`, `bench`, and `up` (which hands over to the daemon).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use corral_protocol::ids::PeerKey;
use serde::{Deserialize, Serialize};

use super::UsageError;
use crate::cli::{TrustCommand, UpArgs};
use crate::clock::now_ms;
use crate::config::DataDir;
use crate::control::{self, Request};
use crate::daemon::{self, DaemonConfig};
use crate::identity::{self, NodeKey};
use crate::store::Store;

/// What an invite token carries: the mesh key, the inviter's public key and
/// name, and addresses where it was listening.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The mesh key (PSK).
    pub mesh_key: [u8; 32],
    /// The inviter, trusted as a job submitter by whoever joins.
    pub inviter: PeerKey,
    /// The inviter's name.
    pub name: String,
    /// Multiaddrs the inviter listened on.
    pub addresses: Vec<String>,
}

/// Tokens start with this, so a wrong paste is recognised.
const TOKEN_PREFIX: &str = "corral1";
/// Longest token accepted.
const MAX_TOKEN_BYTES: usize = 8 * 1024;

impl Invite {
    /// The token text.
    pub fn encode(&self) -> String {
        format!(
            "{TOKEN_PREFIX}{}",
            hex::encode(corral_protocol::codec::to_canonical_bytes(self))
        )
    }

    /// Parses a token, naming what is wrong.
    pub fn decode(token: &str) -> Result<Self, UsageError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_BYTES {
            return Err(UsageError(format!(
                "the token is {} bytes; too long to be a corral invite",
                token.len()
            )));
        }
        let hex_part = token.strip_prefix(TOKEN_PREFIX).ok_or_else(|| {
            UsageError(format!(
                "not a corral invite token (it should start with {TOKEN_PREFIX})"
            ))
        })?;
        let bytes = hex::decode(hex_part).map_err(|_| {
            UsageError("the invite token is damaged (not hexadecimal); copy it again".into())
        })?;
        let invite: Invite = corral_protocol::codec::from_canonical_bytes(&bytes, MAX_TOKEN_BYTES)
            .map_err(|e| UsageError(format!("the invite token is damaged ({e}); copy it again")))?;
        if invite.addresses.len() > 16 || invite.name.len() > 64 {
            return Err(UsageError(
                "the invite token holds too many addresses or too long a name".into(),
            ));
        }
        Ok(invite)
    }
}

fn default_name() -> String {
    crate::job::local::device_name()
}

/// Creates a node identity and a new mesh in `root`; returns the node key
/// and the mesh key.
pub fn create_mesh(
    root: &Path,
    name: &str,
) -> anyhow::Result<(NodeKey, libp2p::pnet::PreSharedKey)> {
    refuse_existing(root)?;
    let key = NodeKey::generate()?;
    let psk = identity::generate_mesh_key()?;
    identity::save_node_key(root, &key)?;
    identity::save_mesh_key(root, psk)?;
    let store = Store::open(root)?;
    store.set("name", name)?;
    // A node trusts itself: jobs it submits run on it too.
    store.trust_add(&key.peer_key(), name, now_ms())?;
    Ok((key, psk))
}

/// Creates a node identity in `root` that joins the mesh of `invite`.
pub fn join_mesh(root: &Path, invite: &Invite, name: &str) -> anyhow::Result<NodeKey> {
    refuse_existing(root)?;
    let key = NodeKey::generate()?;
    let psk = libp2p::pnet::PreSharedKey::new(invite.mesh_key);
    identity::save_node_key(root, &key)?;
    identity::save_mesh_key(root, psk)?;
    let store = Store::open(root)?;
    store.set("name", name)?;
    store.set("bootstrap", &invite.addresses.join(" "))?;
    store.trust_add(&invite.inviter, &invite.name, now_ms())?;
    store.trust_add(&key.peer_key(), name, now_ms())?;
    Ok(key)
}

/// The invite of the node in `root` (name and addresses as given).
pub fn make_invite(root: &Path, name: String, addresses: Vec<String>) -> anyhow::Result<Invite> {
    let key = identity::load_node_key(root)?;
    let psk = identity::load_mesh_key(root)?;
    let mut mesh_key = [0u8; 32];
    // The PSK type does not expose its bytes; its key file does.
    let file = psk.to_key_file();
    let hex_key = file.lines().nth(2).context("mesh key file format")?;
    hex::decode_to_slice(hex_key, &mut mesh_key).context("mesh key file format")?;
    Ok(Invite {
        mesh_key,
        inviter: key.peer_key(),
        name,
        addresses,
    })
}

/// `corral init`.
pub fn init(data_dir: Option<PathBuf>, name: Option<String>) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let name = name.unwrap_or_else(default_name);
    let (key, psk) = create_mesh(dir.root(), &name)?;
    eprintln!(
        "corral: new mesh {} created; this device is {name} ({})\n\
         next: `corral up` to start the daemon, `corral invite` to add devices",
        identity::mesh_id(&psk),
        key.peer_id()
    );
    Ok(ExitCode::SUCCESS)
}

fn refuse_existing(root: &Path) -> anyhow::Result<()> {
    if identity::node_key_path(root).exists() || identity::mesh_key_path(root).exists() {
        return Err(UsageError(format!(
            "{} already holds a corral identity; use another --data-dir to start over",
            root.display()
        ))
        .into());
    }
    Ok(())
}

/// `corral invite`: only the token on stdout.
pub fn invite(data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let (name, addresses) = if control::client::daemon_running(dir.root()) {
        let status = control::client::call(dir.root(), Request::Status)?;
        let name = status["name"].as_str().unwrap_or_default().to_string();
        let addrs: Vec<String> = status["addresses"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        (name, addrs)
    } else {
        let store = Store::open(dir.root())?;
        let addrs = store
            .get("listen")?
            .map(|l| l.split(' ').map(String::from).collect())
            .unwrap_or_default();
        (store.get("name")?.unwrap_or_else(default_name), addrs)
    };
    let addresses = addresses
        .into_iter()
        .filter(|a: &String| !a.contains("/127.") && !a.contains("/0.0.0.0/"))
        .take(16)
        .collect();
    let token = make_invite(dir.root(), name, addresses)?;
    println!("{}", token.encode());
    eprintln!(
        "corral: on the new device run `corral join TOKEN`, then `corral up`; anyone with this token can join the mesh"
    );
    Ok(ExitCode::SUCCESS)
}

/// `corral join TOKEN`.
pub fn join(
    data_dir: Option<PathBuf>,
    token: &str,
    name: Option<String>,
) -> anyhow::Result<ExitCode> {
    let invite = Invite::decode(token)?;
    let dir = DataDir::resolve(data_dir)?;
    let name = name.unwrap_or_else(default_name);
    join_mesh(dir.root(), &invite, &name)?;
    let psk = libp2p::pnet::PreSharedKey::new(invite.mesh_key);
    eprintln!(
        "corral: joined mesh {} as {name}; trusting jobs from {} ({})\nnext: `corral up`",
        identity::mesh_id(&psk),
        invite.name,
        invite.inviter.short()
    );
    Ok(ExitCode::SUCCESS)
}

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
        }
        _ => {
            let peers = answer.as_array().cloned().unwrap_or_default();
            if peers.is_empty() {
                println!("no other devices seen yet");
            }
            for p in peers {
                println!("{}  seen {} ms ago", peer_line(&p), p["age_ms"]);
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

/// `corral leave`.
pub fn leave(data_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    control::client::call(dir.root(), Request::Leave)?;
    // Wait for the daemon to finish saying goodbye (its socket goes away).
    for _ in 0..50 {
        if !control::client::daemon_running(dir.root()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("corral: left the mesh");
    Ok(ExitCode::SUCCESS)
}

/// `corral bench`.
pub fn bench(data_dir: Option<PathBuf>, json: bool) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let runtime = crate::runtime::Runtime::new(Some(dir.module_cache()))?;
    let store = if control::client::daemon_running(dir.root()) {
        None
    } else {
        Store::open(dir.root()).ok()
    };
    let mut out = serde_json::Map::new();
    for engine in runtime.engines() {
        let speed = super::bench::calibrate(&runtime, engine)?;
        if let Some(store) = &store {
            crate::calibration::record(store, engine, speed)?;
        }
        out.insert(engine.name().into(), serde_json::json!(speed));
        if !json {
            println!("{:<7} {:>12} ops/s", engine.name(), speed);
        }
    }
    if json {
        println!("{}", serde_json::Value::Object(out));
    }
    if store.is_none() {
        eprintln!("corral: a daemon is running; the new scores are used after its next start");
    }
    Ok(ExitCode::SUCCESS)
}

/// `corral up`.
pub fn up(data_dir: Option<PathBuf>, args: UpArgs) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    // Fail early and clearly: keys first, then the store lock.
    identity::load_node_key(dir.root())?;
    identity::load_mesh_key(dir.root())?;
    if control::client::daemon_running(dir.root()) {
        return Err(UsageError(format!(
            "a corral daemon is already running for {}",
            dir.root().display()
        ))
        .into());
    }
    // Calibrate in a child process the first time: the engines' compilers
    // and code would otherwise stay in the daemon's memory for good.
    let mut store = Store::open(dir.root())?;
    if crate::calibration::cached(&store)?.is_none() {
        // The child needs the store: let go of it while it runs.
        drop(store);
        eprintln!("corral: calibrating the engines of this device (once)…");
        let exe = std::env::current_exe().context("cannot find the corral binary")?;
        let status = std::process::Command::new(exe)
            .arg("--data-dir")
            .arg(dir.root())
            .args(["bench", "--json"])
            .stdout(std::process::Stdio::null())
            .status()
            .context("cannot run the calibration")?;
        if !status.success() {
            anyhow::bail!("the engine calibration failed (see above)");
        }
        store = Store::open(dir.root())?;
    }
    let slots = args
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u16));
    let engines = {
        let mut speeds = crate::calibration::cached(&store)?
            .context("the calibration did not record a speed for every engine")?;
        match args.engine {
            crate::runtime::EngineChoice::Auto => {}
            crate::runtime::EngineChoice::Jit => {
                speeds.retain(|s| s.engine == corral_protocol::receipt::EngineKind::Jit)
            }
            crate::runtime::EngineChoice::Interp => {
                speeds.retain(|s| s.engine == corral_protocol::receipt::EngineKind::Interp)
            }
        }
        if speeds.is_empty() {
            return Err(UsageError("--engine jit: this build or CPU has no JIT".into()).into());
        }
        // The calibration measured one core's speed; a slot gets less of it
        // when the slots share fewer CPUs (a cgroup limit, more slots than
        // cores). The daemon advertises speeds for this share.
        let share = crate::capacity::slot_share_here(slots);
        if share < 1.0 {
            tracing::info!(share, "each slot gets this share of a CPU; speeds scaled");
        }
        let mut bootstrap = args.peers.clone();
        for a in store
            .get("bootstrap")?
            .unwrap_or_default()
            .split(' ')
            .filter(|s| !s.is_empty())
        {
            if let Ok(addr) = a.parse() {
                bootstrap.push(addr);
            }
        }
        (speeds, bootstrap, share)
    };
    let config = DaemonConfig {
        data_dir: dir.root().to_path_buf(),
        listen: if args.listen.is_empty() {
            vec![
                "/ip4/0.0.0.0/tcp/0"
                    .parse()
                    .expect("a valid multiaddr literal"),
            ]
        } else {
            args.listen
        },
        bootstrap: engines.1,
        mdns: !args.no_mdns,
        slots,
        share: args.share,
        engines: engines.0,
        slot_share: engines.2,
        max_memory: args.max_memory,
        grace: args.grace,
    };
    // One thread for the event loop and every connection: a message from a
    // peer reaches the loop without waking another thread (a multi-threaded
    // runtime cost each hop a futex wake). Tasks run on blocking threads.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(daemon::run(config, store))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invite_tokens_round_trip_and_damage_is_named() {
        let invite = Invite {
            mesh_key: [7; 32],
            inviter: PeerKey::from_bytes([8; 32]),
            name: "laptop".into(),
            addresses: vec!["/ip4/192.0.2.1/tcp/4001".into()],
        };
        let token = invite.encode();
        assert!(token.starts_with("corral1"));
        assert_eq!(
            Invite::decode(&format!("  {token}\n")).expect("valid"),
            invite
        );
        assert!(
            Invite::decode("hello")
                .expect_err("prefix")
                .0
                .contains("start with")
        );
        assert!(
            Invite::decode(&token[..token.len() - 4])
                .expect_err("cut")
                .0
                .contains("damaged")
        );
        assert!(
            Invite::decode(&format!("{token}zz"))
                .expect_err("hex")
                .0
                .contains("damaged")
        );
    }
}
