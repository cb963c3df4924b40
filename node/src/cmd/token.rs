//! The invite token: what it carries (mesh key, inviter, addresses) and its
//! text form (`corral1` + hex of the canonical bytes), with named damage.

use corral_protocol::ids::PeerKey;
use serde::{Deserialize, Serialize};

use super::UsageError;

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
