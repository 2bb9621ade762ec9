//! Builds guest components from source for build scripts.
//!
//! Shared by `host/build.rs` (the bundled first-party transforms) and
//! `tests/build.rs` (the test guests) through `#[path = "..."] mod guests;`.
//! Components are always built from the workspace's sources, never
//! committed, so a `.wasm` can't drift from the code beside it.
//!
//! The nested build uses its own target directory (`target/guests`): the
//! outer cargo holds the lock on `target/` while build scripts run, so
//! sharing it would deadlock.

#![allow(dead_code)] // Each build script uses a different subset.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Wasm target guests are built for; it produces components directly.
pub const TARGET: &str = "wasm32-wasip2";
/// The workspace profile for guests (optimized, LTO, `panic = "abort"`).
pub const PROFILE: &str = "guest";

/// Variables cargo sets for the outer build that would change or break the
/// nested one: flags meant for the host target (or for clippy's wrapper,
/// which would re-lint the guests and invalidate their fingerprints), and a
/// target dir that would put us back on the outer lock.
const SCRUBBED_ENV: &[&str] = &[
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_TARGET",
];

/// The workspace root: the nearest ancestor of the calling crate whose
/// `Cargo.toml` has a `[workspace]` table.
pub fn workspace_root() -> PathBuf {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set by cargo"));
    manifest_dir
        .ancestors()
        .find(|dir| {
            std::fs::read_to_string(dir.join("Cargo.toml"))
                .is_ok_and(|toml| toml.lines().any(|l| l.trim() == "[workspace]"))
        })
        .expect("the crate is inside the wafer workspace")
        .to_path_buf()
}

/// Builds `packages` as components and returns their `.wasm` paths, in the
/// same order. Panics (failing the build script) with the nested cargo's
/// output if the build fails.
pub fn build(packages: &[&str]) -> Vec<PathBuf> {
    let root = workspace_root();
    // Directories are scanned recursively. The lock file and workspace
    // manifest hold the SDK's dependency versions and the `guest` profile.
    for path in ["guest-sdk", "wit", "transforms", "tests/guests", "Cargo.lock", "Cargo.toml"] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let target_dir = root.join("target").join("guests");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .arg("build")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .args(["--profile", PROFILE, "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for package in packages {
        cmd.args(["-p", package]);
    }
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    let output = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo to build guests {packages:?}: {e}"));
    if !output.status.success() {
        panic!(
            "building guest components {packages:?} failed ({}).\n\
             Is the target installed? `rustup target add {TARGET}`\n\
             --- stdout ---\n{}\n--- stderr ---\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
    let out_dir = target_dir.join(TARGET).join(PROFILE);
    packages
        .iter()
        .map(|package| {
            let wasm = out_dir.join(format!("{}.wasm", package.replace('-', "_")));
            assert!(wasm.is_file(), "cargo built {package} but {} is missing", wasm.display());
            wasm
        })
        .collect()
}

/// The `version` of the `[package]` in `manifest` (a `Cargo.toml`), read
/// without a TOML parser so build scripts need no dependencies.
pub fn package_version(manifest: &Path) -> String {
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("cannot read {}: {e}", manifest.display()));
    let mut in_package = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("version") {
            let value = rest.trim_start().strip_prefix('=').map(str::trim);
            if let Some(v) = value.and_then(|v| v.strip_prefix('"')).and_then(|v| v.split('"').next()) {
                return v.to_string();
            }
        }
    }
    panic!("no literal `version = \"...\"` in [package] of {}", manifest.display());
}

/// Copies `wasm` into `OUT_DIR` as `name` and returns the copy's path, so the
/// crate embeds a file no later nested build rewrites under it.
pub fn copy_to_out_dir(wasm: &Path, name: &str) -> PathBuf {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let dest = out_dir.join(name);
    std::fs::copy(wasm, &dest).unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", wasm.display(), dest.display()));
    dest
}
