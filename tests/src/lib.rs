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
//! - [`pg`], [`redis`]: private PostgreSQL and Redis servers for fault
//!   tests.
//! - `guests`: test-only transform components built from source.
//! - `e2e/`: the test binary, one module per feature.

pub mod backend;
pub mod guests;
pub mod harness;
pub mod pg;
pub mod redis;

pub use backend::Backend;
pub use harness::TestApp;

/// A TCP port free on loopback right now (the OS's pick).
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0").local_addr().expect("local addr").port()
}
