//! Watch events of a connection: where an event from a shard is placed among the queued
//! replies (right after the last reply that shard answered, see the module doc of `conn`),
//! encoding it into the output, and the de-duplication of events of "/" (which lives in every
//! shard).

use super::Conn;
use crate::jute;
use engine::command::ShardId;
use engine::types::{keeper_state, EventType, Zxid};

pub(super) struct PendingEvent {
    shard: ShardId,
    event: EventType,
    path: String,
    pub(super) zxid: Zxid,
}

impl Conn {
    /// A watch fired in `shard`.
    pub fn on_notification(&self, shard: ShardId, event: EventType, path: &str, zxid: Zxid) {
        let event = PendingEvent { shard, event, path: path.to_string(), zxid };
        let after_seq = self.last_reply_seq.borrow().get(shard as usize).copied().flatten();
        if let Some(seq) = after_seq.filter(|seq| *seq >= self.base_seq.get()) {
            let index = (seq - self.base_seq.get()) as usize;
            if let Some(slot) = self.slots.borrow_mut().get_mut(index) {
                slot.events_after.push(event);
                self.held_events.set(self.held_events.get() + 1);
                return;
            }
        }
        self.emit_event(event);
        let _ = self.writer_wake.try_send(());
    }

    pub(super) fn emit_event(&self, e: PendingEvent) {
        if self.closing.get().is_some() || (e.path == "/" && !self.accept_root_event(e.shard, e.event)) {
            return;
        }
        jute::encode_notification(
            &mut self.out.borrow_mut(),
            e.zxid,
            e.event as i32,
            keeper_state::SYNC_CONNECTED,
            &e.path,
        );
        self.check_output_bound();
    }

    fn accept_root_event(&self, shard: ShardId, event: EventType) -> bool {
        match event {
            // The data of "/" lives in shard 0 (its data watches are registered there alone).
            EventType::NodeDataChanged => shard == 0,
            EventType::NodeChildrenChanged => {
                if self.root_persistent_watch.get() {
                    return true;
                }
                self.root_child_watch_armed.replace(false)
            }
            _ => true,
        }
    }
}
