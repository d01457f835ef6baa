//! A multi across groups at the connection (docs/architecture.md, "Transactions"): the
//! prepare of each group and the wait for the decision go out together, as one request of
//! the connection sent alone (`WriteTarget::Alone`: nothing else of the connection is sent
//! until it is answered); once all of them answered, the reply is built from the votes'
//! results and the decision, or the multi is tried again under a new id (Retry).

use super::slots::{Kind, Slot, WriteTarget};
use super::Conn;
use crate::jute::Response;
use crate::server::msg::{ReplyBody, ShardOp};
use engine::command::{Command, MultiOp, ShardId, TxnOutcome};
use engine::request::{MultiResult, WriteResult};
use engine::txn::TxnApplied;
use engine::ZkError;

/// Tries of one multi before its client gets OPERATIONTIMEOUT (each Retry: a path held by
/// another multi, or a vote that did not come in time).
const ATTEMPTS_MAX: u32 = 20;

/// A multi across groups in flight.
pub(in crate::server::conn) struct TxnRequest {
    pub opcodes: Vec<i32>,
    /// Each op with its shard, in the client's order.
    pub ops: Vec<(ShardId, MultiOp)>,
    pub session: engine::types::SessionId,
    pub auth: Vec<engine::types::Id>,
    /// The slot's first part of the current try.
    pub first_part: usize,
    pub attempt: u32,
}

impl Conn {
    /// The group of a shard: the core it lives on.
    fn group_of(&self, shard: ShardId) -> u16 {
        self.core_of(shard) as u16
    }

    /// The parts of one try: a prepare per group (to its home shard, its lowest), then the
    /// wait for the decision at the coordinator's (the group of the first op).
    pub(super) fn txn_parts(&self, request: &TxnRequest) -> Vec<(ShardId, ShardOp)> {
        let txn = self.core.new_txn_id();
        let prepares =
            engine::txn::prepares(txn, &request.ops, |shard| self.group_of(shard), request.session, &request.auth);
        let coordinator = prepares[0].1.coordinator;
        let mut parts: Vec<(ShardId, ShardOp)> = prepares
            .into_iter()
            .map(|(group, prepare)| (ShardId::from(group), ShardOp::Write(Command::TxnPrepare(prepare))))
            .collect();
        parts.push((ShardId::from(coordinator), ShardOp::AwaitTxn(txn)));
        parts
    }

    /// Every part of the current try answered: the reply, or the next try.
    pub(super) fn txn_step(&self, seq: u64, slot: &mut Slot) {
        let Kind::Txn(request) = &mut slot.kind else { unreachable!("called for Txn slots") };
        let parts = &slot.parts[request.first_part..];
        let (prepares, decision) = parts.split_at(parts.len() - 1);
        let outcome = match &decision[0] {
            Some(ReplyBody::Write(Ok(WriteResult::Txn(TxnApplied::Decided(outcome))))) => *outcome,
            Some(ReplyBody::Write(Err(error))) => return ready(slot, error.code(), Response::Empty),
            _ => {
                tracing::error!(conn = self.id, "a multi across groups got no decision");
                return ready(slot, ZkError::SystemError.code(), Response::Empty);
            }
        };
        let mut results: Vec<(u32, MultiResult)> = Vec::with_capacity(request.ops.len());
        for part in prepares {
            match part {
                Some(ReplyBody::Write(Ok(WriteResult::Txn(TxnApplied::Voted { results: voted, .. })))) => {
                    results.extend(voted.iter().cloned())
                }
                Some(ReplyBody::Write(Err(error))) => return ready(slot, error.code(), Response::Empty),
                _ => {
                    tracing::error!(conn = self.id, "a prepare of a multi across groups gave no vote");
                    return ready(slot, ZkError::SystemError.code(), Response::Empty);
                }
            }
        }
        let opcodes = request.opcodes.clone();
        match outcome {
            TxnOutcome::Commit => {
                self.core.count_txn(|c| c.committed += 1);
                assert_eq!(results.len(), opcodes.len(), "a committed multi has a result per op");
                results.sort_by_key(|(index, _)| *index);
                let response = Response::Multi(opcodes.into_iter().zip(results.into_iter().map(|(_, r)| r)).collect());
                ready(slot, 0, response)
            }
            TxnOutcome::Abort { index, error } => {
                self.core.count_txn(|c| c.aborted += 1);
                let error = ZkError::from_code(error).unwrap_or(ZkError::SystemError);
                let results = engine::txn::aborted_results(opcodes.len(), index as usize, error);
                ready(slot, 0, Response::Multi(opcodes.into_iter().zip(results).collect()))
            }
            TxnOutcome::Retry if request.attempt + 1 < ATTEMPTS_MAX => {
                self.core.count_txn(|c| c.retried += 1);
                request.attempt += 1;
                request.first_part = slot.parts.len();
                let parts = self.txn_parts(request);
                self.send_further_parts(seq, slot, parts, WriteTarget::Alone);
            }
            TxnOutcome::Retry => {
                self.core.count_txn(|c| c.gave_up += 1);
                tracing::warn!(conn = self.id, attempts = ATTEMPTS_MAX, "a multi across groups gave up");
                ready(slot, ZkError::OperationTimeout.code(), Response::Empty)
            }
        }
    }
}

fn ready(slot: &mut Slot, err: i32, response: Response) {
    slot.kind = Kind::Ready { err, response };
}
