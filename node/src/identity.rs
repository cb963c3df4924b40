//! A node's keys on disk: the node key (ed25519; both its libp2p identity and
//! its job-signing key) and the mesh key (the libp2p private-network PSK, in
//! the standard `swarm.key` format so other libp2p tools can join a mesh).
//! Both files are mode 0600; a key of the wrong length or format is refused
//! with a message naming the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use corral_protocol::ids::PeerKey;
use libp2p::pnet::PreSharedKey;

/// The node key, loaded.
#[derive(Clone)]
pub struct NodeKey {
    seed: [u8; 32],
}

impl std::fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "NodeKey({})", self.peer_key().short())
    }
}

impl NodeKey {
    /// A fresh random key.
    pub fn generate() -> anyhow::Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| anyhow::anyhow!("no randomness for a node key: {e}"))?;
        Ok(Self { seed })
    }

    /// The libp2p identity.
    pub fn keypair(&self) -> libp2p::identity::Keypair {
        let mut seed = self.seed;
        libp2p::identity::Keypair::ed25519_from_bytes(&mut seed)
            .expect("32 bytes are always a valid ed25519 secret key")
    }

    /// The job-signing key (the same ed25519 key).
    pub fn signing_key(&self) -> corral_protocol::envelope::SigningKey {
        corral_protocol::envelope::signing_key(&self.seed)
    }

    /// The public key as the protocol names peers.
    pub fn peer_key(&self) -> PeerKey {
        corral_protocol::envelope::peer_key(&self.signing_key())
    }

    /// The libp2p peer id.
    pub fn peer_id(&self) -> libp2p::PeerId {
        self.keypair().public().to_peer_id()
    }
}

/// Where the keys live in a data dir.
pub fn node_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("node.key")
}

/// The mesh key file.
pub fn mesh_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("swarm.key")
}

/// Writes `contents` to `path` with mode 0600, refusing to replace a file.
fn write_secret(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(contents)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Refuses a secret file that others can read.
fn check_private(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "{} is readable by other users (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            );
        }
    }
    Ok(())
}

/// Saves a new node key; fails if one exists.
pub fn save_node_key(data_dir: &Path, key: &NodeKey) -> anyhow::Result<()> {
    write_secret(
        &node_key_path(data_dir),
        format!("{}\n", hex::encode(key.seed)).as_bytes(),
    )
}

/// Loads the node key.
pub fn load_node_key(data_dir: &Path) -> anyhow::Result<NodeKey> {
    let path = node_key_path(data_dir);
    if !path.exists() {
        anyhow::bail!(
            "{} has no node key: run `corral init` (new mesh) or `corral join TOKEN` first",
            data_dir.display()
        );
    }
    check_private(&path)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| {
        anyhow::anyhow!(
            "{} is not a corral node key (expected 64 hex digits)",
            path.display()
        )
    })?;
    Ok(NodeKey { seed })
}

/// A fresh random mesh key.
pub fn generate_mesh_key() -> anyhow::Result<PreSharedKey> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| anyhow::anyhow!("no randomness for a mesh key: {e}"))?;
    Ok(PreSharedKey::new(bytes))
}

/// Saves the mesh key in `swarm.key` format; fails if one exists.
pub fn save_mesh_key(data_dir: &Path, key: PreSharedKey) -> anyhow::Result<()> {
    write_secret(&mesh_key_path(data_dir), key.to_key_file().as_bytes())
}

/// Parses a `swarm.key` file's text, naming what is wrong.
pub fn parse_mesh_key(text: &str) -> Result<PreSharedKey, String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        ["/key/swarm/psk/1.0.0/", "/base16/", hex] => {
            if hex.len() != 64 {
                return Err(format!(
                    "the key is {} hex digits; a mesh key is 64 (32 bytes)",
                    hex.len()
                ));
            }
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hex, &mut bytes)
                .map_err(|_| "the key is not hexadecimal".to_string())?;
            Ok(PreSharedKey::new(bytes))
        }
        [first, ..] if *first != "/key/swarm/psk/1.0.0/" => Err(format!(
            "first line is {first:?}; expected /key/swarm/psk/1.0.0/"
        )),
        [_, second, ..] if *second != "/base16/" => Err(format!(
            "second line is {second:?}; only /base16/ keys are supported"
        )),
        _ => Err("expected three lines: /key/swarm/psk/1.0.0/, /base16/, 64 hex digits".into()),
    }
}

/// Loads the mesh key.
pub fn load_mesh_key(data_dir: &Path) -> anyhow::Result<PreSharedKey> {
    let path = mesh_key_path(data_dir);
    if !path.exists() {
        anyhow::bail!(
            "{} has no mesh key: run `corral init` (new mesh) or `corral join TOKEN` first",
            data_dir.display()
        );
    }
    check_private(&path)?;
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_mesh_key(&text)
        .map_err(|why| anyhow::anyhow!("{} is not a valid mesh key: {why}", path.display()))
}

/// A short public name of a mesh (safe to advertise): its key's fingerprint.
pub fn mesh_id(key: &PreSharedKey) -> String {
    key.fingerprint()
        .to_string()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .take(12)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mesh_keys_round_trip_through_the_standard_format() {
        let key = generate_mesh_key().expect("key");
        assert_eq!(parse_mesh_key(&key.to_key_file()), Ok(key));
        assert_eq!(mesh_id(&key).len(), 12);
    }

    #[test]
    fn bad_mesh_keys_say_what_is_wrong() {
        let short = "/key/swarm/psk/1.0.0/\n/base16/\nabcd\n";
        assert!(
            parse_mesh_key(short)
                .expect_err("short")
                .contains("4 hex digits")
        );
        let bad = format!("/key/swarm/psk/1.0.0/\n/base64/\n{}\n", "a".repeat(64));
        assert!(
            parse_mesh_key(&bad)
                .expect_err("encoding")
                .contains("base16")
        );
        let hexless = format!("/key/swarm/psk/1.0.0/\n/base16/\n{}\n", "z".repeat(64));
        assert!(
            parse_mesh_key(&hexless)
                .expect_err("hex")
                .contains("hexadecimal")
        );
        assert!(
            parse_mesh_key("hello")
                .expect_err("junk")
                .contains("expected")
        );
    }

    #[test]
    fn keys_are_private_files_and_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = NodeKey::generate().expect("key");
        save_node_key(dir.path(), &key).expect("save");
        assert!(
            save_node_key(dir.path(), &key).is_err(),
            "must not overwrite"
        );
        let loaded = load_node_key(dir.path()).expect("load");
        assert_eq!(loaded.peer_key(), key.peer_key());
        assert_eq!(loaded.peer_id(), key.peer_id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = node_key_path(dir.path());
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(
                load_node_key(dir.path())
                    .expect_err("world-readable")
                    .to_string()
                    .contains("chmod 600")
            );
        }
    }
}
