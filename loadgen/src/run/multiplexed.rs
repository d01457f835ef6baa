//! The closed loop over many sessions per thread: each thread owns a share of the sessions and
//! waits for replies on all of them with one epoll set, so a reply costs the client a share of
//! one wake-up instead of a wake-up (and a context switch) of its own. With one blocking thread
//! per session, loadgen ran out of CPU before the server did at 64 and 256 sessions when pinned
//! to one core, and measured itself instead of the server.

use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::{OpGen, Plan, Recorder, Stats};
use crate::epoll::Epoll;
use crate::intervals::IntervalLog;
use crate::session::{Session, IO_TIMEOUT};

/// Readiness events taken per epoll_wait.
const EVENTS_MAX: usize = 256;

/// Runs the closed loop on `sessions`, whose ids (which pick their op streams) start at
/// `first_id`, until the plan's ops or deadline are spent and every reply is in. Thread
/// `thread` records every reply of its sessions in one recorder (its row of the interval log).
pub fn run(
    (thread, first_id): (usize, usize),
    sessions: &mut [Session],
    plan: &Plan<'_>,
    deadline: Option<Instant>,
    log: &IntervalLog,
) -> Result<Stats> {
    let epoll = Epoll::new()?;
    for (i, s) in sessions.iter().enumerate() {
        epoll.ctl(libc::EPOLL_CTL_ADD, s.fd(), libc::EPOLLIN as u32, i as u64)?;
    }
    let mut gens: Vec<OpGen> = (0..sessions.len()).map(|i| OpGen::new(first_id + i, plan)).collect();
    let mut rec = Recorder::new(thread, &plan.completed, log);
    let notifications_before: Vec<u64> = sessions.iter().map(|s| s.notifications).collect();
    for (i, s) in sessions.iter_mut().enumerate() {
        refill(s, &mut gens[i], plan, deadline)?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_MAX.min(sessions.len())];
    while sessions.iter().any(|s| s.outstanding() > 0) {
        let Some(ready) = epoll.wait(&mut events, Some(IO_TIMEOUT))? else { continue };
        if ready.is_empty() {
            bail!("no reply on any of {} sessions within {IO_TIMEOUT:?}", sessions.len());
        }
        for ev in ready {
            let i = ev.u64 as usize;
            let s = &mut sessions[i];
            s.fill_nonblocking().with_context(|| format!("session {}", first_id + i))?;
            // Every reply already read before refilling: one write per batch of replies.
            while let Some(c) = s.recv_buffered().with_context(|| format!("session {}", first_id + i))? {
                rec.record(&c)?;
            }
            refill(s, &mut gens[i], plan, deadline)?;
        }
    }
    let mut stats = rec.finish()?;
    stats.notifications = sessions.iter().zip(&notifications_before).map(|(s, before)| s.notifications - before).sum();
    Ok(stats)
}

/// Tops `s` up to the plan's pipeline depth with ops claimed from the shared budget, and sends
/// them in one write.
fn refill(s: &mut Session, gen: &mut OpGen, plan: &Plan<'_>, deadline: Option<Instant>) -> Result<()> {
    while s.outstanding() < plan.pipeline && plan.claim(deadline) {
        let (req, tag) = gen.next();
        s.queue(&req, tag);
    }
    s.flush()
}
