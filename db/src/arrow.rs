//! Rows into Arrow: one record batch per result, and the IPC stream a reply carries.
//!
//! | Postgres | Arrow |
//! |---|---|
//! | `boolean` | Boolean |
//! | `smallint`, `integer`, `bigint` | Int16, Int32, Int64 |
//! | `real`, `double precision` | Float32, Float64 |
//! | `numeric` | Utf8 (exact, with its scale: a column's scale is not known up front) |
//! | `text`, `varchar`, `char`, `name` | Utf8 |
//! | `timestamptz` | Timestamp(µs, "UTC") |
//! | `timestamp` | Timestamp(µs) |
//! | `date` | Date32 |
//! | `time` | Time64(µs) |
//! | `json`, `jsonb` | Utf8 (the JSON text) |

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder, Int32Builder,
    Int64Builder, StringBuilder, Time64MicrosecondBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{ArrowError, DataType, Field, Schema, TimeUnit};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Timelike, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::conn::ResultSet;
use crate::error::DbError;

impl ResultSet {
    /// The rows as one Arrow record batch, a column per result column.
    pub fn to_record_batch(&self) -> Result<RecordBatch, DbError> {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, ty)| Ok(Field::new(name, arrow_type(name, ty)?, true)))
            .collect::<Result<_, DbError>>()?;
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .enumerate()
            .map(|(index, (name, ty))| column(&self.rows, index, name, ty))
            .collect::<Result<_, DbError>>()?;
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(internal)
    }

    /// The rows as an Arrow IPC stream (schema, one batch, end of stream): what a reply in
    /// the ArrowIpc codec carries.
    pub fn to_arrow_ipc(&self) -> Result<Vec<u8>, DbError> {
        let batch = self.to_record_batch()?;
        let mut writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &batch.schema())
            .map_err(internal)?;
        writer.write(&batch).map_err(internal)?;
        writer.into_inner().map_err(internal)
    }
}

fn internal(err: ArrowError) -> DbError {
    log::error!("arrow: {err}");
    DbError::Refused("internal error: the rows could not be written as Arrow".into())
}

fn arrow_type(name: &str, ty: &Type) -> Result<DataType, DbError> {
    Ok(match *ty {
        Type::BOOL => DataType::Boolean,
        Type::INT2 => DataType::Int16,
        Type::INT4 => DataType::Int32,
        Type::INT8 => DataType::Int64,
        Type::FLOAT4 => DataType::Float32,
        Type::FLOAT8 => DataType::Float64,
        Type::NUMERIC
        | Type::TEXT
        | Type::VARCHAR
        | Type::BPCHAR
        | Type::NAME
        | Type::JSON
        | Type::JSONB => DataType::Utf8,
        Type::TIMESTAMPTZ => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        Type::TIMESTAMP => DataType::Timestamp(TimeUnit::Microsecond, None),
        Type::DATE => DataType::Date32,
        Type::TIME => DataType::Time64(TimeUnit::Microsecond),
        _ => {
            return Err(DbError::Decode {
                column: name.to_owned(),
                wanted: "a type Arrow output supports",
            })
        }
    })
}

/// Column `index` of every row, as one Arrow array.
fn column(rows: &[Row], index: usize, name: &str, ty: &Type) -> Result<ArrayRef, DbError> {
    let decode = |wanted: &'static str| DbError::Decode {
        column: name.to_owned(),
        wanted,
    };
    macro_rules! build {
        ($builder:expr, $rust:ty, $wanted:literal, $convert:expr) => {{
            let mut builder = $builder;
            for row in rows {
                let value: Option<$rust> = row.try_get(index).map_err(|_| decode($wanted))?;
                builder.append_option(value.map($convert));
            }
            Arc::new(builder.finish()) as ArrayRef
        }};
    }
    let days_from_epoch = |date: NaiveDate| {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("a valid date");
        i32::try_from((date - epoch).num_days()).unwrap_or(i32::MAX)
    };
    Ok(match *ty {
        Type::BOOL => build!(BooleanBuilder::new(), bool, "boolean", |v| v),
        Type::INT2 => build!(Int16Builder::new(), i16, "smallint", |v| v),
        Type::INT4 => build!(Int32Builder::new(), i32, "integer", |v| v),
        Type::INT8 => build!(Int64Builder::new(), i64, "bigint", |v| v),
        Type::FLOAT4 => build!(Float32Builder::new(), f32, "real", |v| v),
        Type::FLOAT8 => build!(Float64Builder::new(), f64, "double precision", |v| v),
        Type::NUMERIC => build!(StringBuilder::new(), Decimal, "numeric", |v| v.to_string()),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            build!(StringBuilder::new(), String, "text", |v| v)
        }
        Type::JSON | Type::JSONB => {
            build!(StringBuilder::new(), serde_json::Value, "json", |v| v
                .to_string())
        }
        Type::TIMESTAMPTZ => build!(
            TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            DateTime<Utc>,
            "timestamptz",
            |v| v.timestamp_micros()
        ),
        Type::TIMESTAMP => build!(
            TimestampMicrosecondBuilder::new(),
            NaiveDateTime,
            "timestamp",
            |v| v.and_utc().timestamp_micros()
        ),
        Type::DATE => build!(Date32Builder::new(), NaiveDate, "date", days_from_epoch),
        Type::TIME => build!(Time64MicrosecondBuilder::new(), NaiveTime, "time", |v| {
            i64::from(v.num_seconds_from_midnight()) * 1_000_000 + i64::from(v.nanosecond() / 1_000)
        }),
        _ => return Err(decode("a type Arrow output supports")),
    })
}
