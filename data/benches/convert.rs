//! What the data path costs per table, in-process: reading a payload (limits, framing, arrow-rs
//! decoding), moving it into Polars through the C Data Interface against the other way in
//! (Polars' own IPC reader over arrow-rs' IPC file bytes), and writing a reply.
//!
//! `cargo bench -p molt-data --bench convert` (numbers in docs/data-path.md).

use std::hint::black_box;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow_ipc::writer::FileWriter;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use molt_data::polars::prelude::{IpcReader, SerReader};
use molt_data::{from_polars, to_polars, Table, TableCall, TableLimits};
use molt_worker::{Codec, Payload};

const SIZES: [usize; 3] = [10_000, 100_000, 1_000_000];

/// The demo's `sales` table: ids, a region string, a product, a quantity and a price.
fn sales(rows: usize) -> Table {
    let ids: Vec<i64> = (0..rows as i64).collect();
    let regions: Vec<&str> = ids
        .iter()
        .map(|i| ["north", "south", "east", "west"][(*i as usize * 7) % 4])
        .collect();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids.clone())) as ArrayRef),
        ("region", Arc::new(StringArray::from(regions)) as ArrayRef),
        (
            "product_id",
            Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| i % 50))) as ArrayRef,
        ),
        (
            "quantity",
            Arc::new(Int64Array::from_iter_values(ids.iter().map(|i| 1 + i % 19))) as ArrayRef,
        ),
        (
            "price",
            Arc::new(Float64Array::from_iter_values(
                ids.iter().map(|i| (i % 9_900 + 100) as f64 / 100.0),
            )) as ArrayRef,
        ),
    ])
    .expect("a batch");
    Table::new(batch.schema(), vec![batch]).expect("a table")
}

fn file_bytes(table: &Table) -> Vec<u8> {
    let mut writer = FileWriter::try_new(Vec::new(), table.schema()).expect("a writer");
    for batch in table.batches() {
        writer.write(batch).expect("written");
    }
    writer.into_inner().expect("finished")
}

fn convert(c: &mut Criterion) {
    let mut group = c.benchmark_group("data");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3));
    for rows in SIZES {
        let table = sales(rows);
        let stream = table.to_ipc().expect("a stream");
        let file = file_bytes(&table);
        group.throughput(Throughput::Bytes(stream.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("read_payload", rows),
            &stream,
            |b, stream| {
                b.iter(|| {
                    let payload = Payload::new(Codec::ArrowIpc, stream.clone());
                    TableCall::read("bench", payload, &TableLimits::default()).expect("read")
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("copy_payload_only", rows),
            &stream,
            |b, s| b.iter(|| black_box(s.clone())),
        );
        group.bench_with_input(BenchmarkId::new("to_polars_ffi", rows), &table, |b, t| {
            b.iter(|| to_polars(t).expect("a frame"))
        });
        group.bench_with_input(
            BenchmarkId::new("to_polars_via_ipc_file", rows),
            &file,
            |b, f| {
                b.iter(|| {
                    IpcReader::new(Cursor::new(f.as_slice()))
                        .finish()
                        .expect("a frame")
                })
            },
        );
        let frame = to_polars(&table).expect("a frame");
        group.bench_with_input(
            BenchmarkId::new("reply_from_polars", rows),
            &frame,
            |b, f| {
                b.iter(|| {
                    from_polars(f.clone())
                        .expect("a table")
                        .to_ipc()
                        .expect("bytes")
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, convert);
criterion_main!(benches);
