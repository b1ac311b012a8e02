//! Records the commit the binary is built from, for `pii-vault --version`.
//!
//! Reads the local git checkout only (no network); outside a checkout, or
//! without git, the commit is "unknown".

use std::path::{Path, PathBuf};
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PII_VAULT_BUILD_COMMIT={commit}");
    // Rebuild when HEAD moves: the HEAD file, the branch it names, packed refs.
    let dir = |arg: &str| git(&["rev-parse", arg]).map(PathBuf::from);
    if let Some(git_dir) = dir("--git-dir") {
        println!("cargo:rerun-if-changed={}", git_dir.join("HEAD").display());
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = dir("--git-common-dir").unwrap_or(git_dir);
            for path in [common.join(&reference), common.join("packed-refs")] {
                if Path::new(&path).exists() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
