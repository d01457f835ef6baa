//! The data dir: its layout (`warren.meta`, `LOCK`, `wal/`), the lock that keeps a second
//! process out, and the metadata a data dir keeps for its life. Every file and directory it
//! depends on is created durably (see `durable_file`), so a crash during the first start never
//! leaves a half-written `warren.meta` or a `wal/` entry that vanishes.

use crate::config::Config;
use crate::durable_file;
use anyhow::{bail, Context};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The data dir format: 2 since the WAL holds Raft records (`raft_log.rs`); 1 held bare
/// `LogEntry` records.
const FORMAT: u32 = 2;

/// The settings a data dir is made with; shard placement and the per-core WALs depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub shards: u16,
    pub cores: usize,
}

impl Meta {
    fn render(&self) -> String {
        format!("format = {FORMAT}\nshards = {}\ncores = {}\n", self.shards, self.cores)
    }

    fn parse(text: &str) -> Option<Meta> {
        let mut format = None;
        let mut shards = None;
        let mut cores = None;
        for line in text.lines() {
            let (key, value) = line.split_once('=')?;
            match key.trim() {
                "format" => format = value.trim().parse::<u32>().ok(),
                "shards" => shards = value.trim().parse().ok(),
                "cores" => cores = value.trim().parse().ok(),
                _ => return None,
            }
        }
        (format? == FORMAT).then_some(Meta { shards: shards?, cores: cores? })
    }
}

pub fn wal_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("wal")
}

/// Where core `core`'s Raft group keeps its snapshots (`snapshot_file.rs`).
pub fn snapshot_dir(data_dir: &Path, core: usize) -> PathBuf {
    data_dir.join("snapshots").join(format!("group-{core:03}"))
}

/// Where core `core`'s Raft group keeps its term and vote (`raft_state.rs`).
pub fn raft_state_path(data_dir: &Path, core: usize) -> PathBuf {
    data_dir.join(format!("raft-{core:03}.state"))
}

fn meta_path(data_dir: &Path) -> PathBuf {
    data_dir.join("warren.meta")
}

/// Creates the data dir, proves it writable, locks it, and checks that it was made with the
/// same number of shards and cores (writing `warren.meta` on first use).
pub fn prepare(config: &Config) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    durable_file::create_dir_all(&wal_dir(dir)).with_context(|| format!("cannot create data dir {}", dir.display()))?;
    let probe = dir.join(".write-probe");
    std::fs::write(&probe, b"ok").with_context(|| format!("data dir {} is not writable", dir.display()))?;
    std::fs::remove_file(&probe).ok();
    lock(dir)?;
    let meta = Meta { shards: config.shards, cores: config.cores };
    match read_meta(dir)? {
        Some(existing) if existing != meta => bail!(
            "data dir {} was created with different settings:\n{}but this run has:\n{}start with the same --shards and --cores",
            dir.display(),
            existing.render(),
            meta.render()
        ),
        Some(_) => Ok(()),
        None => {
            refuse_wal_without_meta(dir)?;
            durable_file::write_atomic(&meta_path(dir), meta.render().as_bytes()).context("cannot write warren.meta")
        }
    }
}

/// The recorded settings, or None for a data dir never started.
pub fn read_meta(dir: &Path) -> anyhow::Result<Option<Meta>> {
    let path = meta_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("cannot read {}", path.display())),
    };
    match Meta::parse(&text) {
        Some(meta) => Ok(Some(meta)),
        None if text.lines().next().is_some_and(|line| line.replace(' ', "") == "format=1") => bail!(
            "{} was made by an older warren (data dir format 1, a WAL without Raft records); this warren \
             reads format {FORMAT}: export the data with the old version and load it into a new data dir",
            path.display()
        ),
        None => bail!("{} is damaged (expected format, shards and cores), it holds:\n{text}", path.display()),
    }
}

/// WAL segments without `warren.meta` mean the file was lost: starting with guessed settings
/// could place shards on the wrong cores' logs.
fn refuse_wal_without_meta(dir: &Path) -> anyhow::Result<()> {
    let wal = wal_dir(dir);
    let entries = std::fs::read_dir(&wal).with_context(|| format!("cannot list {}", wal.display()))?;
    for entry in entries {
        let name = entry.with_context(|| format!("cannot list {}", wal.display()))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("wal-") && name.ends_with(".log") {
            bail!(
                "data dir {} has WAL segments ({name}) but no warren.meta; restore warren.meta \
                 (format = {FORMAT}, shards = N, cores = N as the data dir was created with)",
                dir.display()
            );
        }
    }
    Ok(())
}

/// Takes the data dir's lock for the life of the process (flock on `LOCK`; the kernel drops it
/// when the process dies, however it dies).
pub fn lock(dir: &Path) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .with_context(|| format!("cannot open {}", dir.join("LOCK").display()))?;
    // SAFETY: flock on a file descriptor we own; the file is leaked so the lock lives as long as the process.
    let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if locked != 0 {
        bail!("data dir {} is in use by another warren process", dir.display());
    }
    std::mem::forget(file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_roundtrips_and_rejects_garbage() {
        let meta = Meta { shards: 16, cores: 3 };
        assert_eq!(Meta::parse(&meta.render()), Some(meta));
        assert_eq!(Meta::parse(""), None);
        assert_eq!(Meta::parse("format = 1\nshards = 16\n"), None, "a cut-off file is damaged");
        assert_eq!(Meta::parse("format = 3\nshards = 16\ncores = 3\n"), None);
        assert_eq!(Meta::parse("format = 2\nshards = x\ncores = 3\n"), None);
    }

    #[test]
    fn first_start_writes_meta_and_a_lost_meta_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_meta(dir.path()).unwrap(), None);
        durable_file::create_dir_all(&wal_dir(dir.path())).unwrap();
        refuse_wal_without_meta(dir.path()).expect("an empty wal dir is a new data dir");
        std::fs::write(wal_dir(dir.path()).join("wal-000-00000000000000000001.log"), b"").unwrap();
        let err = refuse_wal_without_meta(dir.path()).unwrap_err().to_string();
        assert!(err.contains("no warren.meta"), "{err}");
        std::fs::write(meta_path(dir.path()), "format = 2\nshards = 8\n").unwrap();
        let err = read_meta(dir.path()).unwrap_err().to_string();
        assert!(err.contains("damaged"), "{err}");
        std::fs::write(meta_path(dir.path()), "format = 1\nshards = 8\ncores = 1\n").unwrap();
        let err = read_meta(dir.path()).unwrap_err().to_string();
        assert!(err.contains("older warren"), "{err}");
    }
}
