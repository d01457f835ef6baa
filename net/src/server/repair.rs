//! `warren wal-repair`: the explicit way out when a node refuses to start because a WAL is
//! damaged before its end. It cuts each damaged log at its first bad batch, discarding that
//! batch and everything after it (acknowledged writes included), and says what it discarded.
//! Never part of a normal start: an operator runs it after reading the refusal.

use super::data_dir;
use super::IO_MEMORY_BYTES;
use crate::config::Config;
use crate::wal::{Recovered, Wal, WalConfig};
use anyhow::{anyhow, Context};
use glommio::{LocalExecutorBuilder, Placement};

/// Repairs every core's WAL in `config.data_dir`; returns one line per core saying what was
/// kept and what was discarded. Refuses while a server holds the data dir.
pub fn repair_wal(config: &Config) -> anyhow::Result<Vec<String>> {
    let dir = &config.data_dir;
    let meta = data_dir::read_meta(dir)?
        .ok_or_else(|| anyhow!("{} is not a warren data dir (no warren.meta)", dir.display()))?;
    data_dir::lock(dir)?;
    let mut report = Vec::with_capacity(meta.cores);
    for core in 0..meta.cores {
        let wal_config = WalConfig {
            dir: data_dir::wal_dir(dir),
            core,
            segment_bytes: config.wal_segment_bytes,
            truncate_corrupt: true,
            keep_whole: None,
        };
        let recovered = open_and_close(wal_config).with_context(|| format!("core {core}"))?;
        report.push(describe(core, &recovered));
    }
    Ok(report)
}

/// Opens one core's WAL (which is where the cut happens) on an executor of its own, as the
/// server does: the WAL uses glommio's DMA files.
fn open_and_close(wal_config: WalConfig) -> anyhow::Result<Recovered> {
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("warren-wal-repair")
        .io_memory(IO_MEMORY_BYTES)
        .spawn(move || async move {
            let (wal, recovered) = Wal::open(wal_config).await?;
            wal.close().await?;
            Ok::<_, crate::wal::WalError>(recovered)
        })
        .map_err(|e| anyhow!("cannot start an executor: {e}"))?;
    let opened = handle.join().map_err(|e| anyhow!("the executor failed: {e}"))?;
    Ok(opened?)
}

fn describe(core: usize, recovered: &Recovered) -> String {
    let kept =
        format!("{} records kept, up to lsn {}", recovered.records.len(), recovered.lsns.last().copied().unwrap_or(0));
    match &recovered.damage {
        None => format!("core {core}: log intact, {kept}"),
        Some(damage) if damage.is_torn_tail() => format!("core {core}: cut a torn last write ({damage}); {kept}"),
        Some(damage) => format!(
            "core {core}: DISCARDED the damaged batch and everything after it ({damage}); {} bytes dropped; {kept}",
            recovered.truncated_bytes
        ),
    }
}
