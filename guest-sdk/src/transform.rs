//! The trait a transform implements and the macro that exports it.

use crate::descriptor::Descriptor;
use crate::input::{BatchInput, OnDemandInput};
use crate::table::Table;
use core::marker::PhantomData;

/// A wafer transform.
///
/// Functions take no `self`: the host may run every call in a fresh instance,
/// so a transform cannot rely on state between calls and should not try.
/// Implement the method matching the kind [`describe`](Transform::describe)
/// declares; the other keeps its default, which refuses the call.
///
/// An `Err` is the transform refusing its input (missing column, bad
/// parameter); its message reaches the caller. A panic is a trap: the host
/// reports it as a failure of the transform, counts it against the plugin's
/// breaker and drops the instance, so reserve panics for bugs.
pub trait Transform {
    /// Describes the transform: kind, inputs, outputs and parameters.
    fn describe() -> Descriptor;

    /// Computes feature rows from one entity's history. Return one row per
    /// output time (usually the input's timestamps) with one column per
    /// declared output.
    fn batch(input: BatchInput) -> Result<Table, String> {
        let _ = input;
        Err("this transform does not implement batch".to_string())
    }

    /// Computes features for a request: one output row per input row. The
    /// result's timestamps are ignored (the host stamps request time).
    fn on_demand(input: OnDemandInput) -> Result<Table, String> {
        let _ = input;
        Err("this transform does not implement on_demand".to_string())
    }
}

/// Connects a [`Transform`] to the generated WIT export trait. Generic so the
/// generated glue stays in this crate and the [`export!`](crate::export)
/// macro only has to name one type.
#[doc(hidden)]
pub struct Adapter<T>(PhantomData<T>);

/// Exports a [`Transform`] implementation as the component's `transform`
/// interface. Use it once per crate, at the top level:
///
/// ```no_run
/// use wafer_guest::{Descriptor, Transform};
///
/// pub struct Nothing;
///
/// impl Transform for Nothing {
///     fn describe() -> Descriptor {
///         Descriptor::batch("Computes nothing")
///     }
/// }
///
/// wafer_guest::export!(Nothing);
/// ```
///
/// Expands to nothing unless compiling for `wasm32`, so the same crate builds
/// and unit-tests natively.
#[macro_export]
macro_rules! export {
    ($transform:ty) => {
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        const _: () = {
            // The generated export macro takes an identifier, not a type.
            type __WaferExport = $crate::__private::Adapter<$transform>;
    $crate::bindings::__export_wafer_transform!(__WaferExport with_types_in $crate::bindings);
        };
    };
}
