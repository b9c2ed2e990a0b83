//! In-process cost of the demo entries (`list_items`, `compute`): what one call costs the
//! worker with no transport around it, to set beside the pure-Python reference
//! (`demo/django_app/demoapp/contract.py`) and show where offloading pays.
//!
//! `cargo bench -p molt-worker --bench entries`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use molt_ipc_ring::frame::Codec;

use molt_worker::cancel::CancelToken;
use molt_worker::entries::{registry, CallContext, Entry};

fn entry(name: &str) -> Box<dyn Entry> {
    registry()
        .into_iter()
        .find(|entry| entry.name() == name)
        .unwrap_or_else(|| panic!("no entry {name}"))
}

fn msgpack(value: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(&value).expect("payload encodes")
}

fn bench_call(c: &mut Criterion, group: &str, entry: &dyn Entry, cases: &[(String, Vec<u8>)]) {
    let cancel = CancelToken::new();
    let mut group = c.benchmark_group(group);
    group.throughput(Throughput::Elements(1));
    for (label, payload) in cases {
        group.bench_function(label.as_str(), |bench| {
            bench.iter(|| {
                let ctx = CallContext {
                    codec: Codec::MsgPack,
                    payload: black_box(payload),
                    cancel: &cancel,
                };
                entry.call(&ctx).expect("call succeeds")
            })
        });
    }
    group.finish();
}

fn list_items(c: &mut Criterion) {
    let cases: Vec<(String, Vec<u8>)> = [
        (200, None),
        (2000, None),
        (2000, Some("river")),
        (20000, None),
    ]
    .into_iter()
    .map(|(rows, q)| {
        let label = match q {
            Some(q) => format!("rows={rows} limit=50 q={q}"),
            None => format!("rows={rows} limit=50"),
        };
        let mut request = serde_json::json!({"user_id": 42, "limit": 50, "rows": rows});
        if let Some(q) = q {
            request["q"] = q.into();
        }
        (label, msgpack(request))
    })
    .collect();
    bench_call(c, "list_items", entry("list_items").as_ref(), &cases);
}

fn compute(c: &mut Criterion) {
    let cases: Vec<(String, Vec<u8>)> = [10_000, 1_000_000]
        .into_iter()
        .map(|n| {
            (
                format!("n={n}"),
                msgpack(serde_json::json!({"n": n, "seed": 7})),
            )
        })
        .collect();
    bench_call(c, "compute", entry("compute").as_ref(), &cases);
}

criterion_group! {
    name = benches;
    // Short runs: the machine is shared, and the figures need ±5 %, not ±0.1 %.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = list_items, compute
}
criterion_main!(benches);
