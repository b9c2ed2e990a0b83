//! `table_summary` and `table_transform`: the data path's entries (docs/demo-contract.md), a
//! Polars lazy plan over tables a view sends as Arrow IPC streams.
//!
//! Both check the call's token between stages (tables read, frames built, plan run, reply
//! written): the plan itself runs to its end once started.

use arrow_schema::DataType as ArrowType;
use molt_data::polars::prelude::*;
use molt_data::{Table, TableCall};
use molt_worker::{Codec, Ctx, EntryError, IntoReply, Payload, Reply};
use serde::{Deserialize, Serialize};

use crate::DemoState;

/// Most rows `table_transform` answers.
const MAX_HEAD: u32 = 10_000;

/// The parameters of `table_summary` (the schema metadata `molt.params`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SummaryParams {
    /// Rows with a smaller `quantity` are left out.
    #[serde(default)]
    min_quantity: i64,
}

/// One group of `table_summary`'s answer.
#[derive(Serialize)]
struct Group {
    region: Option<String>,
    count: u64,
    quantity_sum: i64,
    price_mean: Option<f64>,
    price_p90: Option<f64>,
}

/// `table_summary`'s answer.
#[derive(Serialize)]
struct Summary {
    rows: u64,
    kept: u64,
    groups: Vec<Group>,
}

/// The parameters of `table_transform`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransformParams {
    #[serde(default)]
    min_quantity: i64,
    /// How many rows to answer, at most [`MAX_HEAD`].
    n: u32,
}

/// The columns `sales` must have, and their types.
const SALES: &[(&str, Kind)] = &[
    ("id", Kind::Int64),
    ("region", Kind::Text),
    ("product_id", Kind::Int64),
    ("quantity", Kind::Int64),
    ("price", Kind::Float64),
];

/// The columns `products` must have.
const PRODUCTS: &[(&str, Kind)] = &[("product_id", Kind::Int64), ("category", Kind::Text)];

#[derive(Clone, Copy)]
enum Kind {
    Int64,
    Float64,
    Text,
}

impl Kind {
    fn admits(self, ty: &ArrowType) -> bool {
        match self {
            Kind::Int64 => ty == &ArrowType::Int64,
            Kind::Float64 => ty == &ArrowType::Float64,
            Kind::Text => matches!(
                ty,
                ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View
            ),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Int64 => "int64",
            Kind::Float64 => "float64",
            Kind::Text => "a string type",
        }
    }
}

/// `table_summary`: one table `sales`; rows with `quantity >= min_quantity`, grouped by
/// `region` (sorted): count, sum of quantity, mean and 0.9 quantile (linear) of price.
/// Answers a MsgPack map (codec MsgPack for an ArrowIpc call, the same bytes in Raw for a
/// Raw one).
pub fn table_summary(payload: Payload, ctx: &Ctx<DemoState>) -> Result<Reply, EntryError> {
    const ENTRY: &str = "table_summary";
    let codec = payload.codec();
    let call = TableCall::read(ENTRY, payload, &ctx.state().data_limits)?;
    let params: SummaryParams = call.params(ENTRY)?;
    let [sales] = call.expect::<1>(ENTRY)?;
    require(&sales, "sales", SALES)?;
    ctx.check()?;
    let rows = sales.num_rows();
    let frame = molt_data::to_polars(&sales)?;
    drop(sales);
    ctx.check()?;
    let groups = frame
        .lazy()
        .filter(col("quantity").gt_eq(lit(params.min_quantity)))
        .group_by([col("region")])
        .agg([
            len().alias("count"),
            col("quantity").sum().alias("quantity_sum"),
            col("price").mean().alias("price_mean"),
            col("price")
                .quantile(lit(0.9), QuantileMethod::Linear)
                .alias("price_p90"),
        ])
        .sort(
            ["region"],
            SortMultipleOptions::default().with_nulls_last(true),
        )
        .collect()
        .map_err(plan_failed)?;
    ctx.check()?;
    let groups = groups_of(&groups).map_err(plan_failed)?;
    let summary = Summary {
        rows,
        kept: groups.iter().map(|group| group.count).sum(),
        groups,
    };
    let msgpack = summary.into_reply(Codec::MsgPack)?.bytes().to_vec();
    Ok(match codec {
        Codec::ArrowIpc => Reply::with_codec(Codec::MsgPack, msgpack),
        _ => Reply::encoded(msgpack),
    })
}

fn groups_of(groups: &DataFrame) -> PolarsResult<Vec<Group>> {
    let region = groups.column("region")?.str()?;
    let count = groups.column("count")?.idx()?;
    let quantity_sum = groups.column("quantity_sum")?.i64()?;
    let price_mean = groups.column("price_mean")?.f64()?;
    let price_p90 = groups.column("price_p90")?.f64()?;
    Ok((0..groups.height())
        .map(|i| Group {
            region: region.get(i).map(str::to_owned),
            count: count.get(i).map_or(0, u64::from),
            quantity_sum: quantity_sum.get(i).unwrap_or(0),
            price_mean: price_mean.get(i),
            price_p90: price_p90.get(i),
        })
        .collect())
}

/// `table_transform`: tables `sales` and `products`; rows of `sales` with `quantity >=
/// min_quantity` joined (inner) to `products` on `product_id`, with `revenue = quantity *
/// price`, sorted by revenue descending then id, the first `n`. Answers an Arrow IPC stream in
/// the call's codec: `id, region, product_id, category, quantity, price, revenue`.
pub fn table_transform(payload: Payload, ctx: &Ctx<DemoState>) -> Result<Reply, EntryError> {
    const ENTRY: &str = "table_transform";
    let call = TableCall::read(ENTRY, payload, &ctx.state().data_limits)?;
    let params: TransformParams = call.params(ENTRY)?;
    if params.n > MAX_HEAD {
        return Err(EntryError::InvalidInput(format!(
            "{ENTRY}: n must be at most {MAX_HEAD}"
        )));
    }
    let [sales, products] = call.expect::<2>(ENTRY)?;
    require(&sales, "sales", SALES)?;
    require(&products, "products", PRODUCTS)?;
    ctx.check()?;
    let sales = molt_data::to_polars(&sales)?;
    let products = molt_data::to_polars(&products)?;
    ctx.check()?;
    let top = sales
        .lazy()
        .filter(col("quantity").gt_eq(lit(params.min_quantity)))
        .join(
            products.lazy(),
            [col("product_id")],
            [col("product_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .with_column((col("quantity").cast(DataType::Float64) * col("price")).alias("revenue"))
        .sort(
            ["revenue", "id"],
            SortMultipleOptions::default().with_order_descending_multi([true, false]),
        )
        .limit(params.n as IdxSize)
        .select([
            col("id"),
            col("region"),
            col("product_id"),
            col("category"),
            col("quantity"),
            col("price"),
            col("revenue"),
        ])
        .collect()
        .map_err(plan_failed)?;
    ctx.check()?;
    Ok(Reply::encoded(molt_data::from_polars(top)?.to_ipc()?))
}

/// `InvalidInput` unless `table` has each of `columns` with its type.
fn require(table: &Table, name: &str, columns: &[(&str, Kind)]) -> Result<(), EntryError> {
    let schema = table.schema();
    for (column, kind) in columns {
        let Ok(field) = schema.field_with_name(column) else {
            return Err(EntryError::InvalidInput(format!(
                "{name} has no column {column:?}"
            )));
        };
        if !kind.admits(field.data_type()) {
            return Err(EntryError::InvalidInput(format!(
                "{name}: column {column:?} must be {}, is {}",
                kind.name(),
                field.data_type()
            )));
        }
    }
    Ok(())
}

/// The plan ran over columns of the types it checked, so a failure is not the caller's.
fn plan_failed(err: PolarsError) -> EntryError {
    log::error!("polars plan: {err}");
    EntryError::Internal("the table could not be computed".into())
}

#[cfg(test)]
mod tests {
    use molt_data::polars::prelude::*;
    use molt_worker::{Codec, EntryError};

    fn stream(frame: DataFrame) -> Vec<u8> {
        molt_data::from_polars(frame).unwrap().to_ipc().unwrap()
    }

    fn sales() -> DataFrame {
        df!(
            "id" => [1i64, 2, 3, 4],
            "region" => [Some("north"), Some("south"), Some("north"), None],
            "product_id" => [1i64, 2, 1, 2],
            "quantity" => [1i64, 5, 7, 2],
            "price" => [1.0, 2.0, 3.0, 4.0],
        )
        .unwrap()
    }

    #[test]
    fn summary_groups_by_region_with_the_null_region_last() {
        let reply = crate::call("table_summary", Codec::ArrowIpc, &stream(sales())).unwrap();
        let value: serde_json::Value = rmp_serde::from_slice(&reply).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "rows": 4,
                "kept": 4,
                "groups": [
                    // p90 of [1, 3], linear: 1 + 0.9 * (3 - 1).
                    {"region": "north", "count": 2, "quantity_sum": 8, "price_mean": 2.0, "price_p90": 2.8},
                    {"region": "south", "count": 1, "quantity_sum": 5, "price_mean": 2.0, "price_p90": 2.0},
                    {"region": null, "count": 1, "quantity_sum": 2, "price_mean": 4.0, "price_p90": 4.0},
                ]
            })
        );
    }

    #[test]
    fn transform_needs_n() {
        let products = df!("product_id" => [1i64, 2], "category" => ["a", "b"]).unwrap();
        let payload = [stream(sales()), stream(products)].concat();
        let Err(EntryError::InvalidInput(message)) =
            crate::call("table_transform", Codec::ArrowIpc, &payload)
        else {
            panic!("n was not required");
        };
        assert!(message.contains("missing field `n`"), "{message}");
    }

    #[test]
    fn a_msgpack_payload_is_refused() {
        let Err(EntryError::InvalidInput(message)) =
            crate::call("table_summary", Codec::MsgPack, b"\x80")
        else {
            panic!("msgpack accepted");
        };
        assert_eq!(
            message,
            "table_summary takes Arrow IPC streams (codec ArrowIpc or Raw)"
        );
    }
}
