//! In-process cost of the data path's entries (`table_summary`, `table_transform`) at 10k,
//! 100k and 1M rows: payload read, Polars plan, reply written, no transport.
//!
//! `cargo bench -p molt-demo-worker --bench data_path`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use molt_data::polars::prelude::*;
use molt_data::{from_polars, Table, PARAMS_KEY};
use molt_demo_worker::DemoState;
use molt_worker::testing::TestClient;
use molt_worker::{Codec, Payload};

/// `frame` as an IPC stream, with `params` in its schema metadata when given.
fn stream(frame: DataFrame, params: Option<&str>) -> Vec<u8> {
    let table = from_polars(frame).expect("a table");
    let metadata: HashMap<String, String> = params
        .map(|p| HashMap::from([(PARAMS_KEY.to_owned(), p.to_owned())]))
        .unwrap_or_default();
    let schema = Arc::new(table.schema().as_ref().clone().with_metadata(metadata));
    let batches = table
        .batches()
        .iter()
        .map(|b| {
            b.clone()
                .with_schema(Arc::clone(&schema))
                .expect("same fields")
        })
        .collect();
    Table::new(schema, batches)
        .expect("a table")
        .to_ipc()
        .expect("a stream")
}

fn sales(rows: i64) -> DataFrame {
    let ids: Vec<i64> = (0..rows).collect();
    df!(
        "id" => &ids,
        "region" => ids.iter().map(|i| ["north", "south", "east", "west"][(*i as usize * 7) % 4]).collect::<Vec<_>>(),
        "product_id" => ids.iter().map(|i| (i * 31) % 50).collect::<Vec<_>>(),
        "quantity" => ids.iter().map(|i| 1 + (i * 13) % 19).collect::<Vec<_>>(),
        "price" => ids.iter().map(|i| ((i * 7919) % 9_900 + 100) as f64 / 100.0).collect::<Vec<_>>(),
    )
    .expect("a frame")
}

fn products() -> DataFrame {
    let ids: Vec<i64> = (0..40).collect();
    df!("product_id" => &ids, "category" => ids.iter().map(|i| format!("c{}", i % 5)).collect::<Vec<_>>())
        .expect("a frame")
}

fn data_path(c: &mut Criterion) {
    let client: TestClient<DemoState> = molt_demo_worker::app().test_client().expect("app builds");
    let mut group = c.benchmark_group("data_path");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for rows in [10_000, 100_000, 1_000_000] {
        let summary = stream(sales(rows), Some(r#"{"min_quantity": 5}"#));
        group.throughput(Throughput::Elements(rows as u64));
        group.bench_with_input(BenchmarkId::new("table_summary", rows), &summary, |b, p| {
            b.iter(|| {
                client
                    .call("table_summary", Payload::new(Codec::ArrowIpc, p.clone()))
                    .expect("a summary")
            })
        });
        let transform = [
            stream(sales(rows), Some(r#"{"min_quantity": 3, "n": 100}"#)),
            stream(products(), None),
        ]
        .concat();
        group.bench_with_input(
            BenchmarkId::new("table_transform", rows),
            &transform,
            |b, p| {
                b.iter(|| {
                    client
                        .call("table_transform", Payload::new(Codec::ArrowIpc, p.clone()))
                        .expect("a table")
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, data_path);
criterion_main!(benches);
