//! Arrow IPC streams in a call's payload: checked against the limits, then decoded in place.
//!
//! A table call's payload is one or more Arrow IPC streams back to back (the encapsulated
//! format of Arrow 0.15 and later: each message `0xFFFFFFFF`, metadata length, flatbuffer
//! metadata, body; each stream a schema, its batches and the end-of-stream marker
//! `0xFFFFFFFF 0x00000000`). The first stream's schema metadata may carry the call's
//! parameters as JSON under [`PARAMS_KEY`].
//!
//! Reading is two passes over the bytes. The first walks the message headers only (each
//! flatbuffer verified, every length checked against what is left): it finds where each
//! stream ends and counts rows and columns, so a table over a limit is refused before any
//! of it is decoded, and a truncated or garbled stream is refused before arrow-rs sees it.
//! The second hands each stream to arrow-rs' `StreamDecoder` over a slice of the same
//! buffer: column buffers are views of the payload, not copies (arrow-rs copies a buffer
//! only when it is not aligned for its type), and every array is validated (offsets,
//! UTF-8, null counts) before an entry gets it. Where arrow-rs 54 still panics on metadata
//! it does not expect, the panic is caught and the stream refused (see `guarded`).

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Once};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_ipc::MessageHeader;
use arrow_schema::{ArrowError, SchemaRef};
use molt_worker::{Codec, EntryError, Payload};
use serde::de::DeserializeOwned;

use crate::limits::TableLimits;

/// The schema metadata key under which a call's parameters travel, as JSON text.
pub const PARAMS_KEY: &str = "molt.params";

/// The marker that starts every message of the encapsulated IPC format.
const CONTINUATION: u32 = 0xFFFF_FFFF;

/// One table: a schema and its record batches, in the order they came.
#[derive(Clone, Debug)]
pub struct Table {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl Table {
    /// A table of `batches`, each of which has `schema`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if a batch's schema is not `schema`.
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> Result<Self, EntryError> {
        if let Some(index) = batches
            .iter()
            .position(|b| b.schema().fields() != schema.fields())
        {
            return Err(EntryError::InvalidInput(format!(
                "record batch {index} does not have the table's schema"
            )));
        }
        Ok(Self { schema, batches })
    }

    /// The table's schema (with its metadata).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The record batches.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// Rows in all batches.
    pub fn num_rows(&self) -> u64 {
        self.batches.iter().map(|b| b.num_rows() as u64).sum()
    }

    /// The table as one Arrow IPC stream (schema, batches, end of stream): what a reply in
    /// the ArrowIpc codec carries.
    pub fn to_ipc(&self) -> Result<Vec<u8>, EntryError> {
        let mut writer = StreamWriter::try_new(Vec::new(), &self.schema).map_err(unwritable)?;
        for batch in &self.batches {
            writer.write(batch).map_err(unwritable)?;
        }
        writer.into_inner().map_err(unwritable)
    }
}

fn unwritable(err: ArrowError) -> EntryError {
    log::error!("arrow ipc write: {err}");
    EntryError::Internal("the result could not be written as Arrow IPC".into())
}

/// The tables of one call, and its parameters.
#[derive(Clone, Debug)]
pub struct TableCall {
    tables: Vec<Table>,
}

impl TableCall {
    /// Reads the tables of a call to `entry` from its payload (codec ArrowIpc, or Raw from
    /// clients that do not name Arrow), checking `limits` first.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for another codec, a stream that is truncated, garbled or not Arrow
    /// IPC, or a table past one of `limits` (the message names the limit).
    pub fn read(entry: &str, payload: Payload, limits: &TableLimits) -> Result<Self, EntryError> {
        match payload.codec() {
            Codec::ArrowIpc | Codec::Raw => {}
            _ => {
                return Err(EntryError::InvalidInput(format!(
                    "{entry} takes Arrow IPC streams (codec ArrowIpc or Raw)"
                )))
            }
        }
        read_tables(payload.into_bytes(), limits)
            .map(|tables| Self { tables })
            .map_err(|detail| EntryError::InvalidInput(format!("{entry}: {detail}")))
    }

    /// The tables, in the order they came.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// The tables, owned.
    pub fn into_tables(self) -> Vec<Table> {
        self.tables
    }

    /// Exactly `N` tables, or `InvalidInput` saying how many `entry` takes.
    pub fn expect<const N: usize>(self, entry: &str) -> Result<[Table; N], EntryError> {
        let count = self.tables.len();
        self.tables.try_into().map_err(|_| {
            EntryError::InvalidInput(format!("{entry} takes {N} table(s), the call sent {count}"))
        })
    }

    /// The call's parameters: the JSON under [`PARAMS_KEY`] in the first table's schema
    /// metadata, decoded as `T` (from `{}` when there is none, so `T`'s defaults apply).
    ///
    /// # Errors
    ///
    /// `InvalidInput` naming the field at fault.
    pub fn params<T: DeserializeOwned>(&self, entry: &str) -> Result<T, EntryError> {
        let json = self
            .tables
            .first()
            .and_then(|table| table.schema.metadata().get(PARAMS_KEY))
            .map_or("{}", String::as_str);
        Payload::new(Codec::Json, json.as_bytes().to_vec()).decode(entry)
    }
}

/// Where one stream lies in the payload, and its schema (the table's, when it has no batch).
struct StreamSpan {
    start: usize,
    len: usize,
    schema: SchemaRef,
}

/// Both passes: the spans (limits checked), then each span decoded.
fn read_tables(bytes: Vec<u8>, limits: &TableLimits) -> Result<Vec<Table>, String> {
    if bytes.len() > limits.max_bytes {
        return Err(format!(
            "the tables are {} bytes, over the max_bytes limit ({}) of settings.data",
            bytes.len(),
            limits.max_bytes
        ));
    }
    let spans = split_streams(&bytes, limits)?;
    let buffer = Buffer::from_vec(bytes);
    spans
        .iter()
        .enumerate()
        .map(|(index, span)| {
            guarded(|| decode_stream(span, buffer.slice_with_length(span.start, span.len)))
                .unwrap_or_else(|| Err(ArrowError::IpcError("a batch arrow-rs cannot read".into())))
                .map_err(|err| format!("table {}: not a valid Arrow IPC stream: {err}", index + 1))
        })
        .collect()
}

/// Decodes one whole stream (its bytes end with the end-of-stream marker).
fn decode_stream(span: &StreamSpan, mut bytes: Buffer) -> Result<Table, ArrowError> {
    let mut decoder = StreamDecoder::new();
    let mut batches = Vec::new();
    while !bytes.is_empty() {
        if let Some(batch) = decoder.decode(&mut bytes)? {
            batches.push(batch);
        }
    }
    decoder.finish()?;
    let schema = batches
        .first()
        .map_or_else(|| Arc::clone(&span.schema), RecordBatch::schema);
    Ok(Table { schema, batches })
}

/// The first pass: walks the message headers, checks every length and the limits, and
/// returns where each stream is.
fn split_streams(bytes: &[u8], limits: &TableLimits) -> Result<Vec<StreamSpan>, String> {
    let mut spans = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let table = spans.len() + 1;
        let start = pos;
        let mut rows: u64 = 0;
        let mut schema: Option<SchemaRef> = None;
        loop {
            let fail = |what: &str| format!("table {table}: not a valid Arrow IPC stream: {what}");
            let marker = read_u32(bytes, pos).ok_or_else(|| fail("the stream ends early"))?;
            if marker != CONTINUATION {
                return Err(fail(
                    "a message does not start with the continuation marker",
                ));
            }
            let size = read_u32(bytes, pos + 4).ok_or_else(|| fail("the stream ends early"))?;
            pos += 8;
            if size == 0 {
                break;
            }
            let size = usize::try_from(size)
                .ok()
                .filter(|&size| size <= bytes.len() - pos && i32::try_from(size).is_ok())
                .ok_or_else(|| fail("a message is longer than the payload"))?;
            let message = arrow_ipc::root_as_message(&bytes[pos..pos + size])
                .map_err(|_| fail("a message header is not valid"))?;
            pos += size;
            let body = usize::try_from(message.bodyLength())
                .ok()
                .filter(|&body| body <= bytes.len() - pos)
                .ok_or_else(|| fail("a message body is longer than the payload"))?;
            pos += body;
            match message.header_type() {
                MessageHeader::Schema => {
                    if schema.is_some() {
                        return Err(fail("a second schema in one stream"));
                    }
                    let fb = message
                        .header_as_schema()
                        .ok_or_else(|| fail("a schema message without a schema"))?;
                    let columns = fb
                        .fields()
                        .map_or(0, |fields| fields.iter().map(count_fields).sum());
                    if columns > limits.max_columns {
                        return Err(format!(
                            "table {table} has {columns} columns, over the max_columns limit \
                             ({}) of settings.data",
                            limits.max_columns
                        ));
                    }
                    let converted = guarded(|| arrow_ipc::convert::fb_to_schema(fb))
                        .ok_or_else(|| fail("a schema arrow-rs cannot read"))?;
                    schema = Some(Arc::new(converted));
                }
                MessageHeader::RecordBatch | MessageHeader::DictionaryBatch if schema.is_none() => {
                    return Err(fail("a batch before the schema"));
                }
                MessageHeader::RecordBatch => {
                    let batch = message
                        .header_as_record_batch()
                        .ok_or_else(|| fail("a record batch message without a batch"))?;
                    if !buffers_within(batch, body) {
                        return Err(fail("a buffer lies outside its message body"));
                    }
                    let length = Some(batch.length())
                        .and_then(|length| u64::try_from(length).ok())
                        .ok_or_else(|| fail("a record batch of negative length"))?;
                    rows = rows.saturating_add(length);
                    if rows > limits.max_rows {
                        return Err(format!(
                            "table {table} has more than {} rows, the max_rows limit of \
                             settings.data",
                            limits.max_rows
                        ));
                    }
                }
                MessageHeader::DictionaryBatch => {
                    let within = message
                        .header_as_dictionary_batch()
                        .and_then(|dictionary| dictionary.data())
                        .is_some_and(|batch| buffers_within(batch, body));
                    if !within {
                        return Err(fail("a buffer lies outside its message body"));
                    }
                }
                _ => return Err(fail("a message that is neither schema nor batch")),
            }
        }
        let schema = schema
            .ok_or_else(|| format!("table {table}: not a valid Arrow IPC stream: no schema"))?;
        spans.push(StreamSpan {
            start,
            len: pos - start,
            schema,
        });
    }
    if spans.is_empty() {
        return Err("the payload holds no table".into());
    }
    Ok(spans)
}

/// A field and its children at every depth. The flatbuffer verifier bounds the nesting (64
/// tables deep), so the recursion is bounded too.
fn count_fields(field: arrow_ipc::Field<'_>) -> usize {
    1 + field
        .children()
        .map_or(0, |children| children.iter().map(count_fields).sum())
}

/// Whether every buffer of `batch` lies inside a body of `body` bytes. arrow-rs 54 slices
/// the body at these offsets unchecked (and panics past its end), so they are checked here.
fn buffers_within(batch: arrow_ipc::RecordBatch<'_>, body: usize) -> bool {
    batch.buffers().map_or(true, |buffers| {
        buffers.iter().all(|buffer| {
            let (Ok(offset), Ok(length)) = (
                u64::try_from(buffer.offset()),
                u64::try_from(buffer.length()),
            ) else {
                return false;
            };
            offset
                .checked_add(length)
                .is_some_and(|end| end <= body as u64)
        })
    })
}

thread_local! {
    /// True while this thread runs arrow-rs over untrusted bytes in [`guarded`].
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Runs arrow-rs' conversion of untrusted metadata, catching its panics. arrow-ipc 54 reads
/// a verified flatbuffer with `unwrap`s on optional fields and `panic!`s on values it does
/// not know (a field type without its type table, an unknown unit or bit width): a
/// well-formed flatbuffer can still panic it. The first pass checks every length and bound
/// itself; what is left is refused here as the client's error, and is not printed as a
/// panic of the worker (the hook is quiet while the flag is set, on this thread only).
fn guarded<T>(f: impl FnOnce() -> T) -> Option<T> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !GUARDED.with(Cell::get) {
                previous(info);
            }
        }));
    });
    GUARDED.with(|flag| flag.set(true));
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|flag| flag.set(false));
    result
        .inspect_err(|_| log::debug!("arrow-rs panicked over a malformed stream; refused"))
        .ok()
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(word.try_into().ok()?))
}
