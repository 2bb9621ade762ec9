//! End-to-end tests: each test starts its own server (see
//! `wafer_tests::TestApp`) and talks to it over HTTP. One module per feature.

mod audit;
mod backends;
mod catalog;
mod errors;
mod faults;
mod flow;
mod historical;
mod lifecycle;
mod openapi;
mod sandbox;
mod serving;
