//! Values between Postgres and the formats molt answers in: parameters sent as text (the
//! server parses them as the statement's types, as psycopg's do), and column values decoded by
//! their Postgres type.

use std::error::Error;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::{to_sql_checked, Format, IsNull, ToSql, Type};
use tokio_postgres::Row;

use crate::error::DbError;

/// A parameter in Postgres' text format, for any parameter type: the server parses it as the
/// type the statement infers (`42` as a bigint, `2024-01-01T00:00:00Z` as a timestamptz).
/// How a value that arrived as text or JSON is bound without knowing its type up front.
///
/// ```
/// use molt_db::TextParam;
/// let params = [TextParam::from("42"), TextParam::null()];
/// assert!(!params[0].is_null() && params[1].is_null());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextParam(Option<String>);

impl TextParam {
    /// SQL NULL.
    pub fn null() -> Self {
        Self(None)
    }

    /// Whether it is NULL.
    pub fn is_null(&self) -> bool {
        self.0.is_none()
    }
}

impl From<&str> for TextParam {
    fn from(text: &str) -> Self {
        Self(Some(text.to_owned()))
    }
}

impl From<String> for TextParam {
    fn from(text: String) -> Self {
        Self(Some(text))
    }
}

impl ToSql for TextParam {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        match &self.0 {
            Some(text) => {
                out.extend_from_slice(text.as_bytes());
                Ok(IsNull::No)
            }
            None => Ok(IsNull::Yes),
        }
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        Format::Text
    }

    to_sql_checked!();
}

/// One column value, decoded by its Postgres type.
#[derive(Clone, Debug, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// `boolean`.
    Bool(bool),
    /// `smallint`, `integer`, `bigint`.
    Int(i64),
    /// `real`, `double precision`.
    Float(f64),
    /// `numeric`, with its scale (`12.50` stays `12.50`).
    Numeric(Decimal),
    /// `text`, `varchar`, `char`, `name`.
    Text(String),
    /// `timestamptz`, in UTC.
    Timestamptz(DateTime<Utc>),
    /// `timestamp` (without time zone).
    Timestamp(NaiveDateTime),
    /// `date`.
    Date(NaiveDate),
    /// `time` (without time zone).
    Time(NaiveTime),
    /// `json`, `jsonb`.
    Json(serde_json::Value),
}

impl SqlValue {
    /// Whether values of `ty` can be decoded.
    pub fn supports(ty: &Type) -> bool {
        matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::NUMERIC
                | Type::TEXT
                | Type::VARCHAR
                | Type::BPCHAR
                | Type::NAME
                | Type::TIMESTAMPTZ
                | Type::TIMESTAMP
                | Type::DATE
                | Type::TIME
                | Type::JSON
                | Type::JSONB
        )
    }

    /// Column `index` of `row`.
    pub fn from_column(row: &Row, index: usize) -> Result<Self, DbError> {
        let column = &row.columns()[index];
        let decode_error = |wanted: &'static str| DbError::Decode {
            column: column.name().to_owned(),
            wanted,
        };
        macro_rules! get {
            ($ty:ty, $variant:expr, $wanted:literal) => {
                row.try_get::<_, Option<$ty>>(index)
                    .map_err(|_| decode_error($wanted))?
                    .map_or(SqlValue::Null, $variant)
            };
        }
        Ok(match *column.type_() {
            Type::BOOL => get!(bool, SqlValue::Bool, "boolean"),
            Type::INT2 => get!(i16, |v| SqlValue::Int(v.into()), "smallint"),
            Type::INT4 => get!(i32, |v| SqlValue::Int(v.into()), "integer"),
            Type::INT8 => get!(i64, SqlValue::Int, "bigint"),
            Type::FLOAT4 => get!(f32, |v| SqlValue::Float(v.into()), "real"),
            Type::FLOAT8 => get!(f64, SqlValue::Float, "double precision"),
            Type::NUMERIC => get!(Decimal, SqlValue::Numeric, "numeric"),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
                get!(String, SqlValue::Text, "text")
            }
            Type::TIMESTAMPTZ => get!(DateTime<Utc>, SqlValue::Timestamptz, "timestamptz"),
            Type::TIMESTAMP => get!(NaiveDateTime, SqlValue::Timestamp, "timestamp"),
            Type::DATE => get!(NaiveDate, SqlValue::Date, "date"),
            Type::TIME => get!(NaiveTime, SqlValue::Time, "time"),
            Type::JSON | Type::JSONB => get!(serde_json::Value, SqlValue::Json, "json"),
            _ => return Err(decode_error("a supported type")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_params_go_as_text_for_every_type() {
        let param = TextParam::from("7");
        for ty in [Type::INT8, Type::TIMESTAMPTZ, Type::TEXT] {
            assert!(matches!(param.encode_format(&ty), Format::Text));
            let mut out = bytes::BytesMut::new();
            assert!(matches!(param.to_sql(&ty, &mut out).unwrap(), IsNull::No));
            assert_eq!(&out[..], b"7");
        }
        let mut out = bytes::BytesMut::new();
        assert!(matches!(
            TextParam::null().to_sql(&Type::INT8, &mut out).unwrap(),
            IsNull::Yes
        ));
    }
}
