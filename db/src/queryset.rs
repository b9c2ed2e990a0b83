//! The worker's half of the Django queryset adapter (`molt_accel.querysets`): Django compiles
//! a registered queryset to SQL and parameters, the worker runs it here and answers its rows
//! as msgpack, as JSON bytes ready to be the response body, or as an Arrow stream.
//!
//! Only SQL the application exported is run: `manage.py molt_queries` writes each registered
//! queryset's statements (one per shape its arguments give) into the manifest's
//! `settings.database.queries`; a call names the query and sends the SQL it compiled, and a
//! statement that is not among the exported ones is refused. The statements run read-only
//! (the connection's default), bounded like every molt-db statement.

use std::io::Write as _;

use molt_worker::{Codec, Ctx, EntryError, Reply};
use serde::{Deserialize, Serialize};

use crate::conn::ResultSet;
use crate::django_json::DjangoJson;
use crate::error::DbError;
use crate::pool::Db;
use crate::statement::Query;
use crate::value::{SqlValue, TextParam};

/// One registered queryset in the manifest: the statements its arguments compile to.
///
/// ```
/// let exported: molt_db::ExportedQuery = serde_json::from_str(r#"{"statements": [{
///     "sql": "SELECT \"id\" FROM \"items\" WHERE \"user_id\" = $1 LIMIT $2",
///     "columns": ["id"],
///     "shape": "values"
/// }]}"#).unwrap();
/// assert_eq!(exported.statements.len(), 1);
/// ```
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportedQuery {
    /// Every statement the queryset compiles to, one per shape of its arguments.
    pub statements: Vec<ExportedStatement>,
}

/// One exported statement.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ExportedStatement {
    /// The SQL with `$n` placeholders, exactly as the adapter compiles it.
    pub sql: String,
    /// The row keys, in order: `.values()` field names (the JSON and Arrow column names).
    pub columns: Vec<String>,
    /// How rows come back.
    pub shape: Shape,
}

/// How a queryset gives its rows.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `.values()`: a map per row.
    Values,
    /// `.values_list()`: a list per row.
    ValuesList,
    /// `.values_list(flat=True)`: the one column's value per row.
    Flat,
}

/// The payload of a call to the queryset entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerysetCall {
    /// The registered name.
    pub query: String,
    /// The SQL the adapter compiled; must be one the manifest exports under `query`.
    pub sql: String,
    /// The parameters, in placeholder order.
    pub params: Vec<ParamValue>,
    /// What the reply carries.
    pub format: Format,
}

/// A parameter as the adapter sends it; bound in Postgres' text format, so the server parses
/// it as the statement's parameter type (dates and datetimes come as ISO 8601 text).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// NULL.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Text(String),
}

impl ParamValue {
    fn to_text(&self) -> TextParam {
        match self {
            Self::Null => TextParam::null(),
            Self::Bool(value) => TextParam::from(if *value { "true" } else { "false" }),
            Self::Int(value) => TextParam::from(value.to_string()),
            // Shortest round-trip digits: the server reads back the same double.
            Self::Float(value) => TextParam::from(ryu::Buffer::new().format(*value).to_owned()),
            Self::Text(value) => TextParam::from(value.as_str()),
        }
    }
}

/// What a queryset call answers.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// MsgPack rows in the queryset's shape; `timestamptz` values as msgpack timestamps
    /// (extension type -1), `numeric`, `date`, `time` and `timestamp` as their ISO/decimal
    /// text, which the adapter turns back into the Python types Django gives.
    Rows,
    /// The rows as the JSON Django's `JsonResponse` writes for them (see [`DjangoJson`]).
    Json,
    /// An Arrow IPC stream, one column per row key.
    Arrow,
}

/// The queryset adapter's entry. Register it (async) under the name the adapter calls,
/// `querysets` by default, with a state that holds the [`Db`]:
///
/// ```no_run
/// use molt_db::Db;
/// molt_worker::App::with_state(|startup| Ok(Db::new(startup.settings("database")?.unwrap_or_default())?))
///     .async_entry("querysets", molt_db::queryset::run_queryset::<Db>)
///     .run();
/// ```
pub async fn run_queryset<S>(call: QuerysetCall, ctx: Ctx<S>) -> Result<Reply, EntryError>
where
    S: AsRef<Db> + Send + Sync + 'static,
{
    let db = ctx.state().as_ref();
    let statement = db.exported_statement(&call.query, &call.sql)?;
    let params: Vec<TextParam> = call.params.iter().map(ParamValue::to_text).collect();
    let param_refs: Vec<crate::conn::Param<'_>> = params
        .iter()
        .map(|param| param as crate::conn::Param<'_>)
        .collect();
    let query = Query::owned(call.query.clone(), call.sql.clone());
    let mut conn = db.conn(&ctx).await?;
    let result = conn.result_set(&query, &param_refs).await?;
    drop(conn);
    ctx.check()?;
    let columns = &statement.columns;
    if columns.len() != result.columns.len() {
        return Err(DbError::Refused(format!(
            "query {} returned {} columns where its export names {}",
            call.query,
            result.columns.len(),
            columns.len()
        ))
        .into());
    }
    match call.format {
        Format::Json => Ok(Reply::with_codec(
            Codec::Json,
            json_rows(&result, statement)?,
        )),
        Format::Rows => Ok(Reply::with_codec(
            Codec::MsgPack,
            msgpack_rows(&result, statement)?,
        )),
        Format::Arrow => {
            let renamed = ResultSet {
                columns: columns
                    .iter()
                    .zip(&result.columns)
                    .map(|(key, (_, ty))| (key.clone(), ty.clone()))
                    .collect(),
                rows: result.rows,
            };
            Ok(Reply::with_codec(Codec::ArrowIpc, renamed.to_arrow_ipc()?))
        }
    }
}

impl AsRef<Db> for Db {
    fn as_ref(&self) -> &Db {
        self
    }
}

impl Db {
    /// The exported statement `sql` of the registered query `name`, or why it may not run.
    fn exported_statement(&self, name: &str, sql: &str) -> Result<&ExportedStatement, DbError> {
        let exported = self.shared().queries.get(name).ok_or_else(|| {
            DbError::Refused(format!(
                "no query {name:?} is exported to this worker (manage.py molt_queries writes them)"
            ))
        })?;
        exported
            .statements
            .iter()
            .find(|statement| statement.sql == sql)
            .ok_or_else(|| {
                DbError::Refused(format!(
                    "the SQL of query {name:?} is not one the manifest exports: export the \
                     queries again (manage.py molt_queries) and restart the worker"
                ))
            })
    }
}

fn json_rows(result: &ResultSet, statement: &ExportedStatement) -> Result<Vec<u8>, DbError> {
    let mut json = DjangoJson::new();
    match statement.shape {
        Shape::Values => json.rows_as_objects(&result.rows, &statement.columns)?,
        Shape::ValuesList => json.rows_as_lists(&result.rows)?,
        Shape::Flat => {
            json.begin_array();
            for row in &result.rows {
                json.value(&SqlValue::from_column(row, 0)?);
            }
            json.end_array();
        }
    }
    Ok(json.into_bytes())
}

fn msgpack_rows(result: &ResultSet, statement: &ExportedStatement) -> Result<Vec<u8>, DbError> {
    let mut out = Vec::with_capacity(64 * result.rows.len() + 8);
    let len = |n: usize| u32::try_from(n).map_err(|_| DbError::Refused("too many rows".into()));
    write(rmp::encode::write_array_len(
        &mut out,
        len(result.rows.len())?,
    ))?;
    for row in &result.rows {
        match statement.shape {
            Shape::Values => {
                write(rmp::encode::write_map_len(
                    &mut out,
                    len(statement.columns.len())?,
                ))?;
                for (index, key) in statement.columns.iter().enumerate() {
                    write(rmp::encode::write_str(&mut out, key))?;
                    msgpack_value(&mut out, &SqlValue::from_column(row, index)?)?;
                }
            }
            Shape::ValuesList => {
                write(rmp::encode::write_array_len(&mut out, len(row.len())?))?;
                for index in 0..row.len() {
                    msgpack_value(&mut out, &SqlValue::from_column(row, index)?)?;
                }
            }
            Shape::Flat => msgpack_value(&mut out, &SqlValue::from_column(row, 0)?)?,
        }
    }
    Ok(out)
}

fn msgpack_value(out: &mut Vec<u8>, value: &SqlValue) -> Result<(), DbError> {
    match value {
        SqlValue::Null => write(rmp::encode::write_nil(out).map_err(|_| ())),
        SqlValue::Bool(value) => write(rmp::encode::write_bool(out, *value).map_err(|_| ())),
        SqlValue::Int(value) => write(rmp::encode::write_sint(out, *value)),
        SqlValue::Float(value) => write(rmp::encode::write_f64(out, *value)),
        SqlValue::Numeric(value) => write(rmp::encode::write_str(out, &value.to_string())),
        SqlValue::Text(value) => write(rmp::encode::write_str(out, value)),
        SqlValue::Timestamptz(value) => {
            // The msgpack timestamp extension, 96-bit form: nanoseconds (u32), then seconds
            // (i64), big-endian; Python's msgpack decodes it with `timestamp=3` to an aware
            // UTC datetime.
            write(rmp::encode::write_ext_meta(out, 12, -1))?;
            let _ = out.write_all(&value.timestamp_subsec_nanos().to_be_bytes());
            let _ = out.write_all(&value.timestamp().to_be_bytes());
            Ok(())
        }
        SqlValue::Timestamp(value) => write(rmp::encode::write_str(
            out,
            &value.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        )),
        SqlValue::Date(value) => write(rmp::encode::write_str(
            out,
            &value.format("%Y-%m-%d").to_string(),
        )),
        SqlValue::Time(value) => write(rmp::encode::write_str(
            out,
            &value.format("%H:%M:%S%.6f").to_string(),
        )),
        SqlValue::Json(value) => write(rmp::encode::write_str(out, &value.to_string())),
    }
}

/// Writing into a Vec cannot fail; the msgpack encoder's error types say otherwise.
fn write<T, E>(result: Result<T, E>) -> Result<(), DbError> {
    result
        .map(drop)
        .map_err(|_| DbError::Refused("internal error: the rows could not be encoded".into()))
}
