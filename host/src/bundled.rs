//! The first-party transforms compiled into the binary.
//!
//! `build.rs` builds them from `transforms/` as Wasm components and embeds
//! the bytes, so `wafer demo` (and any server that wants them) can publish
//! them with nothing else installed, and the bundled bytes always match the
//! sources they were built from. The version is the crate's own version, so
//! a change to a transform ships under a new version when its crate's
//! version is bumped.

/// A transform embedded in the binary, ready to publish.
#[derive(Debug, Clone, Copy)]
pub struct BundledTransform {
    /// The transform's registry name (e.g. `indicators`).
    pub name: &'static str,
    /// The version to publish it under (the crate's version).
    pub version: &'static str,
    /// The component bytes.
    pub bytes: &'static [u8],
}

// Defines `INDICATORS`, `RISK`, `VALUATION`, `ROLLING`, `SIGNALS`, each with
// its `*_VERSION`, and `ALL`.
include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
