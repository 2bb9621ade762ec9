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
//!
//! The `wasm32-wasip2` standard library must be in the toolchain. rustup
//! adds `rust-toolchain.toml`'s targets only when it installs a toolchain,
//! not to one already installed, so a new clone on a machine with stable
//! would fail with "can't find crate for `core`": [`ensure_target`] adds
//! it with rustup first, or says what to install when there is no rustup.

#![allow(dead_code)] // Each build script uses a different subset.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
    ensure_target(&target_dir);
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

/// Makes sure the toolchain cargo builds with has [`TARGET`]'s standard
/// library, adding it with `rustup target add` (and a `cargo:warning`
/// saying so) when it is missing. Panics, saying what to install, when it
/// is missing and rustup is not there or cannot add it.
///
/// `host/build.rs` and `tests/build.rs` may get here at the same time, and
/// rustup does not cope with two installs of one component at once, so
/// the check and the add run under a lock on `target_dir/.rustup-target.lock`.
/// It is an OS file lock (`File::lock`), released when its holder exits,
/// even killed, so it never goes stale; whoever waited re-checks and finds
/// the target there.
pub fn ensure_target(target_dir: &Path) {
    let sysroot = sysroot();
    if has_target(&sysroot) {
        return;
    }
    std::fs::create_dir_all(target_dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", target_dir.display()));
    let lock_path = target_dir.join(".rustup-target.lock");
    let lock = File::create(&lock_path).unwrap_or_else(|e| panic!("cannot create {}: {e}", lock_path.display()));
    lock.lock().unwrap_or_else(|e| panic!("cannot lock {}: {e}", lock_path.display()));
    if has_target(&sysroot) {
        return; // Another build script added it while we waited.
    }
    let rustup_found =
        Command::new("rustup").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !rustup_found {
        panic!(
            "the {TARGET} standard library is not installed (there is no lib/rustlib/{TARGET} in {}), \
             and rustup is not on PATH to add it. Install rustup (https://rustup.rs; the next build then \
             adds the target by itself), or use a Rust toolchain whose sysroot ships the {TARGET} \
             standard library.",
            sysroot.display()
        );
    }
    // rustup's proxies name the toolchain they run; without one, rustup's
    // layout names it: the sysroot is `$RUSTUP_HOME/toolchains/<toolchain>`.
    let toolchain = std::env::var("RUSTUP_TOOLCHAIN")
        .ok()
        .filter(|t| !t.is_empty())
        .or_else(|| sysroot.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| panic!("cannot tell which rustup toolchain {} is", sysroot.display()));
    let output = Command::new("rustup")
        .args(["target", "add", TARGET, "--toolchain", &toolchain])
        .output()
        .unwrap_or_else(|e| panic!("cannot run rustup: {e}"));
    if !output.status.success() || !has_target(&sysroot) {
        panic!(
            "the {TARGET} standard library is not installed in {}, and `rustup target add {TARGET} \
             --toolchain {toolchain}` did not add it ({}). Add it by hand, or use a toolchain that ships it.\n\
             --- stderr ---\n{}",
            sysroot.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr),
        );
    }
    println!(
        "cargo:warning=added the {TARGET} target to toolchain {toolchain} (`rustup target add {TARGET} \
         --toolchain {toolchain}`): guest components are built for it, and rustup does not add \
         rust-toolchain.toml's targets to a toolchain that is already installed"
    );
}

/// The sysroot of the rustc cargo builds with (`RUSTC`, set by cargo for
/// build scripts; through rustup's proxy it resolves to the toolchain in
/// `RUSTUP_TOOLCHAIN`, as cargo's own calls do).
fn sysroot() -> PathBuf {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --print sysroot: {e}", rustc.to_string_lossy()));
    assert!(output.status.success(), "{} --print sysroot failed: {}", rustc.to_string_lossy(), output.status);
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// Whether `sysroot` has [`TARGET`]'s standard library: its `core`, not
/// just the directory (which a removal may leave behind).
fn has_target(sysroot: &Path) -> bool {
    let lib = sysroot.join("lib").join("rustlib").join(TARGET).join("lib");
    std::fs::read_dir(lib).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("libcore-") && n.ends_with(".rlib")))
    })
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
