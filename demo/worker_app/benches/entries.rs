//! In-process cost of the demo entries (`list_items`, `compute`): what one call costs the
//! worker with no transport around it, to set beside the pure-Python reference
//! (`demo/django_app/demoapp/contract.py`) and show where offloading pays.
//!
//! `cargo bench -p molt-demo-worker --bench entries`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use molt_demo_worker::DemoState;
use molt_worker::testing::TestClient;
use molt_worker::{Codec, Payload};

fn msgpack(value: serde_json::Value) -> Vec<u8> {
    rmp_serde::to_vec_named(&value).expect("payload encodes")
}

/// Each call goes through the worker's own decoding and encoding (`TestClient`), so the
/// figure is what the entry costs a worker, minus the transport.
fn bench_call(c: &mut Criterion, entry: &str, cases: &[(String, Vec<u8>)]) {
    let client: TestClient<DemoState> = molt_demo_worker::app().test_client().expect("app builds");
    let mut group = c.benchmark_group(entry);
    group.throughput(Throughput::Elements(1));
    for (label, payload) in cases {
        group.bench_function(label.as_str(), |bench| {
            bench.iter(|| {
                let payload = Payload::new(Codec::MsgPack, black_box(payload).clone());
                client.call(entry, payload).expect("call succeeds")
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
    bench_call(c, "list_items", &cases);
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
    bench_call(c, "compute", &cases);
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
