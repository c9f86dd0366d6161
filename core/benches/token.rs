//! Cost of verifying a valid play token, the work the proxy does on every request.
#![allow(
    clippy::unwrap_used,
    reason = "a broken fixture should fail the test loudly"
)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use livegate_core::token::{TokenKeys, Verifier};
use livegate_core::Secret;

fn verify_valid_token(c: &mut Criterion) {
    let keys = TokenKeys::new(&[Secret::new("livegate-bench-secret")]).unwrap();
    let token = keys.mint(42, 4_000_000_000);
    let verifier = Verifier::new(keys, Duration::ZERO);
    c.bench_function("verify_valid_token", |b| {
        b.iter(|| {
            verifier.verify_for_room(
                Some(black_box(&token)),
                black_box(42),
                black_box(1_800_000_000),
            )
        })
    });

    let rotated =
        TokenKeys::new(&[Secret::new("new-key"), Secret::new("livegate-bench-secret")]).unwrap();
    let verifier = Verifier::new(rotated, Duration::ZERO);
    c.bench_function("verify_valid_token_second_of_two_keys", |b| {
        b.iter(|| {
            verifier.verify_for_room(
                Some(black_box(&token)),
                black_box(42),
                black_box(1_800_000_000),
            )
        })
    });
}

criterion_group!(benches, verify_valid_token);
criterion_main!(benches);
