//! The mesh commands: `init`, `invite` and `join` (a node identity, a new
//! mesh or a joined one, and invite tokens). The other daemon commands live
//! in their own files and are re-exported here, where callers found them:
//! `trust` (trust.rs), `status`/`peers` (peers.rs), `up`/`leave` (up.rs),
//! `bench` (bench.rs).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::UsageError;
use super::token::{self, TokenError};
use crate::clock::now_ms;
use crate::config::DataDir;
use crate::control::{self, Request};
use crate::identity::{self, NodeKey};
use crate::store::Store;

pub use super::bench::bench;
pub use super::peers::{peer_line, query};
pub use super::token::Invite;
pub use super::trust::trust;
pub use super::up::{leave, up};

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
    store.set(token::RELAYS_KEY, &invite.relays.join(" "))?;
    store.trust_add(&invite.inviter, &invite.name, now_ms())?;
    store.trust_add(&key.peer_key(), name, now_ms())?;
    Ok(key)
}

/// The invite of the node in `root` (name, addresses and relays as given),
/// valid for [`token::DEFAULT_VALIDITY`] from now.
pub fn make_invite(
    root: &Path,
    name: String,
    addresses: Vec<String>,
    relays: Vec<String>,
) -> anyhow::Result<Invite> {
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
        relays,
        expires_ms: now_ms()
            .saturating_add(u64::try_from(token::DEFAULT_VALIDITY.as_millis()).unwrap_or(u64::MAX)),
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

/// `corral invite [--expires DURATION]`: only the token on stdout.
pub fn invite(data_dir: Option<PathBuf>, validity: Duration) -> anyhow::Result<ExitCode> {
    let dir = DataDir::resolve(data_dir)?;
    let key = identity::load_node_key(dir.root())?;
    let (name, addresses, relays) = if control::client::daemon_running(dir.root()) {
        let status = listening_status(dir.root())?;
        let name = status["name"].as_str().unwrap_or_default().to_string();
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let relays = strings(&status["reachability"]["relays"]);
        (name, strings(&status["addresses"]), relays)
    } else {
        let store = Store::open(dir.root())?;
        let addrs = store
            .get("listen")?
            .map(|l| l.split(' ').map(String::from).collect())
            .unwrap_or_default();
        let relays = token::stored_relays(&store)?
            .iter()
            .map(ToString::to_string)
            .collect();
        (
            store.get("name")?.unwrap_or_else(default_name),
            addrs,
            relays,
        )
    };
    let me = key.peer_id();
    let addresses: Vec<String> = addresses
        .into_iter()
        .filter(|a: &String| dialable(a))
        .filter_map(|a| a.parse::<libp2p::Multiaddr>().ok())
        // A circuit address must name this device after the relay, or a
        // joiner would dial the relay itself.
        .map(
            |a| match crate::net::is_circuit(&a) && crate::net::peer_of(&a) != Some(me) {
                true => a.with(libp2p::multiaddr::Protocol::P2p(me)),
                false => a,
            },
        )
        .map(|a| a.to_string())
        .take(token::MAX_ADDRESSES)
        .collect();
    let relays: Vec<String> = relays
        .into_iter()
        .take(crate::net::relay::MAX_RELAYS)
        .collect();
    if addresses.is_empty() && relays.is_empty() {
        eprintln!(
            "corral: warning: the token names no address of this device nor a relay; a new \
             device will find the mesh only by mDNS on this LAN"
        );
    }
    let mut invite = make_invite(dir.root(), name, addresses, relays)?;
    let validity_ms = u64::try_from(validity.as_millis()).unwrap_or(u64::MAX);
    invite.expires_ms = now_ms().saturating_add(validity_ms);
    println!("{}", invite.encode(&key.signing_key()));
    eprintln!(
        "corral: the token is valid for {}; on the new device save it to a file and run \
         `corral join --token-file FILE` (or paste it into `corral join -`), then `corral up`; \
         anyone with this token can join the mesh",
        humantime::format_duration(Duration::from_secs(validity_ms / 1000))
    );
    Ok(ExitCode::SUCCESS)
}

/// Longest `corral invite` waits for a daemon that has just started to
/// report the addresses it listens on.
const LISTEN_WAIT: Duration = Duration::from_secs(3);

/// The running daemon's status, once it reports an address others can
/// dial (its listeners come up a moment after its control socket), or as
/// it is after [`LISTEN_WAIT`]: an invite made in that moment would name
/// no address and no relay.
fn listening_status(root: &Path) -> anyhow::Result<serde_json::Value> {
    let started = std::time::Instant::now();
    loop {
        let status = control::client::call(root, Request::Status)?;
        let any = status["addresses"]
            .as_array()
            .is_some_and(|a| a.iter().filter_map(|v| v.as_str()).any(dialable));
        if any || started.elapsed() >= LISTEN_WAIT {
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether another device could dial listen address `a` (not loopback,
/// not the unspecified address).
fn dialable(a: &str) -> bool {
    !a.contains("/127.") && !a.contains("/0.0.0.0/")
}

/// Where `corral join` reads its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// On the command line (visible in shell history and `/proc`).
    Argument(String),
    /// Standard input (`corral join -`).
    Stdin,
    /// A file (`corral join --token-file PATH`).
    File(PathBuf),
}

impl TokenSource {
    /// The source of `join`'s arguments: `-` is stdin; a file wins.
    pub fn from_args(token: Option<String>, token_file: Option<PathBuf>) -> anyhow::Result<Self> {
        match (token, token_file) {
            (_, Some(path)) => Ok(Self::File(path)),
            (Some(token), None) if token == "-" => Ok(Self::Stdin),
            (Some(token), None) => Ok(Self::Argument(token)),
            (None, None) => Err(UsageError(
                "give the invite token: `corral join --token-file FILE`, or `corral join -` \
                 to read it from stdin"
                    .into(),
            )
            .into()),
        }
    }

    /// The token's text, read with a size bound.
    pub fn read(&self) -> Result<String, TokenError> {
        match self {
            Self::Argument(token) => Ok(token.clone()),
            Self::Stdin => {
                use std::io::IsTerminal;
                let stdin = std::io::stdin();
                let terminal = stdin.is_terminal();
                if terminal {
                    eprintln!("corral: paste the invite token and press Enter");
                }
                token::read_token(stdin.lock(), "stdin", terminal)
            }
            Self::File(path) => {
                let source = path.display().to_string();
                let file = std::fs::File::open(path).map_err(|e| TokenError::Unreadable {
                    from: source.clone(),
                    reason: e.to_string(),
                })?;
                warn_if_shared(&file, &source);
                token::read_token(file, &source, false)
            }
        }
    }
}

/// A token file others can read lets them join the mesh: say so (not
/// refused: `corral join - < FILE` reads the same file, and the token
/// expires), and suggest deleting it.
fn warn_if_shared(file: &std::fs::File, source: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = file.metadata()
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "corral: warning: {source} is readable by other users (mode {:o}); anyone who \
                 reads it before it expires can join the mesh: delete it after joining",
                meta.permissions().mode() & 0o777
            );
        }
    }
}

/// `corral join TOKEN | - | --token-file PATH`.
pub fn join(
    data_dir: Option<PathBuf>,
    source: &TokenSource,
    name: Option<String>,
) -> anyhow::Result<ExitCode> {
    let invite = source
        .read()
        .and_then(|text| Invite::decode(&text, now_ms()))
        .map_err(|e| UsageError(e.to_string()))?;
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
