//! # wafer-tests
//!
//! End-to-end tests run real wafer servers on ephemeral ports and drive
//! them over HTTP.
//!
//! ## Layout
//! - [`backend`]: [`Backend`], the store pairs a test server runs on, and
//!   [`backend_tests!`], which runs a test on every pair.
//! - [`harness`]: [`TestApp`], a server with its own temp data dir and a
//!   manual clock, plus helpers for the `technical` flow.
//! - `guests`: test-only transform components built from source.
//! - `e2e/`: the test binary, one module per feature.

pub mod backend;
pub mod guests;
pub mod harness;
pub mod pg;

pub use backend::Backend;
pub use harness::TestApp;
