//! Crash-safe creation of the files and directories a data dir depends on: a file is either
//! absent or complete with its new contents after a crash (temp file, fsync, rename, fsync of
//! the directory), and a created directory's entry is durable before anything is put in it.
//! Blocking std IO: used at start-up and by the offline tools, never on an executor's hot path.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the temporary file `write_atomic` writes before renaming it over `path`.
pub fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file path has a name").to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces (or creates) `path` with `bytes` atomically and durably: after a crash at any
/// point the file holds either its old contents (or does not exist) or exactly `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = temp_path(path);
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    // The data must be on disk before the name points at it, or a crash right after the
    // rename could leave the new name on an empty or partial file (ext4 delalloc, xfs).
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)?;
    sync_dir(parent_of(path))
}

/// Creates `dir` and any missing parents, making each new directory entry durable (fsync of
/// the parent after each mkdir). An existing directory is left alone.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir_all(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => sync_dir(parent_of(dir)),
        // Another process made it meanwhile: its entry is its business, ours exists.
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(err) => Err(err),
    }
}

/// fsync of a directory: makes the creations, renames and removals of its entries durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory holding `path` ("." for a bare relative name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_creates_then_replaces_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warren.meta");
        write_atomic(&path, b"first\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"first\n");
        write_atomic(&path, b"second, longer\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second, longer\n");
        assert!(!temp_path(&path).exists(), "the temp file is renamed away");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("warren.meta")]);
    }

    #[test]
    fn a_leftover_temp_file_of_a_crashed_write_does_not_matter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("warren.meta");
        write_atomic(&path, b"good\n").unwrap();
        // A crash after writing part of the temp file: the real file is untouched...
        std::fs::write(temp_path(&path), b"par").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"good\n");
        // ...and the next write replaces the leftover.
        write_atomic(&path, b"better\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"better\n");
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn create_dir_all_makes_nested_dirs_and_accepts_existing_ones() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b/wal");
        create_dir_all(&nested).unwrap();
        assert!(nested.is_dir());
        create_dir_all(&nested).unwrap();
        let file = dir.path().join("a/file");
        std::fs::write(&file, b"x").unwrap();
        assert!(create_dir_all(&file.join("sub")).is_err(), "a file in the way is an error");
    }

    #[test]
    fn bare_relative_names_sync_the_current_dir() {
        assert_eq!(parent_of(Path::new("warren.meta")), Path::new("."));
        assert_eq!(temp_path(Path::new("d/warren.meta")), Path::new("d/warren.meta.tmp"));
    }
}
