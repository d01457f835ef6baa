// The git commit a binary is built from, shared by net/build.rs and loadgen/build.rs through
// `include!` so both embed the same value the same way. Sets WARREN_GIT_COMMIT to e.g.
// `3f2a9c1d0e4b`, `3f2a9c1d0e4b-dirty` (tracked files changed), or `unknown` when git or the
// repository is unavailable (a tarball build must still compile).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Emits `cargo:rustc-env=WARREN_GIT_COMMIT=...` and the rerun-if-changed lines that keep it
/// current. `manifest_dir` is the crate's directory, one level below the workspace root.
fn emit_git_commit(manifest_dir: &Path) {
    let root = manifest_dir.parent().expect("a workspace member sits below the workspace root");
    println!("cargo:rustc-env=WARREN_GIT_COMMIT={}", git_commit(root));
    // Sources of every crate either binary embeds: an edit can make the tree dirty.
    for dir in ["engine/src", "net/src", "loadgen/src", "Cargo.lock"] {
        rerun_if_exists(&root.join(dir));
    }
    // In a worktree `.git` is a file pointing elsewhere: ask git for the real paths. HEAD moves
    // on checkout, the branch ref on commit, the index on add; a missing path would make cargo
    // rerun the script on every build, so only existing ones are named.
    let mut watched = vec!["HEAD".to_string(), "index".to_string(), "packed-refs".to_string()];
    if let Some(branch) = git(root, &["rev-parse", "--symbolic-full-name", "HEAD"]).filter(|b| b.starts_with("refs/")) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(root, &["rev-parse", "--git-path", &name]) {
            rerun_if_exists(&root.join(path));
        }
    }
}

fn git_commit(root: &Path) -> String {
    let Some(commit) = git(root, &["rev-parse", "--short=12", "HEAD"]) else {
        return "unknown".to_string();
    };
    match git(root, &["status", "--porcelain", "--untracked-files=no"]) {
        Some(changes) if changes.is_empty() => commit,
        Some(_) => format!("{commit}-dirty"),
        None => format!("{commit}-unknown-state"),
    }
}

/// The trimmed stdout of a successful `git <args>` in `root`, else None.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).current_dir(root).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn rerun_if_exists(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
}
