//! The runtime's half of multis across groups: each core runs its group's `TxnDriver` (the
//! decisions, `txn_driver.rs`) and carries out what it decides: messages to the other cores of
//! this node, entries proposed in the core's group, answers to connections waiting for a
//! decision, and reads parked behind held paths served again.

use super::core::{Core, ShardSlot};
use super::msg::{Msg, ReplyBody, ShardOp, ShardRequest, TxnCounts};
use super::txn_driver::{TxnDriver, TxnEffect, RESEND_EVERY, TXN_TIMES};
use engine::command::{LogEntry, ShardId, TxnId, TxnOutcome};
use engine::request::WriteResult;
use engine::txn::{TxnApplied, TxnTable};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

pub struct TxnRuntime {
    driver: RefCell<TxnDriver<ShardRequest>>,
    /// For mntr.
    pub counts: Cell<TxnCounts>,
}

impl TxnRuntime {
    pub fn new(core: usize) -> TxnRuntime {
        let group = u16::try_from(core).expect("cores fit a u16");
        TxnRuntime { driver: RefCell::new(TxnDriver::new(group, TXN_TIMES)), counts: Cell::new(TxnCounts::default()) }
    }
}

impl Core {
    /// The lowest shard of this core's group: it keeps the group's table of multis.
    fn home_shard(&self) -> ShardId {
        self.id as ShardId
    }

    /// Runs `decide` with the group's table of multis (the shards borrowed for it alone),
    /// then carries out its effects.
    fn with_txn_table(
        &self,
        decide: impl FnOnce(&mut TxnDriver<ShardRequest>, &TxnTable, &mut Vec<TxnEffect<ShardRequest>>),
    ) {
        let mut effects = Vec::new();
        {
            let shards = self.shards.borrow();
            let home = &shards.get(&self.home_shard()).expect("a core has its home shard").shard;
            decide(&mut self.txns.driver.borrow_mut(), home.txns(), &mut effects);
        }
        self.carry_out(effects);
    }

    fn carry_out(&self, effects: Vec<TxnEffect<ShardRequest>>) {
        for effect in effects {
            match effect {
                TxnEffect::Send { to, message } => self.send(usize::from(to), Msg::Txn(message)),
                TxnEffect::Answer { request, outcome } => self.reply(&request, decided(outcome)),
                TxnEffect::Propose { command, after_other_groups: true } => {
                    self.propose_internal_after_other_groups(self.home_shard(), command)
                }
                TxnEffect::Propose { command, after_other_groups: false } => {
                    self.propose_internal(self.home_shard(), command)
                }
                // The shards may be borrowed (an entry is being applied): served from the queue.
                TxnEffect::Released { txn } => self.send(self.id, Msg::TxnReleased { txn }),
            }
        }
    }

    /// After a transaction entry applied here (the shards are borrowed: only messages).
    pub(super) fn on_txn_applied(&self, entry: &LogEntry, applied: &TxnApplied) {
        let mut effects = Vec::new();
        self.txns.driver.borrow_mut().on_applied(entry, applied, &mut effects);
        self.carry_out(effects);
    }

    pub(super) fn on_txn_msg(self: &Rc<Self>, msg: Msg) {
        match msg {
            Msg::Txn(message) => {
                let (lead, now) = (self.commit.leadership(), Instant::now());
                self.with_txn_table(|driver, table, out| driver.on_message(message, table, &lead, now, out));
            }
            Msg::TxnReleased { txn } => {
                let parked = self.txns.driver.borrow_mut().take_parked(txn);
                for request in parked {
                    self.handle(Msg::Shard(request));
                }
            }
            _ => unreachable!("not a transaction message"),
        }
    }

    /// A connection waits for the decision on a multi this core coordinates.
    pub(super) fn await_txn(&self, request: ShardRequest, txn: TxnId) {
        self.with_txn_table(|driver, table, out| driver.await_decision(txn, request, table, out));
    }

    /// The multi holding the path a read names, if one does: the read waits for its finish.
    pub(super) fn read_held_by(&self, slot: &ShardSlot, request: &ShardRequest) -> Option<TxnId> {
        let (ShardOp::Read(op) | ShardOp::GatheredRead { op, .. }) = &request.op else { return None };
        slot.shard.holder_of(op.path())
    }

    pub(super) fn park(&self, txn: TxnId, request: ShardRequest) {
        self.count_txn(|c| c.reads_waited += 1);
        self.txns.driver.borrow_mut().park(txn, request);
    }

    /// Counts for mntr.
    pub(super) fn count_txn(&self, count: impl FnOnce(&mut TxnCounts)) {
        let mut counts = self.txns.counts.get();
        count(&mut counts);
        self.txns.counts.set(counts);
    }

    /// `TxnDriver::resend` on a timer.
    pub async fn txn_loop(self: Rc<Self>) {
        loop {
            glommio::timer::sleep(RESEND_EVERY).await;
            let (lead, now) = (self.commit.leadership(), Instant::now());
            self.with_txn_table(|driver, table, out| driver.resend(table, &lead, now, out));
        }
    }
}

fn decided(outcome: TxnOutcome) -> ReplyBody {
    ReplyBody::Write(Ok(WriteResult::Txn(TxnApplied::Decided(outcome))))
}
