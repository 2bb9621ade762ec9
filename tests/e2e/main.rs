//! End-to-end tests: each test starts its own server (see
//! `wafer_tests::TestApp`) and talks to it over HTTP. One module per feature.

mod adversarial;
mod audit;
mod backends;
mod catalog;
mod columnar;
mod enrich;
mod errors;
mod faults;
mod feast;
mod feast_client;
mod flow;
mod historical;
mod lifecycle;
mod openapi;
mod provenance;
mod sandbox;
mod serving;
mod shadow;
mod time;
