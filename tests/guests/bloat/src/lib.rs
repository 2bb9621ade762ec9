//! # wafer-bloat-guest
//!
//! A test-only transform that is well formed in every way but one: its
//! `describe` lists [`OUTPUTS`] float64 outputs (`x0`, `x1`, ...). Before
//! the host capped descriptors, publishing it was accepted and grew the
//! server's memory by ~190 MiB; now it must be refused at publish with
//! `invalid_component` naming the cap. It never gets to compute anything.

use wafer_guest::{BatchInput, Descriptor, Table, Transform, ValueType};

/// How many outputs `describe` lists: far over the host's cap of 1,024
/// entries per list (and its 256 KiB estimate of the whole descriptor), yet
/// small enough to build and hand over within the default 64 MiB memory cap
/// and 2 s deadline, so it is the descriptor check that refuses it.
pub const OUTPUTS: usize = 200_000;

/// The transform with the bloated descriptor.
pub struct Bloat;

impl Transform for Bloat {
    fn describe() -> Descriptor {
        (0..OUTPUTS).fold(Descriptor::batch("Lists far too many outputs; for publish tests only"), |d, i| {
            d.output(format!("x{i}"), ValueType::Float64, "")
        })
    }

    fn batch(_input: BatchInput) -> Result<Table, String> {
        Err("bloat is only ever published, never run".to_string())
    }
}

wafer_guest::export!(Bloat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_documented_number_of_distinct_outputs() {
        let d = Bloat::describe();
        assert_eq!(d.outputs.len(), OUTPUTS);
        assert_eq!((d.outputs[0].name.as_str(), d.outputs[OUTPUTS - 1].name.as_str()), ("x0", "x199999"));
    }
}
