//! `molt-data`: the data path of molt workers. A call sends tables as Arrow IPC streams; an
//! entry reads them in place from the payload, bounded by the manifest's limits, runs a
//! Polars lazy plan over them, and answers a summary or a table.
//!
//! - [`TableCall::read`] checks a payload against [`TableLimits`] (`settings.data`) and
//!   decodes its streams with arrow-rs; anything truncated, garbled or too large is
//!   `InvalidInput` naming what was wrong, never a panic.
//! - [`to_polars`] and [`from_polars`] move columns between arrow-rs and Polars through the
//!   Arrow C Data Interface, without copying their buffers.
//! - [`Table::to_ipc`] writes the reply's stream.
//!
//! docs/data-path.md has the wire format, the limits and the measurements.
//!
//! ```
//! use molt_data::{TableCall, TableLimits};
//! use molt_worker::{Codec, Payload};
//! use polars::prelude::*;
//!
//! // What a client sends: a table as an Arrow IPC stream.
//! let mut frame = df!("region" => ["n", "s", "n"], "amount" => [1.0, 2.0, 4.0]).unwrap();
//! let stream = molt_data::from_polars(frame).unwrap().to_ipc().unwrap();
//!
//! // What an entry does with it.
//! let call = TableCall::read("sum_by_region", Payload::new(Codec::ArrowIpc, stream),
//!     &TableLimits::default()).unwrap();
//! let [sales] = call.expect::<1>("sum_by_region").unwrap();
//! let sums = molt_data::to_polars(&sales).unwrap().lazy()
//!     .group_by([col("region")]).agg([col("amount").sum()])
//!     .sort(["region"], Default::default())
//!     .collect().unwrap();
//! assert_eq!(sums.column("amount").unwrap().f64().unwrap().get(0), Some(5.0));
//! ```
#![deny(missing_docs)]

mod frame;
mod ipc;
mod limits;

pub use frame::{from_polars, to_polars};
pub use ipc::{Table, TableCall, PARAMS_KEY};
pub use limits::TableLimits;
/// The Polars this crate is built with (features `lazy` and `ipc`): use it rather than a
/// Polars of your own, so that there is one in the binary.
pub use polars;
