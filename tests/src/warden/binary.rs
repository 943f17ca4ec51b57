//! Finding the `warden` binary the tests drive.
//!
//! A test crate cannot depend on another package's binary target, so the binary is built first
//! (`cargo build -p warden-proxy`) and found here: `WARDEN_BIN` if set; otherwise `warden` in the
//! same profile directory as the running test executable (`target/debug/deps/x-HASH` →
//! `target/debug/warden`), which also honours `CARGO_TARGET_DIR`; otherwise
//! `$CARGO_TARGET_DIR/debug/warden` or the workspace's `target/debug/warden`. A binary older than
//! any source file it was built from (cargo's dep-info file lists them) is refused: testing a
//! stale proxy wastes everyone's time.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::SystemTime;

use anyhow::{Result, anyhow, bail};

const BUILD_HINT: &str = "run `cargo build -p warden-proxy` first (the README's test command does: \
                          `cargo build -p warden-proxy && cargo test --workspace`), or set WARDEN_BIN";

/// The path of the warden binary, checked once per test process.
pub fn warden_binary() -> Result<PathBuf> {
    static FOUND: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| locate().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow!(e))
}

fn locate() -> Result<PathBuf> {
    if let Some(explicit) = std::env::var_os("WARDEN_BIN") {
        let path = PathBuf::from(explicit);
        if !path.is_file() {
            bail!("WARDEN_BIN={} does not exist", path.display());
        }
        return Ok(path);
    }
    let candidates = candidates();
    let Some(binary) = candidates.iter().find(|p| p.is_file()) else {
        bail!(
            "the warden binary was not found (looked at {}): {BUILD_HINT}",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    check_fresh(binary)?;
    Ok(binary.clone())
}

fn candidates() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/deps/<test>-<hash>
        if let Some(profile_dir) = exe.parent().and_then(Path::parent) {
            out.push(profile_dir.join("warden"));
        }
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        out.push(PathBuf::from(dir).join("debug").join("warden"));
    }
    out.push(workspace_root().join("target").join("debug").join("warden"));
    out.dedup();
    out
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Fails if a source file the binary was built from is newer than the binary.
fn check_fresh(binary: &Path) -> Result<()> {
    let built = modified(binary).ok_or_else(|| anyhow!("cannot stat {}", binary.display()))?;
    let sources = match std::fs::read_to_string(binary.with_extension("d")) {
        Ok(dep_info) => dep_info_sources(&dep_info),
        Err(_) => fallback_sources(),
    };
    let mut newer: Vec<PathBuf> = sources
        .into_iter()
        .filter(|p| modified(p).is_some_and(|m| m > built))
        .collect();
    if !newer.is_empty() {
        newer.truncate(5);
        bail!(
            "the warden binary {} is older than its sources ({}...): {BUILD_HINT}",
            binary.display(),
            newer
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The prerequisites listed in a Makefile-style dep-info file (`target: a.rs b.rs`).
fn dep_info_sources(dep_info: &str) -> Vec<PathBuf> {
    let mut sources = Vec::new();
    for line in dep_info.lines() {
        let Some((_, deps)) = split_rule(line) else {
            continue;
        };
        let mut current = String::new();
        let mut chars = deps.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let Some(next) = chars.next() {
                        current.push(next);
                    }
                }
                ' ' => {
                    if !current.is_empty() {
                        sources.push(PathBuf::from(std::mem::take(&mut current)));
                    }
                }
                _ => current.push(c),
            }
        }
        if !current.is_empty() {
            sources.push(PathBuf::from(current));
        }
    }
    sources
}

/// Splits `target: deps` at the first colon that is not escaped (`\:`).
fn split_rule(line: &str) -> Option<(&str, &str)> {
    let bytes = line.as_bytes();
    (0..bytes.len())
        .find(|&i| bytes[i] == b':' && (i == 0 || bytes[i - 1] != b'\\'))
        .map(|i| (&line[..i], &line[i + 1..]))
}

/// Without dep-info: every file under the `src` directories of the crates the binary uses.
fn fallback_sources() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut out = Vec::new();
    for krate in ["proxy", "audit", "crypto", "analysis", "policy", "masking"] {
        collect_files(&root.join(krate).join("src"), &mut out);
    }
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dep_info_lists_every_prerequisite() {
        let text = "/t/debug/warden: /w/proxy/src/main.rs /w/a\\ b.rs\n\n/w/proxy/src/main.rs:\n";
        assert_eq!(
            dep_info_sources(text),
            vec![
                PathBuf::from("/w/proxy/src/main.rs"),
                PathBuf::from("/w/a b.rs")
            ]
        );
    }
}
