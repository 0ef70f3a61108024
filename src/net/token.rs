//! Join tokens: `SHOAL1-<ca-hash>-<id>.<secret>`.
//!
//! The CA hash (blake3 of the cluster CA certificate, 64 hex) lets a joining
//! node authenticate the cluster before it sends anything secret (as k3s'
//! `K10<ca-hash>::...` and Swarm's `SWMTKN-1-<ca-hash>-...`). The id names the
//! token's record in the desired state (so a node can tell "expired" or
//! "rotated" from "wrong"); the secret proves the holder may join. Nodes store
//! only blake3 of the secret.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "SHOAL1";
const ID_LEN: usize = 6;
const SECRET_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "not a Shoal join token: it should look like SHOAL1-<64 hex>-<id>.<secret> (get one with `shoal token` on a cluster node)"
    )]
    Format,
}

#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub ca_hash: String,
    pub id: String,
    pub secret: String,
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({}, {}, <secret>)", &self.ca_hash[..8.min(self.ca_hash.len())], self.id)
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}-{}-{}.{}", self.ca_hash, self.id, self.secret)
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl JoinToken {
    /// A new token for the CA with hash `ca_hash`.
    pub fn generate(ca_hash: &str) -> JoinToken {
        const ALPHA: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let id: String = (0..ID_LEN).map(|_| ALPHA[rand::random_range(0..ALPHA.len())] as char).collect();
        JoinToken { ca_hash: ca_hash.to_string(), id, secret: crate::util::random_hex(SECRET_LEN / 2) }
    }

    pub fn parse(s: &str) -> Result<JoinToken, TokenError> {
        let s = s.trim();
        let rest = s.strip_prefix(PREFIX).and_then(|r| r.strip_prefix('-')).ok_or(TokenError::Format)?;
        let (hash, idsec) = rest.split_once('-').ok_or(TokenError::Format)?;
        let (id, secret) = idsec.split_once('.').ok_or(TokenError::Format)?;
        let ok = hash.len() == 64
            && is_hex(hash)
            && id.len() == ID_LEN
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && secret.len() == SECRET_LEN
            && is_hex(secret);
        if !ok {
            return Err(TokenError::Format);
        }
        Ok(JoinToken { ca_hash: hash.into(), id: id.into(), secret: secret.into() })
    }

    /// What nodes store to check a presented secret.
    pub fn secret_hash(&self) -> String {
        blake3::hash(self.secret.as_bytes()).to_hex().to_string()
    }
}

/// A token's public record, replicated in the desired state
/// (kind `JoinToken`, name = token id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub secret_hash: String,
    /// Unix seconds; 0 = never expires.
    #[serde(default)]
    pub expires_at: u64,
    /// Set when the token was replaced by `shoal token --rotate`.
    #[serde(default)]
    pub rotated: bool,
    /// Unix seconds.
    pub created_at: u64,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "this join token was rotated and no longer works; get the current one with `shoal token` on a cluster node"
    )]
    Rotated,
    #[error("this join token expired; create a new one with `shoal token --create --ttl 1h` on a cluster node")]
    Expired,
    #[error("this join token is not known to the cluster (wrong token, or one from another cluster)")]
    Unknown,
    #[error("wrong join token secret")]
    BadSecret,
}

/// Checks a presented token against its record. Pure.
pub fn check(token: &JoinToken, record: Option<&TokenRecord>, now_unix: u64) -> Result<(), Refused> {
    let r = record.ok_or(Refused::Unknown)?;
    let given = token.secret_hash();
    let same = given.len() == r.secret_hash.len()
        && given.bytes().zip(r.secret_hash.bytes()).fold(0u8, |a, (x, y)| a | (x ^ y)) == 0;
    if !same {
        return Err(Refused::BadSecret);
    }
    if r.rotated {
        return Err(Refused::Rotated);
    }
    if r.expires_at != 0 && now_unix >= r.expires_at {
        return Err(Refused::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hash() -> String {
        "ab".repeat(32)
    }

    #[test]
    fn roundtrip_and_check() {
        let t = JoinToken::generate(&hash());
        let s = t.to_string();
        assert!(s.starts_with("SHOAL1-abab"));
        assert_eq!(JoinToken::parse(&s), Ok(t.clone()));
        let rec = TokenRecord { secret_hash: t.secret_hash(), expires_at: 0, rotated: false, created_at: 1 };
        assert_eq!(check(&t, Some(&rec), 100), Ok(()));
        assert_eq!(check(&t, None, 100), Err(Refused::Unknown));
        assert_eq!(check(&t, Some(&TokenRecord { rotated: true, ..rec.clone() }), 100), Err(Refused::Rotated));
        assert_eq!(check(&t, Some(&TokenRecord { expires_at: 50, ..rec.clone() }), 100), Err(Refused::Expired));
        let mut wrong = t.clone();
        wrong.secret = "0".repeat(32);
        assert_eq!(check(&wrong, Some(&rec), 100), Err(Refused::BadSecret));
        assert!(!format!("{t:?}").contains(&t.secret), "Debug never shows the secret");
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "",
            "SHOAL1",
            "SHOAL2-x-y.z",
            &format!("SHOAL1-{}-abc.def", hash()),
            &format!("SHOAL1-{}-ABCDEF.{}", hash(), "0".repeat(32)),
        ] {
            assert_eq!(JoinToken::parse(bad), Err(TokenError::Format), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,120}") {
            let _ = JoinToken::parse(&s);
        }

        #[test]
        fn generated_tokens_roundtrip(seed in any::<u64>()) {
            let h = blake3::hash(&seed.to_le_bytes()).to_hex().to_string();
            let t = JoinToken::generate(&h);
            prop_assert_eq!(JoinToken::parse(&t.to_string()), Ok(t));
        }
    }
}
