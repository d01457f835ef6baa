//! The node-wide zxid watermark: the highest zxid W such that every core has applied all of its
//! entries with zxid <= W *and* the watch notifications of those entries are already queued on
//! their way to the connections' cores.
//!
//! Why: each core has its own log and assigns its own zxids, so a connection can receive a reply
//! from core A with zxid 150 while core B's watch event for zxid 100 is still on its way. A
//! client that then loses the connection reconnects with setWatches(lastZxidSeen = 150) and the
//! event for 100 is lost for ever. Replies therefore carry the watermark, never a zxid of one
//! core alone.
//!
//! How: after a core applies a batch it sends `Applied { core, zxid }` to every core, itself
//! included, through the same FIFO channels as its notifications; so when a core has received
//! `Applied { core: c, zxid: z }`, every notification of core c up to z has reached it too.
//! An idle core would hold the watermark back, so a core with no batch in flight raises its own
//! promise to the highest promise it heard (reserving those zxids: it assigns only higher ones
//! from then on) and announces it; values only grow, so the exchange settles after one echo.
//! This struct is the bookkeeping of one core; pure, so it is tested alone.

use engine::types::Zxid;

#[derive(Debug)]
pub struct Watermark {
    /// Per core: the highest `Applied` received from it.
    applied_through: Vec<Zxid>,
    /// What this core announced last.
    promised: Zxid,
}

impl Watermark {
    pub fn new(cores: usize) -> Watermark {
        Watermark { applied_through: vec![0; cores], promised: 0 }
    }

    /// The zxid a reply may carry now: every core's entries up to it are applied and their
    /// events received here.
    pub fn watermark(&self) -> Zxid {
        self.applied_through.iter().copied().min().unwrap_or(0)
    }

    /// An `Applied` message arrived (promises never go back: a late smaller one is ignored).
    pub fn on_applied(&mut self, from: usize, zxid: Zxid) {
        let through = &mut self.applied_through[from];
        *through = (*through).max(zxid);
    }

    /// The highest promise heard from any core (this one included).
    pub fn highest_heard(&self) -> Zxid {
        self.applied_through.iter().copied().max().unwrap_or(0).max(self.promised)
    }

    /// This core may promise `through` (everything it assigned up to there is applied and no
    /// batch is in flight): returns what to announce, if it is news.
    pub fn promise(&mut self, through: Zxid) -> Option<Zxid> {
        if through <= self.promised {
            return None;
        }
        self.promised = through;
        Some(through)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_is_the_slowest_core() {
        let mut w = Watermark::new(3);
        assert_eq!(w.watermark(), 0, "nothing heard: nothing promised");
        w.on_applied(0, 100);
        w.on_applied(1, 90);
        assert_eq!(w.watermark(), 0, "core 2 has not spoken");
        w.on_applied(2, 120);
        assert_eq!(w.watermark(), 90);
        w.on_applied(1, 80);
        assert_eq!(w.watermark(), 90, "a late, smaller promise does not take the watermark back");
        assert_eq!(w.highest_heard(), 120);
    }

    #[test]
    fn a_promise_is_announced_once_and_only_upwards() {
        let mut w = Watermark::new(2);
        assert_eq!(w.promise(50), Some(50));
        assert_eq!(w.promise(50), None, "no news, no message (the echo settles)");
        assert_eq!(w.promise(40), None);
        assert_eq!(w.promise(60), Some(60));
        assert_eq!(w.highest_heard(), 60);
    }

    /// Two cores exchanging promises as the runtime does (an idle core echoes the highest
    /// promise it heard) settle after a bounded number of messages, on the same watermark.
    #[test]
    fn idle_cores_echo_and_settle() {
        let mut cores = [Watermark::new(2), Watermark::new(2)];
        let mut queue: std::collections::VecDeque<(usize, usize, Zxid)> = Default::default();
        let announce = |queue: &mut std::collections::VecDeque<_>, from: usize, zxid: Zxid| {
            for to in 0..2 {
                queue.push_back((to, from, zxid));
            }
        };
        // Core 0 applied a batch up to 150.
        let first = cores[0].promise(150).expect("news");
        announce(&mut queue, 0, first);
        let mut messages = 0;
        while let Some((to, from, zxid)) = queue.pop_front() {
            messages += 1;
            assert!(messages < 100, "the exchange must settle");
            cores[to].on_applied(from, zxid);
            if from != to {
                let heard = cores[to].highest_heard();
                if let Some(z) = cores[to].promise(heard) {
                    announce(&mut queue, to, z);
                }
            }
        }
        assert_eq!(cores[0].watermark(), 150);
        assert_eq!(cores[1].watermark(), 150);
        assert_eq!(messages, 4);
    }
}
