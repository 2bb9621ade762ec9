//! Guest components for tests, built from `tests/guests/` by `build.rs`.
//!
//! - [`EVIL`]: one component that misbehaves on purpose, selected by its
//!   `mode` parameter (`ok`, `error`, `trap`, `loop`, `alloc`, `wrong_len`,
//!   `log`, `stdout`, `fs`, `env`, ...); see `tests/guests/evil/src/lib.rs`.
//! - [`SKEW`]: the evil guest's `ok` mode with a known skew, the candidate
//!   of shadow-mode tests; see `tests/guests/skew/src/lib.rs`.

include!(concat!(env!("OUT_DIR"), "/guests.rs"));
