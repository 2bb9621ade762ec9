//! Guest components for tests, built from `tests/guests/` by `build.rs`.
//!
//! - [`EVIL`]: one component that misbehaves on purpose, selected by its
//!   `mode` parameter (`ok`, `error`, `trap`, `loop`, `alloc`, `wrong_len`,
//!   `log`, `stdout`, `fs`, `env`, ...); see `tests/guests/evil/src/lib.rs`.
//! - [`SKEW`]: the evil guest's `ok` mode with a known skew, the candidate
//!   of shadow-mode tests; see `tests/guests/skew/src/lib.rs`.
//! - [`BLOAT`]: a component whose `describe` lists 200,000 outputs, which
//!   publishing must refuse; see `tests/guests/bloat/src/lib.rs`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));

/// A component that imports one empty instance named `name` and exports
/// nothing, assembled by hand (component binary format: preamble, a type
/// section with one empty instance type, an import section): what a guest
/// using, say, `std::net` brings, without building one.
pub fn component_importing(name: &str) -> Vec<u8> {
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.extend([0x07, 0x03, 0x01, 0x42, 0x00]);
    let mut import = vec![0x01, 0x00, name.len() as u8];
    import.extend(name.as_bytes());
    import.extend([0x05, 0x00]);
    bytes.extend([0x0a, import.len() as u8]);
    bytes.extend(import);
    bytes
}

/// Three daily rows of `x` for the evil guest's batch export, in `mode`
/// (a `POST /v1/transforms/evil/invoke` body).
pub fn evil_input(mode: &str) -> serde_json::Value {
    let start = wafer_host::model::Timestamp::parse("2024-05-01T00:00:00Z").expect("timestamp");
    let timestamps: Vec<String> = (0..3).map(|d| start.plus_secs(d * 86_400).to_rfc3339()).collect();
    serde_json::json!({"params": {"mode": mode},
                       "sources": {"s": {"timestamps": timestamps, "columns": {"x": [1.5, -2.0, 4.25]}}}})
}
