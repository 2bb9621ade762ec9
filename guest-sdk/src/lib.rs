//! # wafer-guest
//!
//! Write wafer feature transforms in plain Rust and compile them to sandboxed
//! WebAssembly components with `cargo build --target wasm32-wasip2 --release`.
//! This is the only crate a transform depends on: it re-exports
//! [`wit_bindgen`] and hides every generated binding behind friendly types.
//!
//! ```no_run
//! use wafer_guest::{BatchInput, Column, Descriptor, Table, Transform, ValueType::Float64, rolling};
//!
//! pub struct Sma5;
//!
//! impl Transform for Sma5 {
//!     fn describe() -> Descriptor {
//!         Descriptor::batch("Five-row moving average of close")
//!             .input("close", Float64, "Close price")
//!             .output("sma_5", Float64, "Mean of the last 5 closes")
//!             .min_history(5)
//!     }
//!     fn batch(input: BatchInput) -> Result<Table, String> {
//!         let prices = input.first_source()?;
//!         let sma = rolling::mean(prices.float64("close")?, 5);
//!         Ok(Table::new(prices.timestamps.clone()).with(Column::float64("sma_5", sma)))
//!     }
//! }
//!
//! wafer_guest::export!(Sma5);
//! ```
//!
//! ## Layout
//! - [`table`]: columns, tables and their values ([`Table`], [`Column`],
//!   [`Values`]), with `Option<f64>` views so nulls are never mistaken for
//!   numbers.
//! - [`input`]: what a call receives ([`BatchInput`], [`OnDemandInput`]).
//! - [`descriptor`]: how a transform describes itself ([`Descriptor`]).
//! - [`transform`]: the [`Transform`] trait an author implements, and the
//!   [`export!`] macro that turns an implementation into a component.
//! - [`rolling`]: windowed statistics and EMAs that give `None` until their
//!   window is full, the convention every wafer feature follows.
//! - [`log`]: logging through the host (stderr when run natively).
//!
//! Everything except the Wasm glue compiles natively, so a transform's math is
//! unit-tested with a plain `cargo test`.

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod bindings;
pub mod descriptor;
pub mod input;
pub mod log;
pub mod rolling;
pub mod table;
pub mod transform;

pub use descriptor::{Descriptor, Field, Kind, ParamSpec, RelatedSeries};
pub use input::{BatchInput, OnDemandInput, Param};
pub use table::{Column, NamedTable, Table, ValueType, Values};
pub use transform::Transform;

/// Re-exported so a transform depends on `wafer-guest` alone and always gets
/// the `wit-bindgen` version the SDK's bindings were generated with.
pub use wit_bindgen;

/// Not part of the public API: items the [`export!`] macro expands to.
#[doc(hidden)]
pub mod __private {
    pub use crate::transform::Adapter;
}
