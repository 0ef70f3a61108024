//! Secrets at rest: the cluster's data keys and the sealing of a Secret's
//! data with them. Pure: keys, times and plaintexts come in as arguments.
//!
//! - A `KeyRing` holds the cluster's data keys by id. Rings merge by union
//!   (a key is never changed, only retired: its material dropped, its id
//!   kept so that no merge brings it back), so nodes converge by exchanging
//!   rings in any order. The newest usable key seals; any usable key opens.
//! - `seal_data` encrypts a Secret's data with ChaCha20-Poly1305 (ring). The
//!   associated data binds the ciphertext to the Secret's namespace and
//!   name, so a sealed value cannot be moved onto another Secret. The nonce
//!   is synthetic (a keyed BLAKE3 of the name and the plaintext, as in SIV):
//!   the same data under the same key seals to the same bytes, so applying
//!   an unchanged Secret again is `unchanged`, and a nonce never repeats
//!   for different plaintexts (short of a 96-bit collision).

use std::collections::BTreeMap;

use base64::Engine as _;
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use serde::{Deserialize, Serialize};

use crate::model::types::Sealed;

/// Bytes of a data key.
pub const KEY_BYTES: usize = 32;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The cluster's data keys, by id.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRing {
    pub keys: BTreeMap<String, DataKey>,
}

/// One data key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataKey {
    /// When it was made (unix milliseconds): the newest usable key seals.
    pub created_ms: u64,
    /// The key (base64); `None` once retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub material: Option<String>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self
            .keys
            .iter()
            .map(|(id, k)| format!("{id}{}", if k.material.is_some() { "" } else { " (retired)" }))
            .collect();
        f.debug_struct("KeyRing").field("keys", &ids).finish()
    }
}

/// Why a Secret could not be sealed or opened. Never holds a key or a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("this node has not received the cluster data key yet")]
    NoKey,
    #[error("this node does not hold data key {0} (it has not received it yet, or the key was retired)")]
    UnknownKey(String),
    #[error("sealed data does not open with data key {0}: it was altered, or sealed for another Secret")]
    Corrupt(String),
}

/// A key's id: derived from its material, so one id never names two keys.
pub fn key_id(key: &[u8; KEY_BYTES]) -> String {
    blake3::derive_key("shoal data key id v1", key).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

fn decode_key(material: &str) -> Option<[u8; KEY_BYTES]> {
    B64.decode(material).ok()?.try_into().ok()
}

impl KeyRing {
    /// Adds a key made at `created_ms`; returns its id.
    pub fn add(&mut self, key: &[u8; KEY_BYTES], created_ms: u64) -> String {
        let id = key_id(key);
        self.keys.entry(id.clone()).or_insert(DataKey { created_ms, material: Some(B64.encode(key)) });
        id
    }

    /// Merges `other` in (union; a retirement wins); returns whether this
    /// ring changed. Entries whose material does not match their id are
    /// ignored (a peer's garbage never enters the ring).
    pub fn merge(&mut self, other: &KeyRing) -> bool {
        let mut changed = false;
        for (id, k) in &other.keys {
            if k.material.as_deref().is_some_and(|m| decode_key(m).is_none_or(|b| key_id(&b) != *id)) {
                continue;
            }
            match self.keys.get_mut(id) {
                None => {
                    self.keys.insert(id.clone(), k.clone());
                    changed = true;
                }
                Some(mine) if mine.material.is_some() && k.material.is_none() => {
                    mine.material = None;
                    changed = true;
                }
                Some(_) => {}
            }
        }
        changed
    }

    /// The key that seals: the newest usable one (ties broken by id).
    pub fn primary(&self) -> Option<(String, [u8; KEY_BYTES])> {
        self.keys
            .iter()
            .filter_map(|(id, k)| Some((k.created_ms, id, decode_key(k.material.as_deref()?)?)))
            .max_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)))
            .map(|(_, id, key)| (id.clone(), key))
    }

    fn key(&self, id: &str) -> Option<[u8; KEY_BYTES]> {
        decode_key(self.keys.get(id)?.material.as_deref()?)
    }

    /// Usable keys.
    pub fn usable(&self) -> usize {
        self.keys.values().filter(|k| k.material.is_some()).count()
    }

    /// When a key made now should say it was made: after every key the
    /// ring holds, so that it seals even on a node whose clock is behind.
    pub fn next_created(&self, now_ms: u64) -> u64 {
        self.keys.values().map(|k| k.created_ms + 1).max().unwrap_or(0).max(now_ms)
    }

    /// Retires the usable keys older than `keep` (never a newer one, which
    /// another node may have made and sealed with meanwhile); returns the
    /// ids retired.
    pub fn retire_older_than(&mut self, keep: &str) -> Vec<String> {
        let Some(limit) = self.keys.get(keep).map(|k| (k.created_ms, keep.to_string())) else { return Vec::new() };
        let mut out = Vec::new();
        for (id, k) in self.keys.iter_mut() {
            if (k.created_ms, id.clone()) < limit && k.material.take().is_some() {
                out.push(id.clone());
            }
        }
        out
    }
}

/// What binds a sealed value to its Secret.
fn aad(namespace: &str, name: &str) -> String {
    format!("shoal/v1/Secret/{namespace}/{name}")
}

fn cipher(key: &[u8; KEY_BYTES]) -> LessSafeKey {
    let enc = blake3::derive_key("shoal secret seal v1", key);
    // A 32-byte key is always a valid ChaCha20-Poly1305 key.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &enc).unwrap_or_else(|_| unreachable!()))
}

/// The plaintext of a Secret's data: its keys and values (postcard, so a
/// value costs its bytes and no more).
fn plaintext(data: &BTreeMap<String, Vec<u8>>) -> Vec<u8> {
    postcard::to_allocvec(data).unwrap_or_default()
}

/// Seals the data of Secret `namespace/name` with the ring's primary key.
pub fn seal_data(
    ring: &KeyRing,
    namespace: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Sealed, SealError> {
    let (id, key) = ring.primary().ok_or(SealError::NoKey)?;
    let aad = aad(namespace, name);
    let mut buf = plaintext(data);
    let mut h = blake3::Hasher::new_keyed(&blake3::derive_key("shoal secret nonce v1", &key));
    h.update(&(aad.len() as u64).to_le_bytes()).update(aad.as_bytes()).update(&buf);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&h.finalize().as_bytes()[..NONCE_LEN]);
    cipher(&key)
        .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut buf)
        .map_err(|_| SealError::Corrupt(id.clone()))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(Sealed { key: id, data: B64.encode(out) })
}

/// Opens the sealed data of Secret `namespace/name`.
pub fn open_data(
    ring: &KeyRing,
    namespace: &str,
    name: &str,
    sealed: &Sealed,
) -> Result<BTreeMap<String, Vec<u8>>, SealError> {
    let key = ring
        .key(&sealed.key)
        .ok_or_else(|| if ring.usable() == 0 { SealError::NoKey } else { SealError::UnknownKey(sealed.key.clone()) })?;
    let corrupt = || SealError::Corrupt(sealed.key.clone());
    let bytes = B64.decode(&sealed.data).map_err(|_| corrupt())?;
    if bytes.len() < NONCE_LEN {
        return Err(corrupt());
    }
    let (nonce, rest) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| corrupt())?;
    let mut buf = rest.to_vec();
    let aad = aad(namespace, name);
    let plain = cipher(&key).open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf).map_err(|_| corrupt())?;
    postcard::from_bytes(plain).map_err(|_| corrupt())
}

#[cfg(test)]
mod tests;
