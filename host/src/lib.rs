//! # wafer
//!
//! A feature store whose feature logic runs in sandboxed WebAssembly
//! components that teams publish at runtime.
//!
//! ## Layout
//! - [`model`]: the shared vocabulary (registry objects, values, timestamps,
//!   entity keys, columnar tables, jobs). Plain data.
//! - [`store`]: the storage roles (registry, offline, online) as traits, one
//!   backend per file. The only module that runs SQL.
//! - [`runtime`]: the Wasm transform runtime. The only module that imports
//!   wasmtime.
//! - [`service`]: the data paths composed from stores and runtime: registry
//!   changes, ingest, materialization jobs, online serving, prompt
//!   enrichment, Feast-compatible requests.
//! - [`api`]: the HTTP surface (axum). The only module that knows HTTP.
//! - [`config`]: server configuration from flags, environment and file.
//! - [`server`]: assembles everything and serves until shutdown.
//! - [`demo`]: the seeded demo data set and the bundled first-party
//!   transforms.
//! - [`cli`]: the `wafer` command line.
//! - [`clock`]: injected time.

pub mod api;
pub mod bundled;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod model;
pub mod runtime;
pub mod server;
pub mod service;
pub mod store;

pub use server::{App, run};
