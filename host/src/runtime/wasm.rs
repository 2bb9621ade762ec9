//! (being written)
pub struct WasmRuntime;
