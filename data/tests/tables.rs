//! molt-data from outside: tables read from payloads, limits, and the round trip through
//! Polars.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, Int64Array, LargeStringArray, RecordBatch, StringArray};
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{DataType, Field, Schema};
use molt_data::{from_polars, to_polars, Table, TableCall, TableLimits, PARAMS_KEY};
use molt_worker::{Codec, EntryError, Payload};

fn sales(rows: usize) -> RecordBatch {
    let ids: Vec<i64> = (0..rows as i64).collect();
    let regions: Vec<&str> = ids
        .iter()
        .map(|i| ["north", "south", "east"][*i as usize % 3])
        .collect();
    let prices: Vec<f64> = ids.iter().map(|i| (*i as f64) * 0.5).collect();
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        ("region", Arc::new(StringArray::from(regions)) as ArrayRef),
        ("price", Arc::new(Float64Array::from(prices)) as ArrayRef),
    ])
    .unwrap()
}

/// One IPC stream of `batches` (all of the first one's schema, with `metadata`).
fn stream(batches: &[RecordBatch], metadata: HashMap<String, String>) -> Vec<u8> {
    let schema = Arc::new(batches[0].schema().as_ref().clone().with_metadata(metadata));
    let mut writer = StreamWriter::try_new(Vec::new(), &schema).unwrap();
    for batch in batches {
        writer
            .write(&batch.clone().with_schema(Arc::clone(&schema)).unwrap())
            .unwrap();
    }
    writer.into_inner().unwrap()
}

fn read(bytes: Vec<u8>, limits: &TableLimits) -> Result<TableCall, EntryError> {
    TableCall::read("t", Payload::new(Codec::ArrowIpc, bytes), limits)
}

fn invalid(result: Result<TableCall, EntryError>) -> String {
    match result {
        Err(EntryError::InvalidInput(message)) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn a_stream_reads_back_as_its_batches() {
    let batches = [sales(5), sales(3)];
    let call = read(stream(&batches, HashMap::new()), &TableLimits::default()).unwrap();
    let [table] = call.expect::<1>("t").unwrap();
    assert_eq!(table.num_rows(), 8);
    assert_eq!(table.batches().len(), 2);
    assert_eq!(table.batches()[0].columns(), batches[0].columns());
    assert_eq!(table.batches()[1].columns(), batches[1].columns());
}

#[test]
fn streams_back_to_back_are_tables_in_order() {
    let bytes = [
        stream(&[sales(2)], HashMap::new()),
        stream(&[sales(7)], HashMap::new()),
    ]
    .concat();
    let call = read(bytes, &TableLimits::default()).unwrap();
    let rows: Vec<u64> = call.tables().iter().map(Table::num_rows).collect();
    assert_eq!(rows, [2, 7]);
    let message = match call.expect::<1>("t") {
        Err(EntryError::InvalidInput(message)) => message,
        other => panic!("{other:?}"),
    };
    assert_eq!(message, "t takes 1 table(s), the call sent 2");
}

#[test]
fn a_table_of_no_batches_keeps_its_schema() {
    let schema = sales(1).schema();
    let bytes = StreamWriter::try_new(Vec::new(), &schema)
        .unwrap()
        .into_inner()
        .unwrap();
    let [table] = read(bytes, &TableLimits::default())
        .unwrap()
        .expect::<1>("t")
        .unwrap();
    assert_eq!(table.num_rows(), 0);
    assert_eq!(table.schema().fields(), schema.fields());
    assert_eq!(to_polars(&table).unwrap().shape(), (0, 3));
}

#[derive(serde::Deserialize, Debug, PartialEq)]
struct Params {
    #[serde(default)]
    n: u32,
}

#[test]
fn params_come_from_the_first_schemas_metadata() {
    let metadata = HashMap::from([(PARAMS_KEY.to_owned(), r#"{"n": 12}"#.to_owned())]);
    let call = read(stream(&[sales(1)], metadata), &TableLimits::default()).unwrap();
    assert_eq!(call.params::<Params>("t").unwrap(), Params { n: 12 });
    let call = read(stream(&[sales(1)], HashMap::new()), &TableLimits::default()).unwrap();
    assert_eq!(call.params::<Params>("t").unwrap(), Params { n: 0 });
}

#[test]
fn bad_params_name_the_field() {
    let metadata = HashMap::from([(PARAMS_KEY.to_owned(), r#"{"n": -1}"#.to_owned())]);
    let call = read(stream(&[sales(1)], metadata), &TableLimits::default()).unwrap();
    let Err(EntryError::InvalidInput(message)) = call.params::<Params>("t") else {
        panic!()
    };
    assert!(message.starts_with("invalid t payload: n: "), "{message}");
}

#[test]
fn a_payload_over_max_bytes_is_refused_before_decoding() {
    let bytes = stream(&[sales(100)], HashMap::new());
    let limits = TableLimits {
        max_bytes: bytes.len() - 1,
        ..TableLimits::default()
    };
    let message = invalid(read(bytes.clone(), &limits));
    assert_eq!(
        message,
        format!(
            "t: the tables are {} bytes, over the max_bytes limit ({}) of settings.data",
            bytes.len(),
            bytes.len() - 1
        )
    );
    let limits = TableLimits {
        max_bytes: bytes.len(),
        ..TableLimits::default()
    };
    read(bytes, &limits).unwrap();
}

#[test]
fn a_table_over_max_rows_is_refused() {
    let bytes = stream(&[sales(60), sales(41)], HashMap::new());
    let limits = TableLimits {
        max_rows: 100,
        ..TableLimits::default()
    };
    assert_eq!(
        invalid(read(bytes.clone(), &limits)),
        "t: table 1 has more than 100 rows, the max_rows limit of settings.data"
    );
    read(
        bytes,
        &TableLimits {
            max_rows: 101,
            ..TableLimits::default()
        },
    )
    .unwrap();
}

#[test]
fn a_table_over_max_columns_is_refused() {
    let bytes = stream(&[sales(1)], HashMap::new());
    let limits = TableLimits {
        max_columns: 2,
        ..TableLimits::default()
    };
    assert_eq!(
        invalid(read(bytes, &limits)),
        "t: table 1 has 3 columns, over the max_columns limit (2) of settings.data"
    );
}

#[test]
fn codecs_other_than_arrow_and_raw_are_refused() {
    let bytes = stream(&[sales(1)], HashMap::new());
    TableCall::read(
        "t",
        Payload::new(Codec::Raw, bytes.clone()),
        &TableLimits::default(),
    )
    .unwrap();
    let result = TableCall::read(
        "t",
        Payload::new(Codec::MsgPack, bytes),
        &TableLimits::default(),
    );
    assert_eq!(
        invalid(result),
        "t takes Arrow IPC streams (codec ArrowIpc or Raw)"
    );
}

#[test]
fn an_empty_payload_is_refused() {
    assert_eq!(
        invalid(read(Vec::new(), &TableLimits::default())),
        "t: the payload holds no table"
    );
}

#[test]
fn every_truncation_is_invalid_input() {
    let bytes = stream(&[sales(4), sales(2)], HashMap::new());
    for len in 0..bytes.len() {
        let message = invalid(read(bytes[..len].to_vec(), &TableLimits::default()));
        assert!(
            message.starts_with("t: table 1: not a valid Arrow IPC stream") || len == 0,
            "{len}: {message}"
        );
    }
}

/// A small deterministic generator, so a failing case can be rerun.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn garbled_streams_are_invalid_input_or_valid_tables() {
    let original = [
        stream(&[sales(6)], HashMap::new()),
        stream(&[sales(3)], HashMap::new()),
    ]
    .concat();
    let mut rng = XorShift(0x6d6f_6c74);
    let (mut refused, mut decoded) = (0, 0);
    for case in 0..3_000 {
        let mut bytes = original.clone();
        for _ in 0..1 + rng.next() % 4 {
            let at = (rng.next() as usize) % bytes.len();
            bytes[at] = match rng.next() % 3 {
                0 => bytes[at] ^ (1 << (rng.next() % 8)),
                1 => 0xff,
                _ => rng.next() as u8,
            };
        }
        if case % 7 == 0 {
            bytes.truncate((rng.next() as usize) % bytes.len());
        }
        match read(bytes, &TableLimits::default()) {
            Ok(call) => {
                decoded += 1;
                // What arrow-rs accepted is a valid table: Polars takes it or names the column.
                for table in call.tables() {
                    match to_polars(table) {
                        Ok(_) | Err(EntryError::InvalidInput(_)) => {}
                        Err(other) => panic!("case {case}: {other:?}"),
                    }
                }
            }
            Err(EntryError::InvalidInput(_)) => refused += 1,
            Err(other) => panic!("case {case}: {other:?}"),
        }
    }
    assert!(
        refused > 0 && decoded > 0,
        "refused {refused}, decoded {decoded}"
    );
}

#[test]
fn polars_round_trip_keeps_the_values() {
    let batch = sales(10);
    let table = Table::new(batch.schema(), vec![batch.clone(), sales(4)]).unwrap();
    let frame = to_polars(&table).unwrap();
    assert_eq!(frame.shape(), (14, 3));
    let back = from_polars(frame).unwrap();
    assert_eq!(back.num_rows(), 14);
    let fields: Vec<(String, DataType)> = back
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(
        fields,
        [
            ("id".to_owned(), DataType::Int64),
            ("region".to_owned(), DataType::LargeUtf8),
            ("price".to_owned(), DataType::Float64),
        ]
    );
    let ids: Vec<i64> = column::<Int64Array>(&back, 0)
        .flat_map(|a| a.values().to_vec())
        .collect();
    let regions: Vec<String> = column::<LargeStringArray>(&back, 1)
        .flat_map(|a| a.iter().map(|v| v.unwrap().to_owned()).collect::<Vec<_>>())
        .collect();
    let prices: Vec<f64> = column::<Float64Array>(&back, 2)
        .flat_map(|a| a.values().to_vec())
        .collect();
    let expected_ids: Vec<i64> = (0..10).chain(0..4).collect();
    assert_eq!(ids, expected_ids);
    assert_eq!(regions[..4], ["north", "south", "east", "north"]);
    assert_eq!(regions[10..], ["north", "south", "east", "north"]);
    assert_eq!(prices[9], 4.5);
}

/// Column `index` of every batch of `table`, as `A`.
fn column<A: 'static + Clone>(table: &Table, index: usize) -> impl Iterator<Item = A> + '_ {
    table.batches().iter().map(move |b| {
        b.column(index)
            .as_any()
            .downcast_ref::<A>()
            .unwrap()
            .clone()
    })
}

#[test]
fn table_new_refuses_a_batch_of_another_schema() {
    let other = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let result = Table::new(other, vec![sales(1)]);
    assert!(
        matches!(result, Err(EntryError::InvalidInput(_))),
        "{result:?}"
    );
}

#[test]
fn a_reply_stream_reads_back() {
    let table = Table::new(sales(3).schema(), vec![sales(3)]).unwrap();
    let bytes = table.to_ipc().unwrap();
    let [back] = read(bytes, &TableLimits::default())
        .unwrap()
        .expect::<1>("t")
        .unwrap();
    assert_eq!(back.batches()[0], sales(3));
}

#[test]
fn types_polars_is_not_built_for_are_invalid_input_naming_the_column() {
    use arrow_array::types::Int32Type;
    use arrow_array::{DictionaryArray, Int16Array};
    let dictionary: DictionaryArray<Int32Type> = vec!["a", "b", "a"].into_iter().collect();
    for (name, column) in [
        ("d", Arc::new(dictionary) as ArrayRef),
        (
            "small",
            Arc::new(Int16Array::from(vec![1, 2, 3])) as ArrayRef,
        ),
    ] {
        let batch = RecordBatch::try_from_iter([(name, column)]).unwrap();
        let table = Table::new(batch.schema(), vec![batch]).unwrap();
        let Err(EntryError::InvalidInput(message)) = to_polars(&table) else {
            panic!("{name} was taken");
        };
        assert!(
            message.starts_with(&format!("column {name:?} (")),
            "{message}"
        );
        assert!(
            message.ends_with("a type this worker's Polars is not built for"),
            "{message}"
        );
    }
}
