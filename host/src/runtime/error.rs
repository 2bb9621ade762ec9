//! How a transform call can fail. The distinction matters to callers: a
//! guest error is the transform refusing its input (the caller's problem, a
//! 4xx), a trap or limit is the transform misbehaving (the module's problem),
//! and an invalid component is refused at publish time.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a usable transform component: not Wasm, not a
    /// component, not our world, an import the sandbox does not provide, or
    /// `describe` failed.
    #[error("invalid transform component: {0}")]
    InvalidComponent(String),
    /// The module exceeds the size limit.
    #[error("module is {size} bytes, over the {limit}-byte limit")]
    ModuleTooLarge { size: usize, limit: usize },
    /// The transform returned an error result.
    #[error("transform {module} returned an error: {message}")]
    Guest { module: String, message: String },
    /// The transform trapped (panic, unreachable, stack overflow...).
    #[error("transform {module} trapped: {message}")]
    Trap { module: String, message: String },
    /// The call ran past its deadline and was interrupted.
    #[error("transform {module} exceeded its {:?} deadline and was stopped", limit)]
    Timeout { module: String, limit: Duration },
    /// The guest tried to grow its memory past the cap.
    #[error("transform {module} exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { module: String, limit_bytes: usize },
    /// The output does not match what the transform declared (wrong row
    /// count, missing column, wrong type) or is larger than allowed.
    #[error("transform {module} produced invalid output: {message}")]
    BadOutput { module: String, message: String },
    /// The module was never loaded in this process.
    #[error("transform module {0} is not loaded")]
    NotLoaded(String),
    /// Every instance slot is in use; retry shortly.
    #[error("transform runtime is at capacity; retry shortly")]
    Busy,
    #[error("transform runtime failure: {0}")]
    Internal(String),
}
