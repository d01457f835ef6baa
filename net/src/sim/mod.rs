//! Deterministic simulation of whole Warren clusters, in one thread, from one seed.
//!
//! Each node runs one to three Raft groups, each the runtime's own group driver
//! (`server/driver.rs`, what `server/replica.rs` runs on a core) over the real shard state
//! machine (`engine::shard::Shard`, shard g in group g), with a simulated disk per group that
//! holds the WAL's own batch bytes (`disk.rs`). Peer messages travel as the real peer frames
//! (`peer::encode_frame` / `decode_frame`) through a simulated network that loses, delays,
//! reorders and (Raft messages only; TCP never duplicates a forward) duplicates them, and cuts
//! links one way or both. Nodes crash (also in the middle of a Ready, with the WAL write lost,
//! torn or whole) and restart from their disks, pause (SIGSTOP: no ticks, nothing heard) and run
//! their clocks at different rates and offsets; nodes stop as on SIGTERM (handing their groups
//! over) and restart; leaders are placed and handed back to their preferred node; links that
//! lose a frame count as broken (the driver abandons what it forwarded over them).
//!
//! Clients write registers (setData of /k0../k3) and read them with sync + getData (a ReadIndex
//! round, then a local read: what the linearizable read mode does too) through any node; other
//! clients open and close sessions with ephemerals and sequential nodes. Checked after every
//! step: at most one leader per group and term; every node applies each group's one committed
//! sequence in order (a restart's replay included: no committed entry is lost or changed) with
//! the same state digest after the same index; zxids increase; and one order across groups:
//! a node that shows a client's write shows every write the client was answered before it
//! sent that one through the same node (the ready-znode pattern, `check_prefix`). At the end: the cluster heals and converges,
//! every node restarted from its disk has the same state, and every register's history of what
//! clients were told is linearizable (`engine::linearizability`).
//!
//! A failing seed prints the command that replays it with a trace of every event.

mod disk;
mod node;
#[cfg(test)]
mod tests;

use crate::peer::{decode_frame, encode_frame, PeerMessage};
use engine::command::{ClientWrite, Command, CreateOp, MultiOp, SetDataOp, ShardId, TxnId, TxnOutcome};
use engine::linearizability::{Action, Op};
use engine::raft::{Index, NodeId, Role, Term};
use engine::request::{Caller, ReadOp, ReadResult, WriteResult};
use engine::txn::TxnApplied;
use engine::types::{Acl, CreateMode, SessionId, Zxid};
use node::{Answer, AppliedEntry, ClientId, CrashAt, Node, Setup, SimRequest};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Registers clients write and read; register k lives in shard (and group) k mod groups.
const KEYS: u64 = 4;
/// Clients, each with up to `Setup`'s pipeline of requests in flight: the checker's search
/// grows with how many overlap.
const CLIENTS: usize = 6;
/// Steps a client waits for an answer before it gives up (a timeout: maybe applied).
const CLIENT_TIMEOUT: u64 = 600;
/// Simulated microseconds per step.
const STEP_US: i64 = 1000;
/// Steps a SIGTERM'd node takes to hand its groups over before it exits and restarts.
const STOP_STEPS: u64 = 100;
/// Length of the schedule's phases, stormy and calm in turn (`World::calm`): a session expires
/// only under a leader that stays for its timeout (a new leader gives every session a full
/// one), so the calm is longer than the longest timeout.
const STORM_STEPS: u64 = 1500;
const CALM_STEPS: u64 = 3500;
/// Clients of multis across groups (seeds with several groups), each with one at a time.
const MULTI_CLIENTS: usize = 2;
/// Tries of one multi before its client gives up (`conn/txn.rs`'s `ATTEMPTS_MAX`), and steps
/// it waits for all of them (then: maybe applied).
const MULTI_ATTEMPTS: u32 = 20;
const MULTI_TIMEOUT: u64 = 4000;
/// Steps between the transaction rounds of each node (`txn_driver::RESEND_EVERY` in Raft
/// ticks, as `node::TXN_TIMES`).
const TXN_ROUND_STEPS: u64 = 33;
/// Clients that hold a session each, ping it and keep an ephemeral in every group.
const SESSION_CLIENTS: usize = 2;
/// Session ids of those clients start here (below: `session_traffic`'s).
const FIRST_CLIENT_SESSION: i64 = 1 << 40;
/// Steps between lease rounds, expiry rounds and close-finishing rounds of each node. A step
/// is a millisecond of every clock, but Raft ticks come every ten steps or so (three times
/// the runtime's rate) and faults far more often than on any network: the lease rounds keep
/// the runtime's ratio to Raft's ticks (`LEASE_PROBE_INTERVAL` is 3.3 ticks) rather than its
/// period, or a node hit by the schedule's crashes and cuts would never serve.
const LEASE_ROUND_STEPS: u64 = 20;
const EXPIRY_ROUND_STEPS: u64 = 250;
const CLOSES_ROUND_STEPS: u64 = 500;

/// A client with a session: opens it through one node, pings it every third of its timeout,
/// and when the connection is lost leaves it to expire and opens a new one later.
struct SessionClient {
    session: i64,
    node: NodeId,
    conn: u64,
    connected: bool,
    /// The handshake's creates not answered yet, and those of the groups after 0 to send once
    /// shard 0 opened the session.
    handshake: BTreeSet<ClientId>,
    handshake_rest: Vec<ClientId>,
    /// The step of its next ping, or of its next attempt to open a session.
    next_at: u64,
    timeout_ms: i32,
    /// The step its session was last known alive to it (connected, or a ping answered).
    alive_at: u64,
    /// A reattach to another node in progress: the syncs not answered yet, then (empty) the
    /// renewal, then the moves, waited for since the step given.
    reattach: Option<(BTreeSet<ClientId>, u64)>,
    /// A reattach's renewal was answered (the probe's send time): its moves are out.
    renewed_at: Option<Instant>,
    /// A reattach's moves not answered yet (`Conn::move_session_here`), with their groups.
    moves: BTreeMap<ClientId, usize>,
    /// Per group: its connection's epoch there (0: the connection that opened the session);
    /// its writes carry it.
    epochs: Vec<Zxid>,
}

/// A session client starts a reattach at most this long after its session was last alive
/// (then it gives the session up); a reattach waits this long at most.
const REATTACH_WAIT_STEPS: u64 = 3000;

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
    /// The group (core) whose connection carries it.
    group: usize,
    bytes: Vec<u8>,
    /// Raft messages may be duplicated and reordered; forwards and read indexes arrive once and
    /// in the order sent (TCP), or are lost with every later one in flight on their link.
    raft: bool,
    /// Send order.
    sent: u64,
}

/// A client request in flight: where its answer goes in the history.
struct InFlight {
    client: usize,
    conn: u64,
    node: NodeId,
    called: u64,
    /// (key, op index in that key's history); None for requests outside the histories.
    recorded: Option<(u64, usize)>,
}

/// A client: one connection at a time, to one node, with up to `World::pipeline` requests in
/// flight on it, all to one group (a connection holds a request to another shard until the
/// earlier ones are answered, `conn/slots.rs`). A request given up or abandoned ends the
/// connection (ConnectionLoss): the client stops waiting for the others and connects again.
struct Client {
    conn: u64,
    node: NodeId,
    group: usize,
    in_flight: BTreeSet<ClientId>,
    /// Register writes sent on this connection, per group.
    writes_sent: BTreeMap<usize, u64>,
    /// For the order across groups: the writes answered on this connection, by key.
    answered: Answered,
}

/// A client of multis across groups: one at a time, on its own connection (a connection
/// sends a multi across groups alone, `WriteTarget::Alone`), each try's prepares and its wait
/// for the decision at once (`Conn::txn_parts`), tried again on Retry (`Conn::txn_step`).
struct MultiClient {
    conn: u64,
    node: NodeId,
    /// The value of the multi in flight.
    current: Option<u32>,
}

/// A multi across groups: in each of its groups a register write of its value and a marker
/// node (`marker_path`); a quarter also check a version of /s that fails (aborted).
struct Multi {
    client: usize,
    ops: Vec<(ShardId, MultiOp)>,
    keys: Vec<u64>,
    groups: Vec<usize>,
    called: u64,
    attempt: u32,
    /// The current try's requests not answered yet, and its decision once heard.
    waiting: BTreeSet<ClientId>,
    outcome: Option<TxnOutcome>,
    state: MultiState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MultiState {
    InFlight,
    Committed,
    /// Aborted, or given up after Retry every time: applied nowhere.
    NotApplied,
    /// The client lost its connection or gave up waiting: applied everywhere or nowhere.
    Unknown,
}

/// A create of a persistent node without data, open to all.
fn plain_create(path: String) -> CreateOp {
    CreateOp {
        path,
        data: None,
        acl: Acl::open_unsafe(),
        mode: CreateMode::Persistent,
        ttl_ms: 0,
        session: 0,
        auth: Vec::new(),
    }
}

/// The node under which multi client `client` creates its markers, in every group.
fn marker_parent(client: usize) -> String {
    format!("/mk{client}")
}

/// The marker of multi `value` of `client`: created by the multi in each of its groups.
fn marker_path(client: usize, value: u32) -> String {
    format!("{}/m{value}", marker_parent(client))
}

/// Writes answered to a client, by key: (value, zxid).
type Answered = BTreeMap<u64, (u32, Zxid)>;

/// How a run went, for the tests' not-vacuous checks.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    pub leaders: usize,
    pub committed: usize,
    pub answered: usize,
    pub crashes: usize,
    pub torn_bytes: usize,
    /// Seeds with more than one group, and writes that carried another group's write before them.
    pub multi_group: usize,
    pub ordered_writes: usize,
    pub stops: usize,
    /// Requests sent while others of their connection were in flight.
    pub pipelined: usize,
    /// Pings of session clients answered, and their sessions closed (expired).
    pub pings_answered: usize,
    pub sessions_closed: usize,
    pub reattaches: usize,
    /// Writes of session clients (stamped with their connection's epoch) applied.
    pub session_writes_applied: usize,
    /// Steps of a node's wall clock, forward or back.
    pub clock_jumps: usize,
    /// Snapshots completed, installed from a leader, and nodes started from one; WAL batches
    /// released below snapshots.
    pub snapshots_taken: u64,
    pub snapshots_installed: u64,
    pub started_from_snapshot: usize,
    pub batches_released: usize,
    /// Multis across groups committed, aborted, tried again, and of unknown outcome.
    pub multis_committed: usize,
    pub multis_aborted: usize,
    pub multis_retried: usize,
    pub multis_unknown: usize,
}

impl Summary {
    pub fn add(&mut self, other: &Summary) {
        self.leaders += other.leaders;
        self.committed += other.committed;
        self.answered += other.answered;
        self.crashes += other.crashes;
        self.torn_bytes += other.torn_bytes;
        self.multi_group += other.multi_group;
        self.ordered_writes += other.ordered_writes;
        self.stops += other.stops;
        self.pipelined += other.pipelined;
        self.pings_answered += other.pings_answered;
        self.sessions_closed += other.sessions_closed;
        self.reattaches += other.reattaches;
        self.session_writes_applied += other.session_writes_applied;
        self.clock_jumps += other.clock_jumps;
        self.snapshots_taken += other.snapshots_taken;
        self.snapshots_installed += other.snapshots_installed;
        self.started_from_snapshot += other.started_from_snapshot;
        self.batches_released += other.batches_released;
        self.multis_committed += other.multis_committed;
        self.multis_aborted += other.multis_aborted;
        self.multis_retried += other.multis_retried;
        self.multis_unknown += other.multis_unknown;
    }
}

pub struct World {
    seed: u64,
    n: u64,
    setup: Setup,
    rng: Rng,
    now: u64,
    nodes: BTreeMap<NodeId, Node>,
    restarts: u64,
    /// Each node's clock: steps run at `rate` ticks per 4 and an offset in µs.
    rates: Vec<u64>,
    offsets_us: Vec<i64>,
    network: Vec<Frame>,
    frames_sent: u64,
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Nodes cut off from every other for a long while (past session timeouts), which `heal`
    /// does not end: (until, which way: 0 both, 1 its frames out lost, 2 frames to it lost).
    isolated: BTreeMap<NodeId, (u64, u64)>,
    /// Per node, the steps its next lease, expiry and close-finishing rounds are due at.
    duties_due: BTreeMap<NodeId, [u64; 4]>,
    /// Nodes that applied a register write since their last `check_prefix`.
    shown_changed: BTreeSet<NodeId>,
    paused: BTreeMap<NodeId, u64>,
    /// Nodes stopping as on SIGTERM, and the step they exit (and restart) at.
    stopping: BTreeMap<NodeId, u64>,
    leaders: BTreeMap<(usize, Term), NodeId>,
    /// Per group, the committed sequence as first applied anywhere: (term, data hash) per index.
    committed: Vec<Vec<(Term, u64)>>,
    /// The state digest after each (group, index), as first seen.
    digests: BTreeMap<(usize, Index), u64>,
    /// The register value each committed entry wrote, by (group, index): where a node that
    /// jumps to a snapshot stands in each connection's writes.
    committed_values: BTreeMap<(usize, Index), u32>,
    /// Counts of nodes gone (crashed or restarted) for the summary.
    snapshots_taken: u64,
    snapshots_installed: u64,
    started_from_snapshot: usize,
    applied_through: BTreeMap<(NodeId, usize), Index>,
    requests: BTreeMap<ClientId, InFlight>,
    next_request: ClientId,
    clients: Vec<Client>,
    next_conn: u64,
    /// Requests a client may have in flight on its connection (1-3 by seed).
    pipeline: usize,
    /// Per register write value: its connection, group and number among that connection's
    /// writes to the group (per-session FIFO: every node applies them in order, no gaps).
    fifo: BTreeMap<u32, (u64, usize, u64)>,
    /// Per (node, connection, group): the number of the last write applied there.
    fifo_applied: BTreeMap<(NodeId, u64, usize), u64>,
    pipelined: usize,
    /// The simulation's monotonic clock starts here (the same rate on every node).
    base: Instant,
    session_clients: Vec<SessionClient>,
    next_client_session: i64,
    /// Whether session clients still open sessions (not while the cluster converges).
    sessions_open: bool,
    /// The step at which each session's close first applied in shard 0 anywhere (committed).
    session_closed_at: BTreeMap<i64, u64>,
    pings_answered: usize,
    reattaches: usize,
    /// Per session client write: its session and the step it was sent.
    session_writes: BTreeMap<u32, (SessionId, u64)>,
    /// Per session: its reattaches granted, with the step and, per group, the index the
    /// granting node had applied through (its moves included).
    grants: BTreeMap<SessionId, Vec<(u64, Vec<Index>)>>,
    session_writes_applied: usize,
    /// Session client writes refused (SESSIONMOVED) on some node.
    session_writes_refused: BTreeSet<u32>,
    session_writes_ok: BTreeSet<u32>,
    clock_jumps: usize,
    history: BTreeMap<u64, Vec<Op<u32>>>,
    multi_clients: Vec<MultiClient>,
    /// The multis' own choices: the schedule of everything else stays as it was.
    multi_rng: Rng,
    /// Multis across groups by value, and the requests of their current tries.
    multis: BTreeMap<u32, Multi>,
    multi_requests: BTreeMap<ClientId, u32>,
    next_txn: u64,
    multis_retried: usize,
    /// Multis decided Retry, to try again at the next step.
    multi_retries: Vec<u32>,
    /// Nodes that applied a transaction entry since their last `check_multis`.
    txn_applied: BTreeSet<NodeId>,
    /// Snapshots (group, index) some node began while an entry after theirs was applied ahead.
    inexact_snapshots: BTreeSet<(usize, Index)>,
    /// Per written value: its key and the client's writes answered before it was sent.
    written: BTreeMap<u32, (u64, Answered)>,
    ordered_writes: usize,
    next_value: u32,
    next_session: i64,
    answered: usize,
    crashes: usize,
    stops: usize,
    trace: bool,
    /// Set while a crash point is prepared: requests and frames are taken, not processed.
    hold: bool,
    /// A scripted scenario: no faults but the script's, and new sessions open on this node.
    scripted: bool,
    /// Faults have stopped (`converge`): session clients no longer pause their nodes.
    converging: bool,
    sessions_on: Option<NodeId>,
}

impl World {
    pub fn new(seed: u64, n: u64, trace: bool) -> World {
        let mut rng = Rng::new(seed);
        let rates = (0..n).map(|_| 1 + rng.below(4)).collect();
        let offsets_us = (0..n).map(|_| rng.below(3_000_000) as i64).collect();
        // Most seeds run two or three groups; every third places the leaders on one node.
        let groups = [1, 2, 2, 3][(seed % 4) as usize];
        let preferred = seed.is_multiple_of(3).then(|| 1 + seed % n);
        // Snapshots: most seeds take them (every 30-150 entries, walked a few nodes per turn
        // while applies go on); half of those keep so few entries for followers that one
        // behind needs a snapshot sent (InstallSnapshot). Every seed sends one when needed.
        let snapshot_entries = [0, 30, 60, 150][(seed / 4 % 4) as usize];
        let retained_entries = if snapshot_entries > 0 && (seed / 16).is_multiple_of(2) { 20 } else { 2000 };
        let setup = Setup {
            groups,
            preferred,
            hand_back_ticks: 40 + (seed % 5) as u32 * 20,
            retained_entries,
            compact_every: if retained_entries < 100 { 8 } else { 64 },
            snapshot_entries,
            snapshot_step_nodes: 1 + (seed / 32 % 4) as usize,
        };
        let mut world = World {
            seed,
            n,
            setup,
            rng,
            now: 0,
            nodes: BTreeMap::new(),
            restarts: 0,
            rates,
            offsets_us,
            network: Vec::new(),
            frames_sent: 0,
            cut: BTreeSet::new(),
            isolated: BTreeMap::new(),
            shown_changed: BTreeSet::new(),
            duties_due: BTreeMap::new(),
            paused: BTreeMap::new(),
            stopping: BTreeMap::new(),
            leaders: BTreeMap::new(),
            committed: vec![Vec::new(); groups],
            digests: BTreeMap::new(),
            committed_values: BTreeMap::new(),
            snapshots_taken: 0,
            snapshots_installed: 0,
            started_from_snapshot: 0,
            applied_through: BTreeMap::new(),
            requests: BTreeMap::new(),
            next_request: 1,
            clients: (1..=CLIENTS as u64)
                .map(|conn| Client {
                    conn,
                    node: 1,
                    group: 0,
                    in_flight: BTreeSet::new(),
                    writes_sent: BTreeMap::new(),
                    answered: BTreeMap::new(),
                })
                .collect(),
            next_conn: CLIENTS as u64 + 1,
            pipeline: 1 + (seed / 4 % 3) as usize,
            fifo: BTreeMap::new(),
            fifo_applied: BTreeMap::new(),
            pipelined: 0,
            base: Instant::now(),
            session_clients: (0..SESSION_CLIENTS)
                .map(|_| SessionClient {
                    session: 0,
                    node: 1,
                    conn: 0,
                    connected: false,
                    handshake: BTreeSet::new(),
                    handshake_rest: Vec::new(),
                    next_at: 0,
                    timeout_ms: 0,
                    alive_at: 0,
                    reattach: None,
                    renewed_at: None,
                    moves: BTreeMap::new(),
                    epochs: Vec::new(),
                })
                .collect(),
            next_client_session: FIRST_CLIENT_SESSION,
            sessions_open: true,
            session_closed_at: BTreeMap::new(),
            pings_answered: 0,
            reattaches: 0,
            session_writes: BTreeMap::new(),
            grants: BTreeMap::new(),
            session_writes_applied: 0,
            session_writes_refused: BTreeSet::new(),
            session_writes_ok: BTreeSet::new(),
            clock_jumps: 0,
            history: BTreeMap::new(),
            multi_clients: (0..MULTI_CLIENTS)
                .map(|i| MultiClient { conn: (1 << 30) + i as u64, node: 1, current: None })
                .collect(),
            multi_rng: Rng::new(seed ^ 0x6d75_6c74_6973),
            multis: BTreeMap::new(),
            multi_requests: BTreeMap::new(),
            next_txn: 0,
            multis_retried: 0,
            multi_retries: Vec::new(),
            txn_applied: BTreeSet::new(),
            inexact_snapshots: BTreeSet::new(),
            written: BTreeMap::new(),
            ordered_writes: 0,
            next_value: 1,
            next_session: 1,
            answered: 0,
            crashes: 0,
            stops: 0,
            trace,
            hold: false,
            scripted: false,
            converging: false,
            sessions_on: None,
        };
        for id in 1..=n {
            let disks = (0..groups).map(|_| disk::Disk::default()).collect();
            world.boot(id, disks);
        }
        world
    }

    fn note(&self, line: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>6}] {}", self.now, line());
        }
    }

    /// The monotonic clock of every node (leases assume their rates agree).
    fn instant(&self) -> Instant {
        self.base + Duration::from_micros(self.now * STEP_US as u64)
    }

    fn now_us(&self, id: NodeId) -> i64 {
        1_700_000_000_000_000 + self.now as i64 * STEP_US + self.offsets_us[id as usize - 1]
    }

    fn groups(&self) -> usize {
        self.setup.groups
    }

    fn group_of(&self, key: u64) -> usize {
        (key % self.groups() as u64) as usize
    }

    fn boot(&mut self, id: NodeId, disks: Vec<disk::Disk>) {
        self.restarts += 1;
        let voters = (1..=self.n).collect();
        let seed = self.seed ^ (self.restarts << 20) ^ id;
        let node = Node::boot(id, voters, seed, self.setup, disks, self.now_us(id), self.instant());
        self.started_from_snapshot += node.groups.iter().filter(|g| g.disk.newest_snapshot().is_some()).count();
        self.nodes.insert(id, node);
        for group in 0..self.groups() {
            self.applied_through.insert((id, group), 0);
        }
        // The replay applies every write again from the start.
        self.fifo_applied.retain(|&(node, _, _), _| node != id);
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
        // A group that applies can let another group's held entries apply: go round until
        // no group moves.
        while (0..self.groups()).fold(false, |moved, group| self.turns(id, group, None) | moved) {}
        self.check_prefix(id);
    }

    /// Runs the turns of `group` of `id` after a frame for it, then those of the groups that
    /// hold entries for another group (`Msg::OtherGroupApplied` in the runtime).
    fn process_group(&mut self, id: NodeId, group: usize) {
        if self.hold || self.paused.contains_key(&id) {
            return;
        }
        if self.turns(id, group, None) {
            loop {
                let Some(node) = self.nodes.get_mut(&id) else { return };
                // Groups whose transaction driver was given entries to propose have turns too
                // (`Core::propose_internal` wakes the core's group).
                let mut due = node.take_txn_proposing();
                due.extend((0..node.groups.len()).filter(|&g| node.groups[g].driver.holds_entries()));
                if !due.into_iter().fold(false, |moved, g| self.turns(id, g, None) | moved) {
                    break;
                }
            }
        }
        self.check_prefix(id);
    }

    /// Turns of one group until it is idle; whether it did anything. With `crash`, the first
    /// turn that has a Ready stops there and the node restarts.
    fn turns(&mut self, id: NodeId, group: usize, mut crash: Option<CrashAt>) -> bool {
        let now_us = self.now_us(id);
        let mut moved = false;
        loop {
            let (mut out, mut answers) = (Vec::new(), Vec::new());
            let instant = self.instant();
            let busy = self.node(id).turn(group, now_us, instant, crash, &mut out, &mut answers);
            for (to, message) in out {
                self.send(id, to, group, &message);
            }
            if busy {
                self.check(id);
            }
            for answer in answers {
                self.answer(id, answer);
            }
            if let Some(at) = crash.take() {
                if busy {
                    self.note(|| format!("node {id} crashes mid-Ready of group {group} ({at:?})"));
                    self.crash(id);
                    return true;
                }
            }
            if !busy {
                return moved;
            }
            moved = true;
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, group: usize, message: &PeerMessage) {
        let mut bytes = Vec::new();
        encode_frame(&mut bytes, message);
        self.frames_sent += 1;
        let raft = matches!(message, PeerMessage::Raft(_));
        self.network.push(Frame { from, to, group, bytes, raft, sent: self.frames_sent });
    }

    fn deliver(&mut self, frame: Frame) {
        let (message, used) = match decode_frame(&frame.bytes) {
            Ok(Some(decoded)) => decoded,
            other => panic!("a frame sent whole does not decode: {other:?}"),
        };
        assert_eq!(used, frame.bytes.len());
        self.note(|| {
            format!("{} -> {} g{}: {message:?}", frame.from, frame.to, frame.group).chars().take(240).collect()
        });
        let instant = self.instant();
        self.node(frame.to).receive(frame.group, frame.from, message, instant);
        self.send_outbox(frame.to);
        self.check(frame.to);
        self.process_group(frame.to, frame.group);
    }

    /// Snapshot chunks and acknowledgements a node queued.
    fn send_outbox(&mut self, id: NodeId) {
        let outbox = std::mem::take(&mut self.node(id).outbox);
        for (group, to, message) in outbox {
            self.note(|| format!("{id} sends {to} g{group}: {message:?}").chars().take(160).collect());
            self.send(id, to, group, &message);
        }
    }

    /// Takes the frame at `at` off the network; for a forward or read index, the oldest one on
    /// its link instead (TCP keeps their order).
    fn take_frame(&mut self, at: usize) -> Frame {
        let picked = &self.network[at];
        let at = match picked.raft {
            true => at,
            false => {
                let link = (picked.from, picked.to, picked.group);
                let on_link = |f: &&Frame| !f.raft && (f.from, f.to, f.group) == link;
                let oldest = self.network.iter().filter(on_link).map(|f| f.sent).min().expect("the picked one");
                self.network.iter().position(|f| f.sent == oldest).expect("present")
            }
        };
        self.network.swap_remove(at)
    }

    /// A frame is lost: the connection it travelled on broke, which both ends notice; the
    /// forwards and read indexes behind it on that link are lost with it.
    fn lose(&mut self, frame: &Frame) {
        if !frame.raft {
            let link = (frame.from, frame.to, frame.group);
            self.network.retain(|f| f.raft || (f.from, f.to, f.group) != link);
        }
        if let Some(node) = self.nodes.get_mut(&frame.from) {
            node.lost_with(frame.to);
        }
        if let Some(node) = self.nodes.get_mut(&frame.to) {
            node.lost_with(frame.from);
        }
    }

    /// Raft's safety properties and the state machine's agreement, after every turn of `id`.
    fn check(&mut self, id: NodeId) {
        let seed = self.seed;
        let node = self.nodes.get_mut(&id).expect("node exists");
        for (group, g) in node.groups.iter().enumerate() {
            let raft = g.driver.raft();
            if raft.role() == Role::Leader {
                let term = raft.term();
                let leader = *self.leaders.entry((group, term)).or_insert(id);
                assert_eq!(leader, id, "seed {seed}: two leaders of group {group} in term {term}");
            }
        }
        self.inexact_snapshots.extend(node.snapshots_with_entries_ahead.drain(..));
        let applied = node.take_applied();
        if applied.iter().any(|entry| entry.written.is_some()) {
            self.shown_changed.insert(id);
        }
        if applied.iter().any(|entry| entry.txn.is_some() || entry.snapshot) {
            self.txn_applied.insert(id);
        }
        for entry in applied {
            if entry.snapshot {
                self.jumped_to_snapshot(id, entry);
                continue;
            }
            let AppliedEntry { group, index, term, data_hash, digest, written, closed_session, .. } = entry;
            match entry.session_write {
                Some((write, true)) => self.check_session_write(id, write, group, index),
                Some((write, false)) => {
                    self.session_writes_refused.insert(write);
                }
                None => {}
            }
            if let Some(session) = closed_session {
                self.session_closed_at.entry(session).or_insert(self.now);
            }
            let through = self.applied_through.get_mut(&(id, group)).expect("booted");
            assert_eq!(index, *through + 1, "seed {seed}: node {id} applies group {group} in order");
            *through = index;
            let committed = &mut self.committed[group];
            match committed.get(index as usize - 1) {
                Some(&seen) => assert_eq!(
                    seen,
                    (term, data_hash),
                    "seed {seed}: node {id} applied another entry at index {index} of group {group} than was committed there"
                ),
                None => {
                    assert_eq!(index as usize, committed.len() + 1, "seed {seed}: committed log has a gap");
                    committed.push((term, data_hash));
                    if let Some(value) = written {
                        self.committed_values.insert((group, index), value);
                    }
                }
            }
            if let Some(&(conn, write_group, number)) = written.and_then(|value| self.fifo.get(&value)) {
                let last = self.fifo_applied.entry((id, conn, write_group)).or_insert(0);
                assert_eq!(
                    number,
                    *last + 1,
                    "seed {seed}: node {id} applied write {number} of connection {conn} to group {write_group} after write {last}"
                );
                *last = number;
            }
            if let Some(digest) = digest {
                let seen = *self.digests.entry((group, index)).or_insert(digest);
                assert_eq!(
                    seen, digest,
                    "seed {seed}: node {id} has another state after index {index} of group {group}"
                );
            }
        }
    }

    /// A node's shard became the state after `index` from a snapshot (loaded at start-up or
    /// installed from the leader): it must be the state every node had after that entry, and
    /// the node stands after each connection's writes through it.
    fn jumped_to_snapshot(&mut self, id: NodeId, entry: AppliedEntry) {
        let seed = self.seed;
        let AppliedEntry { group, index, digest, .. } = entry;
        let digest = digest.expect("a snapshot's digest");
        // A snapshot begun while a multi's finish was applied ahead of its place holds that
        // finish too (as every replica does from the entry it released on): not comparable.
        if !self.inexact_snapshots.contains(&(group, index)) {
            let seen = *self.digests.entry((group, index)).or_insert(digest);
            assert_eq!(
                seen, digest,
                "seed {seed}: node {id}'s snapshot after index {index} of group {group} is another state"
            );
        }
        assert!(
            index as usize <= self.committed[group].len(),
            "seed {seed}: node {id} has a snapshot after index {index} of group {group}, past what was committed"
        );
        let through = self.applied_through.get_mut(&(id, group)).expect("booted");
        assert!(index >= *through, "seed {seed}: node {id} went back to a snapshot at {index} from {through}");
        *through = index;
        self.fifo_applied.retain(|&(node, _, g), _| node != id || g != group);
        for (_, value) in self.committed_values.range((group, 0)..=(group, index)) {
            if let Some(&(conn, write_group, number)) = self.fifo.get(value) {
                let last = self.fifo_applied.entry((id, conn, write_group)).or_insert(0);
                *last = (*last).max(number);
            }
        }
        self.shown_changed.insert(id);
        self.note(|| format!("node {id} group {group} at the snapshot after index {index}"));
    }

    /// One order across groups, as a reader of `id` sees it: for every register value the
    /// node shows, every write its client was answered before sending it (through the same
    /// node) is visible too (the register shows that write or a later one).
    fn check_prefix(&mut self, id: NodeId) {
        // What a node shows changes only when it applies a register write (or replays). A
        // node behind an installed snapshot in another group serves nobody: looked at once it
        // has caught up.
        if !self.nodes.get(&id).is_some_and(Node::current) {
            return;
        }
        if self.txn_applied.remove(&id) {
            self.check_multis(id);
        }
        if !self.shown_changed.remove(&id) {
            return;
        }
        let shown: BTreeMap<u64, Option<(u32, Zxid)>> = (0..KEYS).map(|key| (key, self.read_stat(id, key))).collect();
        for (key, value) in &shown {
            let Some((value, _)) = value else { continue };
            let Some((_, before)) = self.written.get(value) else { continue };
            for (earlier_key, (earlier_value, earlier_zxid)) in before {
                let visible = shown[earlier_key].is_some_and(|(_, zxid)| zxid >= *earlier_zxid);
                assert!(
                    visible,
                    "seed {}: node {id} shows /k{key} = {value} but not /k{earlier_key} = {earlier_value} \
                     (zxid {earlier_zxid:#x}) written and answered before it; it shows {:?}",
                    self.seed, shown[earlier_key]
                );
            }
        }
    }

    /// A node crashes and restarts from its disks; what was on its way to it is lost, and its
    /// clients get no answer.
    fn crash(&mut self, id: NodeId) {
        self.crashes += 1;
        let node = self.nodes.remove(&id).expect("node exists");
        self.snapshots_taken += node.snapshots_taken;
        self.snapshots_installed += node.snapshots_installed;
        for request in node.clients() {
            self.abandon(request);
        }
        let lost: Vec<Frame> = self.network.extract_if(.., |f| f.to == id || f.from == id).collect();
        for frame in &lost {
            self.lose(frame);
        }
        // The kernel closes a dead process's connections: every peer sees its links with it end.
        for peer in self.nodes.values_mut() {
            peer.lost_with(id);
        }
        self.paused.remove(&id);
        self.stopping.remove(&id);
        for client in self.session_clients.iter_mut().filter(|c| c.node == id) {
            client.connected = false;
            client.reattach = None;
            client.handshake.clear();
            client.handshake_rest.clear();
            client.next_at = client.next_at.min(self.now + 100);
        }
        // A multi's wait for its decision was on the node too.
        let multis: Vec<u32> = self.multi_clients.iter().filter(|c| c.node == id).filter_map(|c| c.current).collect();
        for value in multis {
            self.multi_lost(value, "its node crashed");
        }
        // Its clients' connections broke: what they send next goes on a new connection.
        let clients: Vec<usize> = (0..CLIENTS).filter(|&c| self.clients[c].node == id).collect();
        for client in clients {
            self.connection_lost(client);
        }
        self.boot(id, node.groups.into_iter().map(|g| g.disk).collect());
        self.note(|| format!("node {id} restarted from its disks"));
    }

    /// The client gets no answer (given up, or its node crashed): its connection is lost.
    fn abandon(&mut self, request: ClientId) {
        if let Some(&value) = self.multi_requests.get(&request) {
            self.multi_lost(value, "its node crashed");
            return;
        }
        if let Some(flight) = self.requests.remove(&request) {
            if self.clients[flight.client].conn == flight.conn {
                self.connection_lost(flight.client);
            }
        }
    }

    /// ConnectionLoss: the client stops waiting for what it sent and connects again.
    fn connection_lost(&mut self, client: usize) {
        let in_flight = std::mem::take(&mut self.clients[client].in_flight);
        for request in in_flight {
            self.requests.remove(&request);
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let client = &mut self.clients[client];
        client.conn = conn;
        client.writes_sent.clear();
        client.answered.clear();
    }

    /// A client whose connection to `id` can take a request for `group` now, if any: one
    /// connected there with room in its pipeline, else an idle one (connecting to `id`).
    fn client_for(&mut self, id: NodeId, group: usize) -> Option<usize> {
        let pipeline = self.pipeline;
        let open =
            |c: &Client| !c.in_flight.is_empty() && c.node == id && c.group == group && c.in_flight.len() < pipeline;
        if let Some(client) = self.clients.iter().position(open) {
            self.pipelined += 1;
            return Some(client);
        }
        let client = self.clients.iter().position(|c| c.in_flight.is_empty())?;
        if self.clients[client].node != id {
            self.connection_lost(client);
            self.clients[client].node = id;
        }
        self.clients[client].group = group;
        Some(client)
    }

    fn answer(&mut self, id: NodeId, answer: Answer) {
        let request = match answer {
            Answer::Write { client, .. } | Answer::Synced { client } | Answer::Abandoned { client } => client,
        };
        let opened = matches!(answer, Answer::Write { result: Ok(_), .. });
        if self.handshake_answer(id, request, opened) {
            return;
        }
        if self.reattach_answer(id, request, matches!(answer, Answer::Synced { .. })) {
            return;
        }
        if self.move_answer(id, request, &answer) {
            return;
        }
        if self.multi_answer(id, request, &answer) {
            return;
        }
        if matches!(answer, Answer::Synced { .. }) && self.park_if_held(id, request) {
            return;
        }
        let Some(flight) = self.requests.remove(&request) else { return };
        assert_eq!(flight.node, id, "answered by the node that took the request");
        self.clients[flight.client].in_flight.remove(&request);
        let now = self.now;
        let seed = self.seed;
        match answer {
            Answer::Abandoned { .. } => {
                self.note(|| format!("request {request} abandoned by node {id}"));
                self.connection_lost(flight.client);
            }
            Answer::Write { result, .. } => {
                self.note(|| format!("request {request}: {result:?}"));
                if let Some((key, op)) = flight.recorded {
                    let stat = match result {
                        Ok(WriteResult::Stat(stat)) => stat,
                        other => panic!("seed {seed}: a setData of /k{key} answered {other:?}"),
                    };
                    let history = &mut self.history.get_mut(&key).expect("recorded")[op];
                    history.answer = Some(now);
                    let Action::Write(value) = history.action else { unreachable!("a write's history op") };
                    self.clients[flight.client].answered.insert(key, (value, stat.mzxid));
                    self.answered += 1;
                }
            }
            Answer::Synced { .. } => {
                let (key, op) = flight.recorded.expect("syncs are recorded reads");
                let value = self.read_stat(id, key).map(|(value, _)| value);
                self.note(|| format!("request {request}: /k{key} read {value:?} on node {id}"));
                let slot = &mut self.history.get_mut(&key).expect("recorded")[op];
                slot.action = Action::Read(value);
                slot.answer = Some(now);
                self.answered += 1;
            }
        }
    }

    /// getData of /k`key` from `id`'s replica: its value and mzxid.
    fn read_stat(&mut self, id: NodeId, key: u64) -> Option<(u32, Zxid)> {
        let caller = Caller { session: 0, conn: 0, auth: &[] };
        let op = ReadOp::GetData { path: format!("/k{key}"), watch: false };
        let group = self.group_of(key);
        let (result, _) = self.node(id).groups[group].shard.read(caller, &op);
        match result {
            Ok(ReadResult::Data { data, stat }) => {
                data.map(|d| (u32::from_be_bytes(d.as_slice().try_into().expect("4-byte values")), stat.mzxid))
            }
            // Before the bootstrap created it.
            Err(engine::error::ZkError::NoNode) => None,
            other => panic!("seed {}: getData /k{key} on node {id}: {other:?}", self.seed),
        }
    }

    /// `client` sends `command` (None: sync then read `key`) to `group` of node `id`.
    fn request(
        &mut self,
        client: usize,
        id: NodeId,
        group: usize,
        command: Option<Command>,
        recorded: Option<(u64, Action<u32>)>,
    ) {
        let request = self.next_request;
        self.next_request += 1;
        let recorded = recorded.map(|(key, action)| {
            let ops = self.history.entry(key).or_default();
            ops.push(Op { call: self.now, answer: None, action });
            (key, ops.len() - 1)
        });
        let conn = self.clients[client].conn;
        self.clients[client].in_flight.insert(request);
        self.requests.insert(request, InFlight { client, conn, node: id, called: self.now, recorded });
        self.note(|| format!("request {request} to node {id} g{group} on connection {conn}: {command:?} {recorded:?}"));
        self.node(id).request(SimRequest { id: request, conn }, group, command);
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
        let group = self.group_of(key);
        let Some(client) = self.client_for(id, group) else { return };
        // What this client was answered on this connection before: a reader that sees this
        // write must see those.
        let mut before = self.clients[client].answered.clone();
        before.remove(&key);
        if before.keys().any(|&k| self.group_of(k) != group) {
            self.ordered_writes += 1;
        }
        self.written.insert(value, (key, before));
        let Client { conn, writes_sent, .. } = &mut self.clients[client];
        let sent = writes_sent.entry(group).or_insert(0);
        *sent += 1;
        self.fifo.insert(value, (*conn, group, *sent));
        self.request(client, id, group, Some(command), Some((key, Action::Write(value))));
    }

    fn sync_read(&mut self, id: NodeId, key: u64) {
        let group = self.group_of(key);
        let Some(client) = self.client_for(id, group) else { return };
        self.request(client, id, group, None, Some((key, Action::Read(None))));
    }

    /// Session traffic outside the histories, for the state machine's agreement checks:
    /// sessions opened and closed, ephemerals, sequential nodes (all in shard 0).
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
        let Some(client) = self.client_for(id, 0) else { return };
        self.request(client, id, 0, Some(command), None);
    }

    /// A multi across groups from `id`, if a multi client is free: in two groups or all of
    /// them (the first op's group coordinates), a register write of a new value and a marker
    /// node in each; a quarter also check /s at version 1, which it never reaches:
    /// those abort.
    fn multi(&mut self, id: NodeId) {
        let Some(client) = self.multi_clients.iter().position(|c| c.current.is_none()) else { return };
        if self.multi_clients[client].node != id {
            self.multi_clients[client].conn = self.next_conn;
            self.next_conn += 1;
            self.multi_clients[client].node = id;
        }
        let value = self.next_value;
        self.next_value += 1;
        let mut groups: Vec<usize> = (0..self.groups()).collect();
        if groups.len() > 2 && self.multi_rng.below(2) == 0 {
            groups.remove(self.multi_rng.below(groups.len() as u64) as usize);
        }
        if self.multi_rng.below(2) == 0 {
            groups.reverse();
        }
        let (mut ops, mut keys) = (Vec::new(), Vec::new());
        for &group in &groups {
            let in_group: Vec<u64> = (0..KEYS).filter(|&k| self.group_of(k) == group).collect();
            let key = in_group[self.multi_rng.below(in_group.len() as u64) as usize];
            keys.push(key);
            let shard = ShardId::try_from(group).expect("few groups");
            let data = Some(value.to_be_bytes().to_vec());
            ops.push((
                shard,
                MultiOp::SetData(SetDataOp { path: format!("/k{key}"), data, version: -1, auth: Vec::new() }),
            ));
            ops.push((shard, MultiOp::Create(plain_create(marker_path(client, value)))));
        }
        if groups.contains(&0) && self.multi_rng.below(4) == 0 {
            ops.push((0, MultiOp::Check { path: "/s".to_string(), version: 1 }));
        }
        let multi = Multi {
            client,
            ops,
            keys,
            groups,
            called: self.now,
            attempt: 0,
            waiting: BTreeSet::new(),
            outcome: None,
            state: MultiState::InFlight,
        };
        self.multis.insert(value, multi);
        self.multi_clients[client].current = Some(value);
        self.multi_try(value);
    }

    /// One try of multi `value`: a prepare to each of its groups and the wait for the decision
    /// at the coordinator's, at once (`Conn::txn_parts`; a new id per try).
    fn multi_try(&mut self, value: u32) {
        let multi = &self.multis[&value];
        let MultiClient { conn, node, .. } = self.multi_clients[multi.client];
        self.next_txn += 1;
        let txn = TxnId { node, serial: self.next_txn };
        // Group g holds shard g alone here.
        let prepares = engine::txn::prepares(txn, &multi.ops, |shard| shard, 0, &[]);
        let coordinator = usize::from(prepares[0].1.coordinator);
        self.note(|| format!("multi {value} try {} as {txn:?} through node {node}", multi.attempt));
        let mut waiting = BTreeSet::new();
        for (group, prepare) in prepares {
            let request = self.next_request;
            self.next_request += 1;
            waiting.insert(request);
            self.multi_requests.insert(request, value);
            self.node(node).request(
                SimRequest { id: request, conn },
                usize::from(group),
                Some(Command::TxnPrepare(prepare)),
            );
        }
        let request = self.next_request;
        self.next_request += 1;
        waiting.insert(request);
        self.multi_requests.insert(request, value);
        let multi = self.multis.get_mut(&value).expect("in flight");
        multi.waiting = waiting;
        multi.outcome = None;
        let (mut answers, instant) = (Vec::new(), self.instant());
        self.node(node).await_txn(SimRequest { id: request, conn }, coordinator, txn, instant, &mut answers);
        for answer in answers {
            self.answer(node, answer);
        }
        self.process(node);
    }

    /// An answer to a part of a multi's try; once every part answered, the multi is done or
    /// tried again (`Conn::txn_step`). False if `request` is not a multi's.
    fn multi_answer(&mut self, id: NodeId, request: ClientId, answer: &Answer) -> bool {
        let Some(value) = self.multi_requests.remove(&request) else { return false };
        let seed = self.seed;
        let multi = self.multis.get_mut(&value).expect("multis are kept");
        if multi.state != MultiState::InFlight || !multi.waiting.remove(&request) {
            return true;
        }
        assert_eq!(self.multi_clients[multi.client].node, id, "seed {seed}: multi {value} answered by another node");
        match answer {
            Answer::Abandoned { .. } => {
                self.multi_lost(value, "a part was abandoned");
                return true;
            }
            Answer::Write { result: Ok(WriteResult::Txn(TxnApplied::Decided(outcome))), .. } => {
                multi.outcome = Some(*outcome)
            }
            Answer::Write { result: Ok(WriteResult::Txn(TxnApplied::Voted { .. })), .. } => {}
            other => panic!("seed {seed}: a part of multi {value} was answered {other:?}"),
        }
        if !multi.waiting.is_empty() {
            return true;
        }
        let outcome = multi.outcome.expect("the decision is one of the parts");
        let checks_s = multi.ops.iter().position(|(_, op)| matches!(op, MultiOp::Check { .. }));
        self.note(|| format!("multi {value}: {outcome:?}"));
        let multi = self.multis.get_mut(&value).expect("multis are kept");
        match outcome {
            TxnOutcome::Commit => {
                assert_eq!(checks_s, None, "seed {seed}: multi {value} committed past a check that cannot hold");
                multi.state = MultiState::Committed;
                let (call, now) = (multi.called, self.now);
                for key in multi.keys.clone() {
                    let op = Op { call, answer: Some(now), action: Action::Write(value) };
                    self.history.entry(key).or_default().push(op);
                }
                self.multi_done(value);
            }
            TxnOutcome::Abort { index, error } => {
                let expected = checks_s.map(|index| (index as u32, engine::error::ZkError::BadVersion.code()));
                assert_eq!(Some((index, error)), expected, "seed {seed}: multi {value} aborted at another op");
                multi.state = MultiState::NotApplied;
                self.multi_done(value);
            }
            TxnOutcome::Retry if multi.attempt + 1 < MULTI_ATTEMPTS => {
                // Sent at the next step: this answer may come from the middle of a turn.
                multi.attempt += 1;
                self.multis_retried += 1;
                self.multi_retries.push(value);
            }
            TxnOutcome::Retry => {
                multi.state = MultiState::NotApplied;
                self.multi_done(value);
            }
        }
        true
    }

    /// The multi's client lost its connection or gave up waiting: the multi may or may not
    /// apply (but whole or not at all); its register writes are maybes in the histories.
    fn multi_lost(&mut self, value: u32, why: &str) {
        let multi = self.multis.get_mut(&value).expect("multis are kept");
        if multi.state != MultiState::InFlight {
            return;
        }
        multi.state = MultiState::Unknown;
        let call = multi.called;
        for key in multi.keys.clone() {
            self.history.entry(key).or_default().push(Op { call, answer: None, action: Action::Write(value) });
        }
        self.note(|| format!("multi {value} lost: {why}"));
        let client = self.multis[&value].client;
        self.multi_clients[client].conn = self.next_conn;
        self.next_conn += 1;
        self.multi_done(value);
    }

    fn multi_done(&mut self, value: u32) {
        let multi = self.multis.get_mut(&value).expect("multis are kept");
        for request in std::mem::take(&mut multi.waiting) {
            self.multi_requests.remove(&request);
        }
        self.multi_clients[multi.client].current = None;
    }

    /// `Core::park`: a read of a register a multi across groups holds for a change waits for
    /// that multi's finish (answered again then). True if it waits.
    fn park_if_held(&mut self, id: NodeId, request: ClientId) -> bool {
        let Some(flight) = self.requests.get(&request) else { return false };
        let (Some((key, _)), conn) = (flight.recorded, flight.conn) else { return false };
        let group = self.group_of(key);
        let node = self.node(id);
        let Some(txn) = node.groups[group].shard.holder_of(&format!("/k{key}")) else { return false };
        node.park_read(group, txn, SimRequest { id: request, conn });
        self.note(|| format!("request {request}: the read of /k{key} waits for {txn:?} on node {id}"));
        true
    }

    /// No node shows a multi across groups in some of its groups and not in others (a group
    /// where its marker is held by the multi shows nothing yet: reads wait), and none shows
    /// one that was not applied.
    fn check_multis(&self, id: NodeId) {
        let node = &self.nodes[&id];
        for (value, multi) in &self.multis {
            let path = marker_path(multi.client, *value);
            let (mut present, mut absent) = (Vec::new(), Vec::new());
            for &group in &multi.groups {
                let shard = &node.groups[group].shard;
                if shard.holder_of(&path).is_some() {
                    continue;
                }
                match shard.node(&path).is_some() {
                    true => present.push(group),
                    false => absent.push(group),
                }
            }
            assert!(
                present.is_empty() || absent.is_empty(),
                "seed {}: node {id} shows multi {value} in groups {present:?} and not in groups {absent:?}; the node: {}",
                self.seed,
                node.txn_report()
            );
            assert!(
                present.is_empty() || multi.state != MultiState::NotApplied,
                "seed {}: node {id} shows multi {value}, which its client was told did not apply",
                self.seed
            );
        }
    }

    /// After healing: every multi across groups is decided and finished on every node (no
    /// path held, none prepared), from the logs and the drivers' rounds alone.
    fn multis_settle_everywhere(&mut self) {
        for _ in 0..100 {
            if self.nodes.values().all(|node| node.txns_in_doubt().is_empty()) {
                return;
            }
            self.tick_all_every(10, 10);
        }
        let doubt: Vec<_> = self.nodes.iter().map(|(id, node)| format!("node {id}: {}", node.txn_report())).collect();
        panic!("seed {}: multis across groups still in doubt after healing:\n{}", self.seed, doubt.join("\n"));
    }

    /// Once settled: a committed multi is whole on every node, one not applied is absent
    /// everywhere, one of unknown outcome is one or the other, the same on every node.
    fn check_multis_settled(&self) {
        for (value, multi) in &self.multis {
            let path = &marker_path(multi.client, *value);
            let shown: BTreeSet<bool> = self
                .nodes
                .values()
                .flat_map(|node| multi.groups.iter().map(move |&g| node.groups[g].shard.node(path).is_some()))
                .collect();
            let expected = match multi.state {
                MultiState::Committed => Some(true),
                MultiState::NotApplied => Some(false),
                _ => None,
            };
            assert!(
                shown.len() == 1 && expected.is_none_or(|e| shown.contains(&e)),
                "seed {}: multi {value} ({:?}) shows {shown:?} across nodes and groups",
                self.seed,
                multi.state
            );
        }
    }

    fn tick(&mut self, id: NodeId) {
        if !self.paused.contains_key(&id) {
            self.node(id).tick();
            self.process(id);
            let instant = self.instant();
            self.node(id).send_snapshots(instant);
            self.send_outbox(id);
        }
    }

    /// One network event: a random frame is dropped, duplicated, delayed or delivered; frames
    /// to a paused node wait, frames over a cut link are lost.
    fn network_step(&mut self) {
        if self.network.is_empty() {
            return;
        }
        let at = self.rng.below(self.network.len() as u64) as usize;
        let frame = self.take_frame(at);
        if self.paused.contains_key(&frame.to) {
            self.network.push(frame);
            return;
        }
        if self.link_down(frame.from, frame.to) {
            self.lose(&frame);
            return;
        }
        let fault = match self.calm() || self.scripted {
            true => 20,
            false => self.rng.below(20),
        };
        match fault {
            0 => self.lose(&frame),
            1 if frame.raft => {
                let (from, to, group, bytes) = (frame.from, frame.to, frame.group, frame.bytes.clone());
                self.frames_sent += 1;
                self.network.push(Frame { from, to, group, bytes, raft: true, sent: self.frames_sent });
                self.deliver(frame);
            }
            // The receiver crashes while carrying out what the frame made it do (a follower
            // in the middle of appending, a candidate in the middle of voting).
            2 if self.rng.below(5) == 0 && !self.isolated.contains_key(&frame.to) => {
                let (to, group, at) = (frame.to, frame.group, self.crash_point());
                self.hold = true;
                self.deliver(frame);
                self.hold = false;
                self.turns(to, group, Some(at));
                self.process(to);
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
            let frame = self.take_frame(0);
            if self.link_down(frame.from, frame.to) {
                self.lose(&frame);
            } else {
                self.deliver(frame);
            }
        }
        panic!("seed {}: the cluster never settled", self.seed);
    }

    /// The node that leads `group` in the highest term.
    fn leader(&self, group: usize) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.groups[group].driver.raft().role() == Role::Leader)
            .max_by_key(|(_, n)| n.groups[group].driver.raft().term())
            .map(|(&id, _)| id)
    }

    fn believers(&self, group: usize) -> Vec<NodeId> {
        let leads = |n: &Node| n.groups[group].driver.raft().role() == Role::Leader;
        self.nodes.iter().filter(|(_, n)| leads(n)).map(|(&id, _)| id).collect()
    }

    /// Ticks every node `ticks` times, settling the network after each round.
    fn tick_all(&mut self, ticks: u32) {
        self.tick_all_every(ticks, 1);
    }

    /// `tick_all` with `steps` of every clock between two Raft ticks.
    fn tick_all_every(&mut self, ticks: u32, steps: u64) {
        for _ in 0..ticks {
            self.now += steps;
            for id in 1..=self.n {
                self.tick(id);
                self.session_duties(id);
            }
            self.session_clients_step();
            self.stabilize();
        }
    }

    /// What each node's cores do on their own timers: lease rounds, expiry rounds, finishing
    /// closes (a paused node does nothing).
    fn session_duties(&mut self, id: NodeId) {
        if self.paused.contains_key(&id) || self.hold {
            return;
        }
        let instant = self.instant();
        let now = self.now;
        let due = self.duties_due.entry(id).or_insert([id * 7, id * 37, id * 59, id * 83]);
        let mut at = |duty: usize, every: u64| {
            let is_due = now >= due[duty];
            if is_due {
                due[duty] = now + every;
            }
            is_due
        };
        let (lease, expiry, closes) = (at(0, LEASE_ROUND_STEPS), at(1, EXPIRY_ROUND_STEPS), at(2, CLOSES_ROUND_STEPS));
        let txns = at(3, TXN_ROUND_STEPS);
        if !(lease || expiry || closes || txns) {
            return;
        }
        if txns {
            let mut answers = Vec::new();
            self.node(id).txn_round(instant, &mut answers);
            for answer in answers {
                self.answer(id, answer);
            }
        }
        if lease {
            let mut out = Vec::new();
            self.node(id).lease_round(id, instant, &mut out);
            for (group, to, message) in out {
                self.send(id, to, group, &message);
            }
            let contact: Vec<Option<u128>> = self.nodes[&id]
                .sessions
                .contact
                .iter()
                .map(|c| c.map(|at| instant.duration_since(at).as_millis()))
                .collect();
            self.note(|| format!("node {id} lease round: contact ages {contact:?}"));
            self.note_closed(id);
        }
        if expiry {
            self.node(id).expiry_round(instant);
            self.note_closed(id);
        }
        if closes {
            self.node(id).finish_closes(instant);
        }
        self.process(id);
    }

    /// Connections the node closed: their session clients learn it at their next ping.
    fn note_closed(&mut self, id: NodeId) {
        let closed = std::mem::take(&mut self.node(id).sessions.closed);
        for (conn, reason) in closed {
            self.note(|| format!("node {id} closes connection {conn}: {reason}"));
        }
    }

    /// Session clients ping, or open a new session after losing one.
    fn session_clients_step(&mut self) {
        for c in 0..SESSION_CLIENTS {
            if self.now < self.session_clients[c].next_at || !self.sessions_open {
                continue;
            }
            let client = &mut self.session_clients[c];
            if client.connected {
                self.ping(c);
            } else if !client.handshake.is_empty() {
                client.handshake.clear();
                client.handshake_rest.clear();
                client.next_at = self.now + 100;
            } else if client.reattach.is_some() {
                self.reattach_step(c);
            } else if client.session != 0 && self.now < client.alive_at + client.timeout_ms as u64 {
                self.start_reattach(c);
            } else if self.sessions_open {
                self.open_session(c);
            }
        }
    }

    fn open_session(&mut self, c: usize) {
        let id = match self.sessions_on {
            Some(id) => id,
            None => 1 + self.rng.below(self.n),
        };
        self.session_clients[c].next_at = self.now + 100;
        if self.paused.contains_key(&id) {
            return;
        }
        let (session, conn) = (self.next_client_session, self.next_conn);
        self.next_client_session += 1;
        self.next_conn += 1;
        let timeout_ms = 1500 + self.rng.below(1500) as i32;
        let instant = self.instant();
        let mut ids: Vec<ClientId> = (0..self.groups()).map(|g| self.next_request + g).collect();
        if !self.node(id).open_session(conn, session, timeout_ms, instant, ids[0]) {
            self.note(|| format!("node {id} refuses a handshake: not serving"));
            return;
        }
        self.next_request += ids.len();
        self.note(|| format!("session client {c} opens session {session} on node {id} (connection {conn})"));
        let handshake_rest = ids.split_off(1);
        let handshake = ids.into_iter().collect();
        // The client gives the handshake up after this long.
        let next_at = self.now + 3000;
        self.session_clients[c] = SessionClient {
            session,
            node: id,
            conn,
            connected: false,
            handshake,
            handshake_rest,
            next_at,
            timeout_ms,
            alive_at: self.now,
            reattach: None,
            renewed_at: None,
            moves: BTreeMap::new(),
            epochs: vec![0; self.groups()],
        };
        self.process(id);
    }

    /// An answer to a session client's handshake: once every group opened the session, the
    /// client is connected, pings, and creates its ephemerals; a failed handshake leaves the
    /// session to expire (ConnectionLoss: the client opens another later).
    fn handshake_answer(&mut self, id: NodeId, request: ClientId, opened: bool) -> bool {
        let Some(c) = self.session_clients.iter().position(|c| c.handshake.contains(&request)) else { return false };
        self.note(|| format!("session client {c}: handshake part {request} answered (opened: {opened})"));
        let client = &mut self.session_clients[c];
        client.handshake.remove(&request);
        if !opened {
            client.handshake.clear();
            client.handshake_rest.clear();
            client.next_at = self.now + 100;
            return true;
        }
        if client.handshake.is_empty() && !client.handshake_rest.is_empty() {
            let rest = std::mem::take(&mut client.handshake_rest);
            client.handshake.extend(rest.iter().copied());
            let (conn, session, timeout_ms) = (client.conn, client.session, client.timeout_ms);
            self.node(id).open_in_other_groups(conn, session, timeout_ms, &rest);
            return true;
        }
        if client.handshake.is_empty() && client.node == id {
            client.connected = true;
            client.alive_at = self.now;
            client.next_at = self.now + client.timeout_ms as u64 / 3;
            let (conn, session) = (client.conn, client.session);
            self.node(id).create_ephemerals(conn, session);
        }
        true
    }

    /// A client that lost its connection reattaches its session through a random node, as
    /// ZooKeeper clients do: syncs of every group, then the check and the renewal.
    fn start_reattach(&mut self, c: usize) {
        let id = 1 + self.rng.below(self.n);
        self.session_clients[c].next_at = self.now + 50;
        if self.paused.contains_key(&id) || !self.sessions_open {
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        let ids: Vec<ClientId> = (0..self.groups()).map(|g| self.next_request + g).collect();
        if !self.node(id).reattach_syncs(conn, &ids) {
            return;
        }
        self.next_request += ids.len();
        let session = self.session_clients[c].session;
        self.note(|| format!("session client {c} reattaches session {session} on node {id} (connection {conn})"));
        let client = &mut self.session_clients[c];
        (client.node, client.conn) = (id, conn);
        client.reattach = Some((ids.into_iter().collect(), self.now));
        client.renewed_at = None;
        client.moves.clear();
        self.process(id);
    }

    /// A reattach waiting for its renewal: once the renewing probe is answered, the session
    /// moves to the new connection (every group at once: `Conn::move_session_here`), and
    /// the reattach is granted if the renewal's lease still holds. **Checked**: never granted
    /// after the session's close committed.
    fn reattach_step(&mut self, c: usize) {
        let SessionClient { session, node, conn, timeout_ms, .. } = self.session_clients[c];
        let Some((syncs, since)) = self.session_clients[c].reattach.clone() else { return };
        let failed = |world: &mut World| {
            world.note(|| format!("session client {c}: reattach of {session} on node {node} failed"));
            let client = &mut world.session_clients[c];
            client.reattach = None;
            client.next_at = world.now + 50;
        };
        if self.now > since + REATTACH_WAIT_STEPS || self.paused.contains_key(&node) {
            return failed(self);
        }
        if !syncs.is_empty() {
            return;
        }
        let Some(renewed_at) = self.session_clients[c].renewed_at else {
            let given_up = std::mem::take(&mut self.node(node).sessions.renewals_given_up);
            if given_up.contains(&conn) {
                return failed(self);
            }
            let Some(renewed_at) = self.node(node).reattach_renewed(conn) else { return };
            self.session_clients[c].renewed_at = Some(renewed_at);
            self.send_moves(c);
            return;
        };
        if !self.session_clients[c].moves.is_empty() {
            return;
        }
        let instant = self.instant();
        if !self.node(node).reattach_grant(conn, session, timeout_ms, renewed_at, instant) {
            return failed(self);
        }
        if let Some(&closed_at) = self.session_closed_at.get(&session) {
            panic!(
                "seed {}: node {node} granted a reattach of session {session} at step {}, after its close committed at step {closed_at}",
                self.seed, self.now
            );
        }
        self.check(node);
        let applied_through = (0..self.groups()).map(|group| self.applied_through[&(node, group)]).collect();
        self.grants.entry(session).or_default().push((self.now, applied_through));
        self.note(|| format!("session client {c}: session {session} reattached on node {node}"));
        self.reattaches += 1;
        let client = &mut self.session_clients[c];
        client.reattach = None;
        client.connected = true;
        client.alive_at = self.now;
        client.next_at = self.now + timeout_ms as u64 / 3;
    }

    /// A reattach's moves of its session to the new connection, in every group at once.
    fn send_moves(&mut self, c: usize) {
        let SessionClient { session, node, conn, .. } = self.session_clients[c];
        for group in 0..self.groups() {
            let id = self.next_request;
            self.next_request += 1;
            self.session_clients[c].moves.insert(id, group);
            self.note(|| format!("session client {c}: request {id} moves {session} to connection {conn} in g{group}"));
            self.node(node).request(SimRequest { id, conn }, group, Some(Command::MoveSession { session }));
        }
        self.process(node);
    }

    /// An answer to a reattach's move: the connection's epoch in that group (its writes there
    /// carry it once granted); a move not applied fails the reattach.
    fn move_answer(&mut self, id: NodeId, request: ClientId, answer: &Answer) -> bool {
        let Some(c) = self.session_clients.iter().position(|c| c.moves.contains_key(&request)) else { return false };
        let group = self.session_clients[c].moves.remove(&request).expect("found");
        let client = &mut self.session_clients[c];
        if let Answer::Write { result: Ok(WriteResult::Moved(epoch)), .. } = answer {
            if client.node == id && client.reattach.is_some() {
                client.epochs[group] = *epoch;
                return true;
            }
        }
        self.note(|| format!("session client {c}: move {request} failed: {answer:?}"));
        let client = &mut self.session_clients[c];
        client.reattach = None;
        client.moves.clear();
        client.next_at = self.now + 50;
        true
    }

    /// **Checked**: no write a session client sent on a connection applies after the session
    /// moved to a newer one: its log index is below what the node that granted any later
    /// reattach had applied (SESSIONMOVED).
    fn check_session_write(&mut self, id: NodeId, write: u32, group: usize, index: Index) {
        let Some(&(session, sent_at)) = self.session_writes.get(&write) else { return };
        self.session_writes_applied += 1;
        self.session_writes_ok.insert(write);
        for (granted_at, applied_through) in self.grants.get(&session).into_iter().flatten() {
            assert!(
                *granted_at <= sent_at || index <= applied_through[group],
                "seed {}: node {id} applied write {write} of session {session} (sent at step {sent_at}) at index {index} of group {group}, after a reattach granted at step {granted_at} had applied through {}",
                self.seed,
                applied_through[group]
            );
        }
    }

    /// An answer to a reattach's sync: once every group synced, the check and the renewal.
    fn reattach_answer(&mut self, id: NodeId, request: ClientId, synced: bool) -> bool {
        let owner =
            self.session_clients.iter().position(|c| c.reattach.as_ref().is_some_and(|(s, _)| s.contains(&request)));
        let Some(c) = owner else { return false };
        let client = &mut self.session_clients[c];
        let (syncs, _) = client.reattach.as_mut().expect("found");
        syncs.remove(&request);
        if !synced || client.node != id {
            client.reattach = None;
            client.next_at = self.now + 50;
            return true;
        }
        if syncs.is_empty() {
            let (conn, session) = (client.conn, client.session);
            let (instant, mut out) = (self.instant(), Vec::new());
            let checked = self.node(id).reattach_check(id, conn, session, instant, &mut out);
            for (group, to, message) in out {
                self.send(id, to, group, &message);
            }
            if !checked {
                self.note(|| format!("session client {c}: node {id} refuses the reattach of {session}"));
                self.session_clients[c].reattach = None;
                self.session_clients[c].next_at = self.now + 50;
            }
            self.process(id);
        }
        true
    }

    /// A ping: a paused node does not answer (the client gives the connection up); a node
    /// answers only while the connection is open there. **Checked**: no ping of a session is
    /// answered after its close committed (the client is told before the majority expires it).
    fn ping(&mut self, c: usize) {
        let SessionClient { session, node, conn, timeout_ms, .. } = self.session_clients[c];
        let instant = self.instant();
        let answered = !self.paused.contains_key(&node) && self.node(node).ping(conn, instant);
        if !answered {
            self.note(|| format!("session client {c} lost session {session} on node {node}"));
            self.session_clients[c].connected = false;
            self.session_clients[c].next_at = self.now + 100;
            return;
        }
        if let Some(&closed_at) = self.session_closed_at.get(&session) {
            panic!(
                "seed {}: node {node} answered a ping of session {session} at step {}, after its close committed at step {closed_at}",
                self.seed, self.now
            );
        }
        self.pings_answered += 1;
        self.session_clients[c].alive_at = self.now;
        self.session_clients[c].next_at = self.now + timeout_ms as u64 / 3;
        let quiet =
            self.calm() && self.paused.is_empty() && self.isolated.is_empty() && !self.scripted && !self.converging;
        match self.rng.below(8) {
            0 | 1 if quiet => {
                // SIGSTOP between taking the write and handing it on, past the session's
                // timeout: the client reattaches elsewhere meanwhile, and the node forwards
                // the write when it resumes (ZOOKEEPER-710's shape).
                self.hold = true;
                self.session_write(c);
                self.hold = false;
                let until = self.now + timeout_ms as u64 + self.rng.below(1000);
                self.note(|| format!("node {node} pauses until {until} with a write of session {session}"));
                self.paused.insert(node, until);
            }
            0..=3 => self.session_write(c),
            _ => {}
        }
    }

    /// A session client writes on its connection (a sequential node in a random group), as
    /// `Conn` sends a client's write in a cluster: stamped with the connection's epoch.
    fn session_write(&mut self, c: usize) {
        let group = self.rng.below(self.groups() as u64) as usize;
        self.session_write_to(c, group);
    }

    /// Returns the write's number (its data).
    fn session_write_to(&mut self, c: usize, group: usize) -> u32 {
        let SessionClient { session, node, conn, .. } = self.session_clients[c];
        let epoch = self.session_clients[c].epochs[group];
        let write = self.next_value;
        self.next_value += 1;
        self.session_writes.insert(write, (session, self.now));
        let create = CreateOp {
            path: format!("/sw{session}-"),
            data: Some(write.to_be_bytes().to_vec()),
            acl: Acl::open_unsafe(),
            mode: CreateMode::PersistentSequential,
            ttl_ms: 0,
            session: 0,
            auth: Vec::new(),
        };
        let command = Command::OfConnection { session, epoch, write: ClientWrite::Create(create) };
        self.note(|| format!("session client {c} writes {write} to g{group} on connection {conn}"));
        self.node(node).request(SimRequest { id: 0, conn }, group, Some(command));
        self.process(node);
        write
    }

    /// Elects leaders and creates the registers and "/s" before any fault.
    fn bootstrap(&mut self) {
        // Ticks in lockstep can split a group's votes again and again: give every group time.
        for _ in 0..40 {
            self.tick_all(10);
            if (0..self.groups()).all(|group| self.leader(group).is_some()) {
                break;
            }
        }
        // Each multi client's markers go under its own node in every group: a create holds its
        // parent, so markers of "/" would hold every top-level create up.
        let markers = (0..MULTI_CLIENTS).flat_map(|c| (0..self.groups()).map(move |g| (marker_parent(c), g)));
        let paths =
            (0..KEYS).map(|k| (format!("/k{k}"), self.group_of(k))).chain([("/s".to_string(), 0)]).chain(markers);
        for (path, group) in paths.collect::<Vec<_>>() {
            let leader = self.leader(group).unwrap_or_else(|| panic!("seed {}: no first leader of {group}", self.seed));
            let client = self.client_for(leader, group).expect("idle clients at the start");
            self.request(client, leader, group, Some(Command::Create(plain_create(path))), None);
            self.stabilize();
        }
    }

    fn gave_up(&mut self) {
        let now = self.now;
        let late: Vec<u32> = self
            .multis
            .iter()
            .filter(|(_, m)| m.state == MultiState::InFlight && m.called + MULTI_TIMEOUT < now)
            .map(|(&value, _)| value)
            .collect();
        for value in late {
            self.multi_lost(value, "it timed out");
        }
        let late: Vec<ClientId> =
            self.requests.iter().filter(|(_, f)| f.called + CLIENT_TIMEOUT < now).map(|(&r, _)| r).collect();
        for request in late {
            self.note(|| format!("request {request} timed out"));
            self.abandon(request);
        }
    }

    /// Stopping nodes whose time is up exit and restart.
    fn stops_done(&mut self) {
        let done: Vec<NodeId> = self.stopping.iter().filter(|(_, &at)| at <= self.now).map(|(&id, _)| id).collect();
        for id in done {
            self.note(|| format!("node {id} exits after SIGTERM and restarts"));
            self.crash(id);
        }
    }

    /// Frames from `from` to `to` are lost: the link is cut, or one end is isolated that way.
    fn link_down(&self, from: NodeId, to: NodeId) -> bool {
        let isolated = |id: NodeId, way: u64| self.isolated.get(&id).is_some_and(|&(_, w)| w == 0 || w == way);
        self.cut.contains(&(from, to)) || isolated(from, 1) || isolated(to, 2)
    }

    /// Storms and calms in turn: in a calm the schedule makes no new faults, as sessions need
    /// their leases confirmed for a while to stay connected and a stable leader to expire.
    fn calm(&self) -> bool {
        self.now % (STORM_STEPS + CALM_STEPS) >= STORM_STEPS
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
            for key in 0..KEYS {
                let group = self.group_of(key);
                if self.nodes[&id].groups[group].driver.raft().role() == Role::Leader {
                    self.sync_read(id, key);
                    break;
                }
            }
            self.process(id);
        }
        self.gave_up();
        for value in std::mem::take(&mut self.multi_retries) {
            if self.multis[&value].state == MultiState::InFlight {
                self.multi_try(value);
            }
        }
        self.stops_done();
        let now = self.now;
        self.isolated.retain(|_, &mut (until, _)| until > now);
        for id in 1..=self.n {
            self.session_duties(id);
        }
        self.session_clients_step();
        let n = self.n;
        if self.calm() && !self.cut.is_empty() {
            self.note(|| "calm: heal".to_string());
            self.cut.clear();
        }
        // Calm phases: no new faults (only ticks, deliveries and clients), but for now and then
        // the node of a connected session client cut off from all others, both ways or one
        // way, past session timeouts: a stable leader then expires the session.
        if self.scripted {
            match self.rng.below(100) {
                0..=29 => {
                    let id = 1 + self.rng.below(n);
                    self.tick(id);
                }
                _ => {
                    for _ in 0..1 + self.rng.below(4 * self.groups() as u64) {
                        self.network_step();
                    }
                }
            }
            return;
        }
        if self.calm() && self.isolated.is_empty() && self.rng.below(200) == 0 {
            if let Some(id) = self.session_clients.iter().find(|c| c.connected).map(|c| c.node) {
                let (until, way) = (self.now + 2500 + self.rng.below(3000), self.rng.below(3));
                self.note(|| format!("node {id} isolated (way {way}) until {until}"));
                self.isolated.insert(id, (until, way));
            }
        }
        let event = match self.rng.below(100) {
            85..=87 | 93..=98 if self.calm() => 30,
            event => event,
        };
        match event {
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
                for _ in 0..1 + self.rng.below(4 * self.groups() as u64) {
                    self.network_step();
                }
            }
            65..=84 => {
                let key = self.rng.below(KEYS);
                let believers = self.believers(self.group_of(key));
                let id = if believers.is_empty() || self.rng.below(2) == 0 {
                    1 + self.rng.below(n)
                } else {
                    believers[self.rng.below(believers.len() as u64) as usize]
                };
                match self.rng.below(10) {
                    0..=3 => self.write(id, key),
                    4..=7 => self.sync_read(id, key),
                    8 if self.groups() > 1 => self.multi(id),
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
                // An isolated node lives through its isolation (its sessions' fate is the point).
                let id = 1 + self.rng.below(n);
                if !self.isolated.contains_key(&id) {
                    self.note(|| format!("node {id} crashes"));
                    self.crash(id);
                }
            }
            94..=95 => {
                // A leader takes a write and crashes while carrying out the Ready it makes.
                let id = 1 + self.rng.below(n);
                let key = self.rng.below(KEYS);
                let group = self.group_of(key);
                let leads = self.nodes[&id].groups[group].driver.raft().role() == Role::Leader;
                let quiet = self.paused.contains_key(&id) || self.isolated.contains_key(&id);
                if leads && !quiet && self.rng.below(3) == 0 {
                    self.hold = true;
                    self.write(id, key);
                    self.hold = false;
                    let at = self.crash_point();
                    self.turns(id, group, Some(at));
                    self.process(id);
                }
            }
            96..=97 if self.rng.below(4) == 0 => {
                let id = 1 + self.rng.below(n);
                if self.isolated.contains_key(&id) {
                    return;
                }
                // Now and then past every session's timeout.
                let until = match self.rng.below(4) {
                    0 => self.now + 2000 + self.rng.below(4000),
                    _ => self.now + 50 + self.rng.below(300),
                };
                self.note(|| format!("node {id} pauses until {until}"));
                self.paused.insert(id, until);
            }
            93 if self.rng.below(3) == 0 => {
                // A node's wall clock steps (an operator, an NTP step), forward or back, by up
                // to a minute: zxid floors and entry times follow it; leases, timeouts and Raft
                // ticks run on the monotonic clock, which does not step.
                let id = 1 + self.rng.below(n);
                let jump_us = self.rng.below(120_000_000) as i64 - 60_000_000;
                self.note(|| format!("node {id}'s wall clock jumps by {jump_us} µs"));
                self.offsets_us[id as usize - 1] += jump_us;
                self.clock_jumps += 1;
            }
            93 | 96..=97 => {}
            _ => {
                // 98: SIGTERM to a node that leads a group: it hands its groups over, then
                // exits and restarts.
                let group = self.rng.below(self.groups() as u64) as usize;
                if let Some(leader) = self.leader(group) {
                    if !self.stopping.contains_key(&leader) && !self.isolated.contains_key(&leader) {
                        self.note(|| format!("node {leader} stops (SIGTERM)"));
                        self.stops += 1;
                        self.stopping.insert(leader, self.now + STOP_STEPS);
                        self.node(leader).stopping = true;
                        self.process(leader);
                    }
                }
            }
        }
    }

    /// Faults stop: every group must elect a leader, commit a last write everywhere and end
    /// with one state on every node, also after every node restarts from its disks.
    fn converge(&mut self) {
        self.converging = true;
        self.paused.clear();
        self.cut.clear();
        self.isolated.clear();
        let stopping: Vec<NodeId> = self.stopping.keys().copied().collect();
        for id in stopping {
            self.crash(id);
        }
        self.tick_all(80);
        for group in 0..self.groups() {
            let leader =
                self.leader(group).unwrap_or_else(|| panic!("seed {}: no leader of {group} after healing", self.seed));
            let key = (0..KEYS).find(|&k| self.group_of(k) == group).expect("a key per group");
            self.write(leader, key);
            self.stabilize();
        }
        let in_flight: Vec<u32> =
            self.multis.iter().filter(|(_, m)| m.state == MultiState::InFlight).map(|(&v, _)| v).collect();
        for value in in_flight {
            self.multi_lost(value, "the run ended");
        }
        self.multis_settle_everywhere();
        let lasts = self.caught_up("after healing");
        self.check_multis_settled();
        self.sessions_expire_everywhere();
        // Every node restarts from its disks: its replay is checked against the committed
        // sequence and the digests (`check`), and the cluster goes on from there.
        for id in 1..=self.n {
            self.crash(id);
        }
        self.tick_all(80);
        let lasts_again = self.caught_up("after the restarts");
        for (group, (last, again)) in lasts.iter().zip(&lasts_again).enumerate() {
            assert!(again > last, "seed {}: the new term's no-op did not commit in group {group}", self.seed);
        }
    }

    /// The session clients stop: every node must close their sessions in every shard, and
    /// with them their ephemerals (a closed session's ephemerals are gone in every group; none
    /// outlives its session once the cluster heals).
    fn sessions_expire_everywhere(&mut self) {
        self.sessions_open = false;
        for client in &mut self.session_clients {
            client.connected = false;
            client.reattach = None;
        }
        // Raft ticks every ten steps here, as in the schedule (not every step as `tick_all`).
        for _ in 0..100 {
            self.tick_all_every(10, 10);
            if self.open_client_sessions().is_empty() {
                return;
            }
        }
        panic!(
            "seed {}: sessions of clients gone for 10 s are still open (node, shard, session, ephemerals): {:?}",
            self.seed,
            self.open_client_sessions()
        );
    }

    /// Sessions of session clients still open in some shard of some node, with their
    /// ephemerals there.
    fn open_client_sessions(&self) -> Vec<(NodeId, usize, i64, usize)> {
        let mut open = Vec::new();
        for (&id, node) in &self.nodes {
            for (shard, group) in node.groups.iter().enumerate() {
                for (session, info) in group.shard.sessions() {
                    if session >= FIRST_CLIENT_SESSION {
                        open.push((id, shard, session, info.ephemerals.len()));
                    }
                }
            }
        }
        open
    }

    /// Ticks until every node has applied the same entries of every group (a leader handed
    /// back meanwhile commits one more no-op); the last index of each group.
    fn caught_up(&mut self, when: &str) -> Vec<Index> {
        for _ in 0..50 {
            self.tick_all(1);
            let lasts: Vec<Option<Index>> = (0..self.groups())
                .map(|group| {
                    let through: BTreeSet<Index> = (1..=self.n).map(|id| self.applied_through[&(id, group)]).collect();
                    (through.len() == 1).then(|| *through.first().expect("nodes"))
                })
                .collect();
            if lasts.iter().all(Option::is_some) {
                return lasts.into_iter().map(|last| last.expect("all")).collect();
            }
        }
        let through: Vec<_> = self.applied_through.iter().collect();
        panic!("seed {}: the nodes did not catch up {when}: applied through {through:?}", self.seed);
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
            committed: self.committed.iter().map(Vec::len).sum(),
            answered: self.answered,
            crashes: self.crashes,
            torn_bytes: self.nodes.values().flat_map(|n| &n.groups).map(|g| g.disk.torn_cut).sum(),
            multi_group: usize::from(self.groups() > 1),
            ordered_writes: self.ordered_writes,
            stops: self.stops,
            pipelined: self.pipelined,
            pings_answered: self.pings_answered,
            sessions_closed: self.session_closed_at.keys().filter(|&&s| s >= FIRST_CLIENT_SESSION).count(),
            reattaches: self.reattaches,
            session_writes_applied: self.session_writes_applied,
            clock_jumps: self.clock_jumps,
            snapshots_taken: self.snapshots_taken + self.nodes.values().map(|n| n.snapshots_taken).sum::<u64>(),
            snapshots_installed: self.snapshots_installed
                + self.nodes.values().map(|n| n.snapshots_installed).sum::<u64>(),
            started_from_snapshot: self.started_from_snapshot,
            batches_released: self.nodes.values().flat_map(|n| &n.groups).map(|g| g.disk.released).sum(),
            multis_committed: self.multis.values().filter(|m| m.state == MultiState::Committed).count(),
            multis_aborted: self
                .multis
                .values()
                .filter(|m| matches!(m.outcome, Some(TxnOutcome::Abort { .. })))
                .count(),
            multis_retried: self.multis_retried,
            multis_unknown: self.multis.values().filter(|m| m.state == MultiState::Unknown).count(),
        }
    }
}

/// The scenario of ZOOKEEPER-710, scripted: a session client connected to node A writes to a
/// group A does not lead, and A is paused (SIGSTOP) after taking the write and before handing
/// it on, for longer than the session's timeout. The client reattaches through another node
/// meanwhile; when A resumes it forwards the write. **Checked** (`check_session_write`): it
/// never applies after the reattach was granted.
pub fn run_moved_session_scenario(seed: u64, trace: bool) -> MovedSessionRun {
    let mut world = World::new(seed, 3, trace);
    world.scripted = true;
    world.bootstrap();
    let leaders: Vec<NodeId> = (0..world.groups()).filter_map(|group| world.leader(group)).collect();
    let not_run = MovedSessionRun::default();
    let Some(node) = (1..=3).find(|id| !leaders.contains(id)).or(Some(1 + seed % 3)) else { return not_run };
    let Some(group) = (0..world.groups()).find(|&group| world.leader(group) != Some(node)) else { return not_run };
    world.sessions_on = Some(node);
    for _ in 0..3000 {
        world.step();
        if world.session_clients[0].connected {
            break;
        }
    }
    world.sessions_on = None;
    let client = &world.session_clients[0];
    if !client.connected || client.node != node {
        return not_run;
    }
    let (session, timeout_ms) = (client.session, client.timeout_ms);
    world.hold = true;
    let held = world.session_write_to(0, group);
    world.hold = false;
    let until = world.now + timeout_ms as u64 + 500;
    world.note(|| format!("node {node} pauses until {until} with a write of session {session} for g{group}"));
    world.paused.insert(node, until);
    for _ in 0..until - world.now + 3000 {
        world.step();
    }
    let granted = world.grants.get(&session).and_then(|grants| grants.iter().map(|(at, _)| *at).min());
    let newest_wrote = granted.is_some_and(|granted_at| {
        world.session_writes_ok.iter().any(|write| world.session_writes[write].1 > granted_at)
    });
    let run = MovedSessionRun {
        moved_while_paused: granted.is_some_and(|at| at < until),
        held_write_refused: world.session_writes_refused.contains(&held),
        newest_wrote,
    };
    world.converge();
    world.check_histories();
    run
}

/// What `run_moved_session_scenario` saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct MovedSessionRun {
    /// A reattach was granted while the node held the write (the scenario happened).
    pub moved_while_paused: bool,
    /// The held write reached the log and was refused (SESSIONMOVED).
    pub held_write_refused: bool,
    /// A write the client sent on its new connection applied.
    pub newest_wrote: bool,
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
