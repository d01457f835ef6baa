//! Test helpers: a shard with its own zxid/clock counters and short constructors for commands.

use crate::command::{Command, CreateOp, DeleteOp, LogEntry, MultiOp, SetDataOp};
use crate::error::ZkError;
use crate::request::{Caller, ReadOp, ReadResult, WriteResult};
use crate::shard::{Applied, Shard};
use crate::types::{Acl, ConnId, CreateMode, Id, Notification, SessionId, Stat};

/// A one-shard world ("/zookeeper" included) whose entries get zxid 1, 2, ... and time
/// 1000, 1010, ...
pub struct Harness {
    pub shard: Shard,
    pub next_zxid: i64,
    pub time_ms: i64,
}

impl Harness {
    pub fn new() -> Harness {
        Harness { shard: Shard::new(0, 1), next_zxid: 1, time_ms: 1000 }
    }

    pub fn entry(&mut self, command: Command) -> LogEntry {
        let entry = LogEntry { shard: 0, zxid: self.next_zxid, time_ms: self.time_ms, command };
        self.next_zxid += 1;
        self.time_ms += 10;
        entry
    }

    pub fn apply(&mut self, command: Command) -> Applied {
        let entry = self.entry(command);
        self.shard.apply(&entry)
    }

    pub fn create(&mut self, path: &str, data: &[u8]) -> Result<WriteResult, ZkError> {
        self.apply(Command::Create(create_op(path, data, CreateMode::Persistent))).result
    }

    pub fn create_mode(&mut self, path: &str, mode: CreateMode) -> Applied {
        self.apply(Command::Create(create_op(path, b"", mode)))
    }

    pub fn delete(&mut self, path: &str, version: i32) -> Applied {
        self.apply(Command::Delete(DeleteOp { path: path.into(), version, auth: vec![] }))
    }

    pub fn set_data(&mut self, path: &str, data: &[u8], version: i32) -> Applied {
        self.apply(Command::SetData(SetDataOp { path: path.into(), data: Some(data.to_vec()), version, auth: vec![] }))
    }

    pub fn open_session(&mut self, session: SessionId) {
        self.apply(Command::CreateSession { session, timeout_ms: 30_000, passwd: vec![0; 16] });
    }

    pub fn read(&mut self, conn: ConnId, op: ReadOp) -> (Result<ReadResult, ZkError>, Vec<Notification>) {
        self.read_as(conn, &[], op)
    }

    pub fn read_as(
        &mut self,
        conn: ConnId,
        auth: &[Id],
        op: ReadOp,
    ) -> (Result<ReadResult, ZkError>, Vec<Notification>) {
        self.shard.read(Caller { session: 0, conn, auth }, &op)
    }

    pub fn stat(&mut self, path: &str) -> Option<Stat> {
        self.shard.node(path).map(|node| node.stat())
    }

    pub fn children(&mut self, path: &str) -> Vec<String> {
        self.shard
            .node(path)
            .map(|node| node.children.iter().map(|name| name.to_string()).collect())
            .unwrap_or_default()
    }

    /// Registers a one-shot data watch (getData) of `conn` on `path`.
    pub fn watch_data(&mut self, conn: ConnId, path: &str) {
        let (result, _) = self.read(conn, ReadOp::Exists { path: path.into(), watch: true });
        assert!(matches!(result, Ok(_) | Err(ZkError::NoNode)));
    }

    pub fn watch_children(&mut self, conn: ConnId, path: &str) {
        let (result, _) = self.read(conn, ReadOp::GetChildren { path: path.into(), watch: true });
        result.expect("getChildren");
    }
}

pub fn create_op(path: &str, data: &[u8], mode: CreateMode) -> CreateOp {
    CreateOp {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open_unsafe(),
        mode,
        ttl_ms: 0,
        session: 0,
        auth: vec![],
    }
}

pub fn multi(ops: Vec<MultiOp>) -> Command {
    Command::Multi { ops, session: 0, auth: vec![] }
}

pub fn m_create(path: &str) -> MultiOp {
    MultiOp::Create(create_op(path, b"", CreateMode::Persistent))
}

pub fn m_delete(path: &str, version: i32) -> MultiOp {
    MultiOp::Delete(DeleteOp { path: path.into(), version, auth: vec![] })
}

pub fn m_set(path: &str, data: &[u8], version: i32) -> MultiOp {
    MultiOp::SetData(SetDataOp { path: path.into(), data: Some(data.to_vec()), version, auth: vec![] })
}

pub fn created_path(result: &Result<WriteResult, ZkError>) -> String {
    match result {
        Ok(WriteResult::Created { path, .. }) => path.clone(),
        other => panic!("expected Created, got {other:?}"),
    }
}
