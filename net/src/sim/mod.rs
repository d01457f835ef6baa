//! Deterministic simulation of whole Warren clusters, in one thread, from one seed.
//!
//! Each node is the pure Raft core plus the real shard state machine (`engine::shard::Shard`)
//! behind a runtime that follows `server/replica.rs` (`node.rs`), with a simulated disk that
//! holds the WAL's own batch bytes (`disk.rs`). Peer messages travel as the real peer frames
//! (`peer::encode_frame` / `decode_frame`) through a simulated network that loses, delays,
//! reorders and (Raft messages only; TCP never duplicates a forward) duplicates them, and cuts
//! links one way or both. Nodes crash (also in the middle of a Ready, with the WAL write lost,
//! torn or whole) and restart from their disks, pause (SIGSTOP: no ticks, nothing heard) and run
//! their clocks at different rates and offsets; leaders hand over as on SIGTERM.
//!
//! Clients write registers (setData of /k0../k3) and read them with sync + getData (a ReadIndex
//! round, then a local read: what the linearizable read mode does too) through any node; other
//! clients open and close sessions with ephemerals and sequential nodes. Checked after every
//! step: at most one leader per term; every node applies the one committed sequence in order
//! (a restart's replay included: no committed entry is lost or changed) with the same state
//! digest after the same index; zxids increase. At the end: the cluster heals and converges,
//! every node restarted from its disk has the same state, and every register's history of what
//! clients were told is linearizable (`engine::linearizability`).
//!
//! A failing seed prints the command that replays it with a trace of every event.

mod disk;
mod node;
#[cfg(test)]
mod tests;

use crate::peer::{decode_frame, encode_frame, PeerMessage};
use engine::command::{Command, CreateOp, SetDataOp};
use engine::linearizability::{Action, Op};
use engine::raft::{ElectionPriority, Index, NodeId, Role, Term};
use engine::request::{Caller, ReadOp, ReadResult};
use engine::types::{Acl, CreateMode};
use node::{Answer, AppliedEntry, ClientId, CrashAt, Node};
use std::collections::{BTreeMap, BTreeSet};

/// Registers clients write and read.
const KEYS: u64 = 4;
/// Client requests in flight at once (each client has one): the checker's search grows with
/// how many overlap.
const CLIENTS: usize = 6;
/// Steps a client waits for an answer before it gives up (a timeout: maybe applied).
const CLIENT_TIMEOUT: u64 = 600;
/// Simulated microseconds per step.
const STEP_US: i64 = 1000;

/// A seeded xorshift: `next(below)` draws from 0..below.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1)
    }

    fn below(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

/// A peer frame on its way.
struct Frame {
    from: NodeId,
    to: NodeId,
    bytes: Vec<u8>,
    /// Raft messages may be duplicated; forwards and read indexes may not (TCP).
    raft: bool,
}

/// A client request in flight: where its answer goes in the history.
struct InFlight {
    client: usize,
    node: NodeId,
    called: u64,
    /// (key, op index in that key's history); None for requests outside the histories.
    recorded: Option<(u64, usize)>,
}

/// How a run went, for the tests' not-vacuous checks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub leaders: usize,
    pub committed: usize,
    pub answered: usize,
    pub crashes: usize,
    pub torn_bytes: usize,
}

pub struct World {
    seed: u64,
    n: u64,
    rng: Rng,
    now: u64,
    nodes: BTreeMap<NodeId, Node>,
    restarts: u64,
    /// Each node's clock: steps run at `rate` ticks per 4 and an offset in µs.
    rates: Vec<u64>,
    offsets_us: Vec<i64>,
    network: Vec<Frame>,
    cut: BTreeSet<(NodeId, NodeId)>,
    paused: BTreeMap<NodeId, u64>,
    leaders: BTreeMap<Term, NodeId>,
    /// The committed sequence as first applied anywhere: (term, data hash) per index.
    committed: Vec<(Term, u64)>,
    /// The state digest after each index, as first seen.
    digests: BTreeMap<Index, u64>,
    applied_through: BTreeMap<NodeId, Index>,
    requests: BTreeMap<ClientId, InFlight>,
    next_request: ClientId,
    busy_clients: BTreeSet<usize>,
    history: BTreeMap<u64, Vec<Op<u32>>>,
    next_value: u32,
    next_session: i64,
    answered: usize,
    crashes: usize,
    trace: bool,
    /// Set while a crash point is prepared: requests and frames are taken, not processed.
    hold: bool,
}

impl World {
    pub fn new(seed: u64, n: u64, trace: bool) -> World {
        let mut rng = Rng::new(seed);
        let rates = (0..n).map(|_| 1 + rng.below(4)).collect();
        let offsets_us = (0..n).map(|_| rng.below(3_000_000) as i64).collect();
        let mut world = World {
            seed,
            n,
            rng,
            now: 0,
            nodes: BTreeMap::new(),
            restarts: 0,
            rates,
            offsets_us,
            network: Vec::new(),
            cut: BTreeSet::new(),
            paused: BTreeMap::new(),
            leaders: BTreeMap::new(),
            committed: Vec::new(),
            digests: BTreeMap::new(),
            applied_through: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request: 1,
            busy_clients: BTreeSet::new(),
            history: BTreeMap::new(),
            next_value: 1,
            next_session: 1,
            answered: 0,
            crashes: 0,
            trace,
            hold: false,
        };
        for id in 1..=n {
            world.boot(id, disk::Disk::default());
        }
        world
    }

    fn note(&self, line: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>6}] {}", self.now, line());
        }
    }

    fn now_us(&self, id: NodeId) -> i64 {
        1_700_000_000_000_000 + self.now as i64 * STEP_US + self.offsets_us[id as usize - 1]
    }

    fn boot(&mut self, id: NodeId, disk: disk::Disk) {
        self.restarts += 1;
        let voters = (1..=self.n).collect();
        // Every third seed places the leader (`replica::Placement`): node 1 + seed mod n is
        // preferred, the others defer.
        let priority = match (self.seed % 3, 1 + self.seed % self.n) {
            (0, preferred) if preferred == id => ElectionPriority::Preferred,
            (0, _) => ElectionPriority::Deferring,
            _ => ElectionPriority::Neutral,
        };
        let seed = self.seed ^ (self.restarts << 20) ^ id;
        let node = Node::boot(id, voters, seed, priority, disk, self.now_us(id));
        self.nodes.insert(id, node);
        self.applied_through.insert(id, 0);
        self.check(id);
    }

    fn node(&mut self, id: NodeId) -> &mut Node {
        self.nodes.get_mut(&id).expect("node exists")
    }

    /// Runs `id`'s turns until it has nothing to do, then checks it.
    fn process(&mut self, id: NodeId) {
        if self.hold || self.paused.contains_key(&id) {
            return;
        }
        self.turns(id, None);
    }

    fn turns(&mut self, id: NodeId, mut crash: Option<CrashAt>) {
        let now_us = self.now_us(id);
        loop {
            let (mut out, mut answers) = (Vec::new(), Vec::new());
            let busy = self.node(id).turn(now_us, crash, &mut out, &mut answers);
            for (to, message) in out {
                self.send(id, to, &message);
            }
            self.check(id);
            for answer in answers {
                self.answer(id, answer);
            }
            if let Some(at) = crash.take() {
                if busy {
                    self.note(|| format!("node {id} crashes mid-Ready ({at:?})"));
                    self.crash(id);
                    return;
                }
            }
            if !busy {
                return;
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, message: &PeerMessage) {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, message);
        self.network.push(Frame { from, to, bytes, raft: matches!(message, PeerMessage::Raft(_)) });
    }

    fn deliver(&mut self, frame: Frame) {
        let (message, used) = match decode_frame(&frame.bytes) {
            Ok(Some(decoded)) => decoded,
            other => panic!("a frame sent whole does not decode: {other:?}"),
        };
        assert_eq!(used, frame.bytes.len());
        self.note(|| format!("{} -> {}: {message:?}", frame.from, frame.to).chars().take(240).collect());
        self.node(frame.to).receive(message);
        self.process(frame.to);
    }

    /// Raft's safety properties and the state machine's agreement, after every turn of `id`.
    fn check(&mut self, id: NodeId) {
        let seed = self.seed;
        let node = self.nodes.get_mut(&id).expect("node exists");
        if node.raft.role() == Role::Leader {
            let term = node.raft.term();
            let leader = *self.leaders.entry(term).or_insert(id);
            assert_eq!(leader, id, "seed {seed}: two leaders in term {term}");
        }
        for AppliedEntry { index, term, data_hash, digest } in node.take_applied() {
            let through = self.applied_through.get_mut(&id).expect("booted");
            assert_eq!(index, *through + 1, "seed {seed}: node {id} applies in order");
            *through = index;
            match self.committed.get(index as usize - 1) {
                Some(&seen) => assert_eq!(
                    seen,
                    (term, data_hash),
                    "seed {seed}: node {id} applied another entry at index {index} than was committed there"
                ),
                None => {
                    assert_eq!(index as usize, self.committed.len() + 1, "seed {seed}: committed log has a gap");
                    self.committed.push((term, data_hash));
                }
            }
            if let Some(digest) = digest {
                let seen = *self.digests.entry(index).or_insert(digest);
                assert_eq!(seen, digest, "seed {seed}: node {id} has another state after index {index}");
            }
        }
    }

    /// A node crashes and restarts from its disk; what was on its way to it is lost, and its
    /// clients get no answer.
    fn crash(&mut self, id: NodeId) {
        self.crashes += 1;
        let node = self.nodes.remove(&id).expect("node exists");
        for request in node.clients() {
            self.abandon(request);
        }
        self.network.retain(|f| f.to != id);
        self.paused.remove(&id);
        self.boot(id, node.disk);
        self.note(|| format!("node {id} restarted from its disk"));
    }

    fn abandon(&mut self, request: ClientId) {
        if let Some(flight) = self.requests.remove(&request) {
            self.busy_clients.remove(&flight.client);
        }
    }

    fn answer(&mut self, id: NodeId, answer: Answer) {
        let request = match answer {
            Answer::Write { client, .. } | Answer::Synced { client } | Answer::Abandoned { client } => client,
        };
        let Some(flight) = self.requests.remove(&request) else { return };
        assert_eq!(flight.node, id, "answered by the node that took the request");
        self.busy_clients.remove(&flight.client);
        let now = self.now;
        let seed = self.seed;
        match answer {
            Answer::Abandoned { .. } => self.note(|| format!("request {request} abandoned by node {id}")),
            Answer::Write { result, .. } => {
                self.note(|| format!("request {request}: {result:?}"));
                if let Some((key, op)) = flight.recorded {
                    result.unwrap_or_else(|e| panic!("seed {seed}: a setData of /k{key} failed: {e:?}"));
                    self.history.get_mut(&key).expect("recorded")[op].answer = Some(now);
                    self.answered += 1;
                }
            }
            Answer::Synced { .. } => {
                let (key, op) = flight.recorded.expect("syncs are recorded reads");
                let value = self.read(id, key);
                self.note(|| format!("request {request}: /k{key} read {value:?} on node {id}"));
                let slot = &mut self.history.get_mut(&key).expect("recorded")[op];
                slot.action = Action::Read(value);
                slot.answer = Some(now);
                self.answered += 1;
            }
        }
    }

    /// getData of /k`key` from `id`'s replica.
    fn read(&mut self, id: NodeId, key: u64) -> Option<u32> {
        let caller = Caller { session: 0, conn: 0, auth: &[] };
        let op = ReadOp::GetData { path: format!("/k{key}"), watch: false };
        let (result, _) = self.node(id).shard.read(caller, &op);
        match result {
            Ok(ReadResult::Data { data, .. }) => {
                data.map(|d| u32::from_be_bytes(d.as_slice().try_into().expect("4-byte values")))
            }
            other => panic!("seed {}: getData /k{key} on node {id}: {other:?}", self.seed),
        }
    }

    /// A client sends `command` (None: sync then read `key`) to node `id`.
    fn request(&mut self, id: NodeId, command: Option<Command>, recorded: Option<(u64, Action<u32>)>) {
        let client = (0..CLIENTS).find(|c| !self.busy_clients.contains(c));
        let Some(client) = client else { return };
        self.busy_clients.insert(client);
        let request = self.next_request;
        self.next_request += 1;
        let recorded = recorded.map(|(key, action)| {
            let ops = self.history.entry(key).or_default();
            ops.push(Op { call: self.now, answer: None, action });
            (key, ops.len() - 1)
        });
        self.requests.insert(request, InFlight { client, node: id, called: self.now, recorded });
        self.note(|| format!("request {request} to node {id}: {command:?} {recorded:?}"));
        self.node(id).request(request, command);
        self.process(id);
    }

    fn write(&mut self, id: NodeId, key: u64) {
        let value = self.next_value;
        self.next_value += 1;
        let command = Command::SetData(SetDataOp {
            path: format!("/k{key}"),
            data: Some(value.to_be_bytes().to_vec()),
            version: -1,
            auth: Vec::new(),
        });
        self.request(id, Some(command), Some((key, Action::Write(value))));
    }

    fn sync_read(&mut self, id: NodeId, key: u64) {
        self.request(id, None, Some((key, Action::Read(None))));
    }

    /// Session traffic outside the histories, for the state machine's agreement checks:
    /// sessions opened and closed, ephemerals, sequential nodes.
    fn session_traffic(&mut self, id: NodeId) {
        let session = 1 + self.rng.below(self.next_session as u64) as i64;
        let create = |path: String, mode, session| {
            Command::Create(CreateOp {
                path,
                data: Some(vec![7]),
                acl: Acl::open_unsafe(),
                mode,
                ttl_ms: 0,
                session,
                auth: Vec::new(),
            })
        };
        let command = match self.rng.below(4) {
            0 => {
                self.next_session += 1;
                Command::CreateSession { session: self.next_session, timeout_ms: 10_000, passwd: vec![1; 16] }
            }
            1 => create(format!("/e{session}-"), CreateMode::EphemeralSequential, session),
            2 => create("/s/n-".to_string(), CreateMode::PersistentSequential, 0),
            _ => Command::CloseSession { session },
        };
        self.request(id, Some(command), None);
    }

    fn tick(&mut self, id: NodeId) {
        if !self.paused.contains_key(&id) {
            self.node(id).tick();
            self.process(id);
        }
    }

    /// One network event: a random frame is dropped, duplicated, delayed or delivered; frames
    /// to a paused node wait, frames over a cut link are lost.
    fn network_step(&mut self) {
        if self.network.is_empty() {
            return;
        }
        let at = self.rng.below(self.network.len() as u64) as usize;
        let frame = self.network.swap_remove(at);
        if self.paused.contains_key(&frame.to) {
            self.network.push(frame);
            return;
        }
        if self.cut.contains(&(frame.from, frame.to)) {
            return;
        }
        match self.rng.below(20) {
            0 => {}
            1 if frame.raft => {
                self.network.push(Frame { from: frame.from, to: frame.to, bytes: frame.bytes.clone(), raft: true });
                self.deliver(frame);
            }
            // The receiver crashes while carrying out what the frame made it do (a follower
            // in the middle of appending, a candidate in the middle of voting).
            2 if self.rng.below(5) == 0 => {
                let (to, at) = (frame.to, self.crash_point());
                self.hold = true;
                self.deliver(frame);
                self.hold = false;
                self.turns(to, Some(at));
            }
            _ => self.deliver(frame),
        }
    }

    fn crash_point(&mut self) -> CrashAt {
        match self.rng.below(4) {
            0 => CrashAt::AfterSend,
            1 => CrashAt::AfterTermVote,
            2 => CrashAt::DuringWrite { kept_permille: self.rng.below(1000) },
            _ => CrashAt::AfterWrite,
        }
    }

    /// Delivers everything in order, without faults, until nothing moves.
    fn stabilize(&mut self) {
        for _ in 0..200_000 {
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                self.process(id);
            }
            if self.network.is_empty() {
                return;
            }
            let frame = self.network.remove(0);
            if !self.cut.contains(&(frame.from, frame.to)) {
                self.deliver(frame);
            }
        }
        panic!("seed {}: the cluster never settled", self.seed);
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.raft.role() == Role::Leader)
            .max_by_key(|(_, n)| n.raft.term())
            .map(|(&id, _)| id)
    }

    fn believers(&self) -> Vec<NodeId> {
        self.nodes.iter().filter(|(_, n)| n.raft.role() == Role::Leader).map(|(&id, _)| id).collect()
    }

    /// Ticks every node `ticks` times, settling the network after each round.
    fn tick_all(&mut self, ticks: u32) {
        for _ in 0..ticks {
            self.now += 1;
            for id in 1..=self.n {
                self.tick(id);
            }
            self.stabilize();
        }
    }

    /// Elects a leader and creates the registers and "/s" before any fault.
    fn bootstrap(&mut self) {
        self.tick_all(40);
        let leader = self.leader().unwrap_or_else(|| panic!("seed {}: no first leader", self.seed));
        for path in (0..KEYS).map(|k| format!("/k{k}")).chain(["/s".to_string()]) {
            let create = CreateOp {
                path,
                data: None,
                acl: Acl::open_unsafe(),
                mode: CreateMode::Persistent,
                ttl_ms: 0,
                session: 0,
                auth: Vec::new(),
            };
            self.request(leader, Some(Command::Create(create)), None);
            self.stabilize();
        }
    }

    fn gave_up(&mut self) {
        let now = self.now;
        let late: Vec<ClientId> =
            self.requests.iter().filter(|(_, f)| f.called + CLIENT_TIMEOUT < now).map(|(&r, _)| r).collect();
        for request in late {
            self.note(|| format!("request {request} timed out"));
            self.abandon(request);
        }
    }

    /// One random step of the fault schedule.
    fn step(&mut self) {
        self.now += 1;
        let resumed: Vec<NodeId> =
            self.paused.iter().filter(|(_, &until)| until <= self.now).map(|(&id, _)| id).collect();
        for id in resumed {
            self.paused.remove(&id);
            self.note(|| format!("node {id} resumes"));
            // Back from a pause, a node that still believes it leads gets a read at once,
            // before it hears of a newer leader: only ReadIndex keeps it from stale answers.
            if self.nodes[&id].raft.role() == Role::Leader {
                let key = self.rng.below(KEYS);
                self.sync_read(id, key);
            }
            self.process(id);
        }
        self.gave_up();
        let n = self.n;
        match self.rng.below(100) {
            0..=29 => {
                let total: u64 = self.rates.iter().sum();
                let mut draw = self.rng.below(total);
                let mut id = 1;
                for (i, &rate) in self.rates.iter().enumerate() {
                    if draw < rate {
                        id = i as NodeId + 1;
                        break;
                    }
                    draw -= rate;
                }
                self.tick(id);
            }
            30..=64 | 91..=92 | 99 => {
                // Heartbeats alone add a frame or two per tick: deliver faster than that.
                for _ in 0..1 + self.rng.below(4) {
                    self.network_step();
                }
            }
            65..=84 => {
                let believers = self.believers();
                let id = if believers.is_empty() || self.rng.below(2) == 0 {
                    1 + self.rng.below(n)
                } else {
                    believers[self.rng.below(believers.len() as u64) as usize]
                };
                let key = self.rng.below(KEYS);
                match self.rng.below(10) {
                    0..=3 => self.write(id, key),
                    4..=7 => self.sync_read(id, key),
                    _ => self.session_traffic(id),
                }
            }
            85..=87 => {
                let (from, to) = (1 + self.rng.below(n), 1 + self.rng.below(n));
                self.note(|| format!("cut {from} -> {to}"));
                self.cut.insert((from, to));
            }
            88..=90 => {
                self.note(|| "heal".to_string());
                self.cut.clear();
            }
            93 if self.rng.below(4) == 0 => {
                let id = 1 + self.rng.below(n);
                self.note(|| format!("node {id} crashes"));
                self.crash(id);
            }
            94..=95 => {
                // A leader takes a write and crashes while carrying out the Ready it makes.
                let id = 1 + self.rng.below(n);
                let leads = self.nodes[&id].raft.role() == Role::Leader;
                if leads && !self.paused.contains_key(&id) && self.rng.below(3) == 0 {
                    let key = self.rng.below(KEYS);
                    self.hold = true;
                    self.write(id, key);
                    self.hold = false;
                    let at = self.crash_point();
                    self.turns(id, Some(at));
                }
            }
            96..=97 if self.rng.below(4) == 0 => {
                let id = 1 + self.rng.below(n);
                let until = self.now + 50 + self.rng.below(300);
                self.note(|| format!("node {id} pauses until {until}"));
                self.paused.insert(id, until);
            }
            93 | 96..=97 => {}
            _ => {
                // 98: a SIGTERM-style handover by the leader.
                if let Some(leader) = self.leader() {
                    let raft = &mut self.node(leader).raft;
                    if let Some(to) = raft.best_transferee() {
                        if raft.transfer_leadership(to).is_ok() {
                            self.note(|| format!("node {leader} hands leadership to {to}"));
                        }
                        self.process(leader);
                    }
                }
            }
        }
    }

    /// Faults stop: the cluster must elect a leader, commit a last write everywhere and end
    /// with one state on every node, also after every node restarts from its disk.
    fn converge(&mut self) {
        self.paused.clear();
        self.cut.clear();
        self.tick_all(80);
        let leader = self.leader().unwrap_or_else(|| panic!("seed {}: no leader after healing", self.seed));
        let key = self.rng.below(KEYS);
        self.write(leader, key);
        self.stabilize();
        self.tick_all(5);
        let last = self.nodes[&leader].raft.applied_index();
        for id in 1..=self.n {
            assert_eq!(self.applied_through[&id], last, "seed {}: node {id} did not catch up", self.seed);
        }
        // Every node restarts from its disk: its replay is checked against the committed
        // sequence and the digests (`check`), and the cluster goes on from there.
        for id in 1..=self.n {
            self.crash(id);
        }
        self.tick_all(80);
        let leader = self.leader().unwrap_or_else(|| panic!("seed {}: no leader after the restarts", self.seed));
        let last_again = self.nodes[&leader].raft.applied_index();
        assert!(last_again > last, "seed {}: the new term's no-op did not commit", self.seed);
        for id in 1..=self.n {
            assert_eq!(self.applied_through[&id], last_again, "seed {}: node {id} after the restarts", self.seed);
        }
    }

    /// Every register's history must be linearizable; unanswered reads say nothing.
    fn check_histories(&self) {
        for (key, ops) in &self.history {
            let ops: Vec<Op<u32>> =
                ops.iter().filter(|op| op.answer.is_some() || matches!(op.action, Action::Write(_))).cloned().collect();
            if let Err(violation) = engine::linearizability::check(None, &ops) {
                panic!("seed {}: /k{key} is not linearizable ({violation:?}): {ops:?}", self.seed);
            }
        }
    }

    pub fn summary(&self) -> Summary {
        Summary {
            leaders: self.leaders.len(),
            committed: self.committed.len(),
            answered: self.answered,
            crashes: self.crashes,
            torn_bytes: self.nodes.values().map(|n| n.disk.torn_cut).sum(),
        }
    }
}

/// One whole run of `seed` on `n` nodes.
pub fn run(seed: u64, n: u64, steps: u64, trace: bool) -> Summary {
    let mut world = World::new(seed, n, trace);
    world.bootstrap();
    for _ in 0..steps {
        world.step();
    }
    world.converge();
    world.check_histories();
    world.summary()
}
