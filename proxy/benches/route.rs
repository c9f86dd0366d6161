//! Route matching cost against path length, on the inputs that hurt a backtracking matcher:
//! a long run of the separator a `{stream}-{seq}` pattern splits on (`/live/` + dashes +
//! `x.ts`, against SRS's patterns), and a deep path of such segments under ZLMediaKit's
//! `{rest}` pattern. Linear matching shows as a 16× time for a 16× longer path.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use livegate_proxy::route::{Flavour, RouteTable, MAX_SEGMENT_BYTES};

fn table(flavour: Flavour) -> RouteTable {
    RouteTable::new(&flavour.flv(), &flavour.playlist(), &flavour.segment())
        .expect("the default routes compile")
}

/// `prefix` followed by segments of dashes (each as long as a segment may be) up to `len`.
fn hostile(prefix: &str, len: usize) -> String {
    let segment = format!("{}/", "-".repeat(MAX_SEGMENT_BYTES - 1));
    let mut path = prefix.to_owned();
    while path.len() + segment.len() + 4 < len {
        path.push_str(&segment);
    }
    path.push_str(&"-".repeat(len - path.len() - 4));
    path.push_str("x.ts");
    path
}

fn routing(c: &mut Criterion) {
    for (name, flavour, prefix) in [
        ("srs", Flavour::Srs, "/live/"),
        ("zlmediakit", Flavour::Zlmediakit, "/live/42/"),
    ] {
        let table = table(flavour);
        let mut group = c.benchmark_group(format!("route_worst_case_{name}"));
        for kib in [4usize, 16, 64] {
            let path = hostile(prefix, kib * 1024);
            group.throughput(Throughput::Bytes(path.len() as u64));
            group.bench_with_input(
                BenchmarkId::from_parameter(format!("{kib}KiB")),
                &path,
                |b, path| b.iter(|| table.find(std::hint::black_box(path))),
            );
        }
        group.finish();
    }
    let srs = table(Flavour::Srs);
    c.bench_function("route_typical_segment", |b| {
        b.iter(|| srs.find(std::hint::black_box("/live/42-1234.ts")))
    });
}

criterion_group!(benches, routing);
criterion_main!(benches);
