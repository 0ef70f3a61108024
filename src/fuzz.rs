//! Every decoder of untrusted input, as one function of bytes each: what
//! the fuzz targets (`fuzz/`) run, and what `tests/fuzz_corpus.rs` replays
//! from the kept corpus on every `cargo test`. Each must return for any
//! input, never panic; where a decoder has an encoder, what decodes must
//! encode and decode to the same value.
//!
//! Peers send: sync and join messages on QUIC streams, gossip frames and
//! chitchat messages, gossiped records, liveness hellos. Users send:
//! manifests (YAML), REST bodies (JSON), join tokens.

use crate::membership::assemble::parse_records;
use crate::membership::watch::Hello;
use crate::model::parse::{SourceFile, parse_files, parse_json, parse_stored};
use crate::model::validate::Context;
use crate::net::join::JoinMsg;
use crate::net::token::JoinToken;
use crate::state::protocol;

/// A fuzz target: it takes any bytes and must return.
pub type Target = fn(&[u8]);

/// The targets, by name (a directory of the corpus each).
pub const TARGETS: [(&str, Target); 8] = [
    ("sync_message", sync_message),
    ("join_message", join_message),
    ("gossip", gossip),
    ("liveness_hello", liveness_hello),
    ("manifest", manifest),
    ("api_body", api_body),
    ("join_token", join_token),
    ("protobuf_body", protobuf_body),
];

/// A state-sync message from a peer (QUIC bidirectional stream).
pub fn sync_message(data: &[u8]) {
    if let Ok(m) = protocol::decode(data) {
        let again = protocol::decode(&protocol::encode(&m));
        assert_eq!(again.as_ref(), Ok(&m), "a decoded sync message re-encodes to itself");
    }
}

/// A join request or answer (QUIC join stream; anyone may send one).
pub fn join_message(data: &[u8]) {
    if let Ok(m) = postcard::from_bytes::<JoinMsg>(data) {
        let bytes = postcard::to_allocvec(&m).expect("a decoded join message encodes");
        assert!(postcard::from_bytes::<JoinMsg>(&bytes).is_ok(), "a decoded join message re-decodes");
    }
}

/// A gossip frame as it arrives on a QUIC stream: the frame, the chitchat
/// message in it, and the records a node gossips about itself (as
/// key/value lines of the same bytes).
pub fn gossip(data: &[u8]) {
    if let Some((_, payload)) = crate::net::quic::parse_gossip_frame(data) {
        let _ = crate::membership::transport::decode(payload);
    }
    let _ = crate::membership::transport::decode(data);
    let text = String::from_utf8_lossy(data);
    let kv: Vec<(&str, &str)> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let _ = parse_records(kv.into_iter());
}

/// A liveness port's hello (TCP, unauthenticated).
pub fn liveness_hello(data: &[u8]) {
    if let Ok(h) = Hello::decode(data) {
        assert_eq!(Hello::decode(h.encode().as_bytes()), Ok(h), "a decoded hello re-encodes to itself");
    }
}

/// Manifests as `shoal apply -f` sends them (YAML, several documents).
pub fn manifest(data: &[u8]) {
    let files = [SourceFile { name: "fuzz.yaml".into(), content: String::from_utf8_lossy(data).into_owned() }];
    let out = parse_files(&files, &Context::default(), None);
    assert!(out.errors.is_empty() || out.objects.is_empty(), "objects are returned only without errors");
}

/// A REST body: an object to create or replace, as a user sends it and as
/// a peer stores it.
pub fn api_body(data: &[u8]) {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = parse_json(v.clone(), &Context::default(), "default");
        let _ = parse_stored(v);
    }
}

/// A REST body in Kubernetes' protobuf encoding (kubectl 1.32+ `create`);
/// what it decodes to goes on as a JSON body would.
pub fn protobuf_body(data: &[u8]) {
    if let Ok(v) = crate::api::protobuf::to_json(data) {
        let _ = parse_json(v, &Context::default(), "default");
    }
}

/// A join token as a user types it.
pub fn join_token(data: &[u8]) {
    if let Ok(t) = JoinToken::parse(&String::from_utf8_lossy(data)) {
        assert_eq!(JoinToken::parse(&t.to_string()), Ok(t), "a parsed token prints as itself");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_takes_empty_and_garbage_input() {
        for (_, f) in TARGETS {
            for input in [&b""[..], b"\0", b"\xff\xfe", b"{", b"---\n- [", b"SHOAL1-"] {
                f(input);
            }
        }
    }
}
