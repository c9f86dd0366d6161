//! Every published play-token v1 vector, read from the vectors file at test time.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::time::Duration;

use livegate_core::token::{Rejection, TokenKeys, Verifier};
use livegate_core::Secret;
use serde::Deserialize;

#[derive(Deserialize)]
struct VectorFile {
    spec: String,
    vectors: Vec<Vector>,
}

#[derive(Deserialize)]
struct Vector {
    name: String,
    token: String,
    keys: Vec<String>,
    path_room_id: u64,
    now: u64,
    leeway_s: u64,
    expect: String,
    reason: Option<String>,
}

#[test]
fn every_published_vector_holds() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/play-token-v1.vectors.json"
    );
    let file: VectorFile = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(file.spec, "play-token-v1");
    assert!(file.vectors.len() >= 20, "vector file looks truncated");

    for vector in &file.vectors {
        let secrets: Vec<Secret> = vector.keys.iter().map(Secret::new).collect();
        let verifier = Verifier::new(
            TokenKeys::new(&secrets).unwrap(),
            Duration::from_secs(vector.leeway_s),
        );
        let outcome =
            verifier.verify_for_room(Some(&vector.token), vector.path_room_id, vector.now);
        match (vector.expect.as_str(), outcome) {
            ("accept", Ok(grant)) => {
                assert_eq!(grant.room_id, vector.path_room_id, "{}", vector.name)
            }
            ("reject", Err(reason)) => assert_eq!(
                Some(reason.as_str()),
                vector.reason.as_deref(),
                "vector {}",
                vector.name
            ),
            (expect, outcome) => {
                panic!("vector {}: expected {expect}, got {outcome:?}", vector.name)
            }
        }
    }
}

#[test]
fn minting_matches_the_published_vector() {
    let keys = TokenKeys::new(&[Secret::new("livegate-test-secret")]).unwrap();
    let token = keys.mint(42, 1_893_456_000);
    assert_eq!(
        token,
        "NDJ8MTg5MzQ1NjAwMHxmMTZiNDI5NmNhYzAwNGUzZGIzZDVlMmYwYzIxOGI5NzRiZDAzYTIyNGI1NjQwY2MxMTljMzE0ZTZkNWE0N2Mw"
    );
    let _ = Rejection::ALL;
}
