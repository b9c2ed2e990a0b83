//! Tables to Polars data frames and back, through the Arrow C Data Interface.
//!
//! Polars has its own Arrow implementation (`polars-arrow`), not arrow-rs; both speak the C
//! Data Interface, so a column crosses as a pair of C structs that point at the same
//! buffers: no copy, no serialization. Polars copies only where its own layout differs:
//! strings (`Utf8` to its string views) on the way in, string views back to `LargeUtf8` on the
//! way out (the oldest layout, which every Arrow reader takes). `benches/convert.rs` measures
//! this against a round trip through IPC bytes.

use std::sync::Arc;

use arrow_array::ffi::{from_ffi, to_ffi, FFI_ArrowArray, FFI_ArrowSchema};
use arrow_array::{make_array, new_empty_array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use molt_worker::EntryError;
use polars::prelude::{CompatLevel, DataFrame, IntoColumn, PlSmallStr, SchemaExt, Series};
use polars_arrow::ffi as polars_ffi;

use crate::ipc::Table;

/// The table as a Polars data frame, a column per field, a chunk per record batch.
///
/// # Errors
///
/// `InvalidInput` naming a column whose Arrow type this Polars does not take: it is built
/// without its optional types, so it takes booleans, 32- and 64-bit integers, floats,
/// strings, binaries and lists of those; dictionaries, decimals, dates and times, structs are
/// refused (cast them before sending).
///
/// ```
/// use std::sync::Arc;
/// use arrow_array::{Int64Array, RecordBatch};
///
/// let batch = RecordBatch::try_from_iter([(
///     "n",
///     Arc::new(Int64Array::from(vec![1, 2, 3])) as arrow_array::ArrayRef,
/// )])
/// .unwrap();
/// let table = molt_data::Table::new(batch.schema(), vec![batch]).unwrap();
/// let frame = molt_data::to_polars(&table).unwrap();
/// assert_eq!(frame.shape(), (3, 1));
/// ```
pub fn to_polars(table: &Table) -> Result<DataFrame, EntryError> {
    let columns = table
        .schema()
        .fields()
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let unsupported = |detail: String| {
                EntryError::InvalidInput(format!(
                    "column {:?} ({}): {detail}",
                    field.name(),
                    field.data_type()
                ))
            };
            if !polars_takes(field.data_type()) {
                return Err(unsupported(
                    "a type this worker's Polars is not built for".into(),
                ));
            }
            let mut chunks = table
                .batches()
                .iter()
                .map(|batch| to_polars_array(batch.column(index)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(unsupported)?;
            if chunks.is_empty() {
                chunks.push(
                    to_polars_array(&new_empty_array(field.data_type())).map_err(unsupported)?,
                );
            }
            Series::from_arrow_chunks(PlSmallStr::from_str(field.name()), chunks)
                .map(IntoColumn::into_column)
                .map_err(|err| unsupported(err.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    DataFrame::new(columns).map_err(|err| EntryError::InvalidInput(err.to_string()))
}

/// The data frame as a table: its chunks as record batches (the frame is rechunked first if
/// its columns' chunks do not line up), strings as `LargeUtf8`.
///
/// # Errors
///
/// `Internal` if a Polars column cannot be expressed in arrow-rs (not for the types
/// [`to_polars`] produces).
pub fn from_polars(mut frame: DataFrame) -> Result<Table, EntryError> {
    if frame.should_rechunk() {
        frame.align_chunks_par();
    }
    let level = CompatLevel::oldest();
    let fields = SchemaExt::to_arrow(&**frame.schema(), level)
        .iter_values()
        .map(to_arrow_field)
        .collect::<Result<Vec<_>, _>>()?;
    let schema = Arc::new(Schema::new(fields));
    let batches = frame
        .iter_chunks(level, false)
        .map(|batch| {
            let fields: Vec<_> = batch.schema().iter_values().cloned().collect();
            let columns = fields
                .iter()
                .zip(batch.into_arrays())
                .map(|(field, array)| to_arrow_array(field, array))
                .collect::<Result<Vec<_>, _>>()?;
            RecordBatch::try_new(Arc::clone(&schema), columns).map_err(inexpressible)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Table::new(schema, batches)
}

/// Whether Polars, with the features it is built with here (`lazy`, `ipc`), takes columns of
/// type `ty`. Polars 0.46 panics, rather than erring, on the types whose feature is off
/// (dictionaries without `dtype-categorical`, and others), so the rest is refused up front:
/// small integers, decimals, dates and times, structs, maps, unions, fixed-size lists.
fn polars_takes(ty: &DataType) -> bool {
    match ty {
        DataType::Null
        | DataType::Boolean
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView => true,
        DataType::List(item) | DataType::LargeList(item) => polars_takes(item.data_type()),
        _ => false,
    }
}

/// One arrow-rs array as a Polars array over the same buffers.
fn to_polars_array(array: &ArrayRef) -> Result<Box<dyn polars_arrow::array::Array>, String> {
    let (array, schema) = to_ffi(&array.to_data()).map_err(|err| err.to_string())?;
    // SAFETY: arrow-rs' FFI_ArrowArray/FFI_ArrowSchema and polars-arrow's ArrowArray/
    // ArrowSchema are both the C Data Interface's `struct ArrowArray`/`struct ArrowSchema`,
    // #[repr(C)] with the same fields in the same order (`transmute` checks the sizes). The
    // values move: the release callbacks arrow-rs set run once, when Polars drops them.
    let (array, schema) = unsafe {
        (
            std::mem::transmute::<FFI_ArrowArray, polars_ffi::ArrowArray>(array),
            std::mem::transmute::<FFI_ArrowSchema, polars_ffi::ArrowSchema>(schema),
        )
    };
    // SAFETY: `schema` and `array` were exported just above by arrow-rs from an array it
    // validated, so they follow the C Data Interface; `array` matches `schema`'s type.
    unsafe {
        let field = polars_ffi::import_field_from_c(&schema).map_err(|err| err.to_string())?;
        polars_ffi::import_array_from_c(array, field.dtype).map_err(|err| err.to_string())
    }
}

/// A Polars field as an arrow-rs field.
fn to_arrow_field(field: &polars_arrow::datatypes::Field) -> Result<Field, EntryError> {
    let schema = polars_ffi::export_field_to_c(field);
    // SAFETY: as in `to_polars_array`, the other way: the same C struct under another name.
    let schema = unsafe { std::mem::transmute::<polars_ffi::ArrowSchema, FFI_ArrowSchema>(schema) };
    Field::try_from(&schema).map_err(inexpressible)
}

/// A Polars array as an arrow-rs array over the same buffers.
fn to_arrow_array(
    field: &polars_arrow::datatypes::Field,
    array: Box<dyn polars_arrow::array::Array>,
) -> Result<ArrayRef, EntryError> {
    let schema = polars_ffi::export_field_to_c(field);
    let array = polars_ffi::export_array_to_c(array);
    // SAFETY: as in `to_polars_array`, the other way: the same C structs under other names;
    // the release callbacks Polars set run once, when arrow-rs drops the imported array.
    let (array, schema) = unsafe {
        (
            std::mem::transmute::<polars_ffi::ArrowArray, FFI_ArrowArray>(array),
            std::mem::transmute::<polars_ffi::ArrowSchema, FFI_ArrowSchema>(schema),
        )
    };
    // SAFETY: Polars exported `array` and `schema` together just above, following the C Data
    // Interface, from one of its own arrays of that field's type.
    let data = unsafe { from_ffi(array, &schema) }.map_err(inexpressible)?;
    Ok(make_array(data))
}

fn inexpressible(err: arrow_schema::ArrowError) -> EntryError {
    log::error!("polars to arrow: {err}");
    EntryError::Internal("the result could not be expressed in Arrow".into())
}
