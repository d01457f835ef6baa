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

/// Bytes freed per step by `remove_gradually`, and the pause after each step.
const REMOVE_STEP_BYTES: u64 = 4 << 20;
const REMOVE_STEP_PAUSE: std::time::Duration = std::time::Duration::from_millis(1);

/// Removes `paths` (files of `dir`), freeing their blocks a few MiB at a time. Freeing a large
/// file at once holds the filesystem's journal long enough to stall other files' fdatasyncs:
/// unlinking a 213 MB snapshot and a few WAL segments after each snapshot held the WAL's
/// fsyncs, and so every write, 40-55 ms on ext4 here. Each file is first renamed to its
/// `temp_path` (and the directory synced), so a crash midway leaves only a temp name, which
/// start-up removes (`snapshot_file::remove_partial`, the WAL's stray temp segments), never a
/// short file under a real name. Blocking: run it on the blocking pool.
pub fn remove_gradually(dir: &Path, paths: &[PathBuf]) -> std::io::Result<()> {
    if paths.is_empty() {
        return Ok(());
    }
    let mut doomed = Vec::with_capacity(paths.len());
    for path in paths {
        let temp = temp_path(path);
        std::fs::rename(path, &temp)?;
        doomed.push(temp);
    }
    sync_dir(dir)?;
    for path in &doomed {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        let mut length = file.metadata()?.len();
        while length > REMOVE_STEP_BYTES {
            length -= REMOVE_STEP_BYTES;
            file.set_len(length)?;
            std::thread::sleep(REMOVE_STEP_PAUSE);
        }
        drop(file);
        std::fs::remove_file(path)?;
    }
    // The removals need not be durable: a temp name left by a crash is removed at start-up.
    Ok(())
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
    fn remove_gradually_leaves_neither_the_files_nor_their_temp_names() {
        let dir = tempfile::tempdir().unwrap();
        let (big, small, kept) = (dir.path().join("big"), dir.path().join("small"), dir.path().join("kept"));
        std::fs::write(&big, vec![7u8; (REMOVE_STEP_BYTES * 2 + 5) as usize]).unwrap();
        std::fs::write(&small, b"x").unwrap();
        std::fs::write(&kept, b"y").unwrap();
        remove_gradually(dir.path(), &[big, small]).unwrap();
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("kept")]);
        assert!(remove_gradually(dir.path(), &[dir.path().join("absent")]).is_err(), "a missing file is an error");
    }

    #[test]
    fn bare_relative_names_sync_the_current_dir() {
        assert_eq!(parent_of(Path::new("warren.meta")), Path::new("."));
        assert_eq!(temp_path(Path::new("d/warren.meta")), Path::new("d/warren.meta.tmp"));
    }
}
