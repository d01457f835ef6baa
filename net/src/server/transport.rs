//! The connections between the same core of the cluster's nodes: core c of every node runs
//! the replicas of group c, so core c only ever talks to core c. Each core listens on its peer
//! port (the node's base peer port + c) and dials every other voter's; a connection carries
//! messages one way (the dialer's), so each pair of cores has two. Messages queued during one
//! loop turn go out in one write. A lost connection is logged once, redialed with backoff, and
//! logged again when it is back; what was queued meanwhile is dropped (Raft resends).

use super::core::Core;
use crate::config::{Config, Peer};
use crate::peer::{decode_frame, encode_frame, PeerMessage};
use ahash::AHashMap;
use engine::raft::NodeId;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::{TcpListener, TcpStream};
use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// First and longest wait before redialing a peer.
const REDIAL_FIRST: Duration = Duration::from_millis(20);
const REDIAL_MAX: Duration = Duration::from_millis(500);
/// A peer that takes longer than this to take our bytes (stopped, or its link is cut) is
/// dropped and redialed, so nothing piles up behind it.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection that lasted this long was up: its loss is news, and redialing starts fast.
const STABLE_AFTER: Duration = Duration::from_secs(1);
/// Most messages in one write.
const BATCH_MAX: usize = 4096;

/// This core's links to the same core of every other voter.
pub struct Transport {
    links: AHashMap<NodeId, LocalSender<PeerMessage>>,
    losses: Rc<LinkLosses>,
}

/// Per peer, how many times a connection to or from it ended or messages queued for it were
/// dropped: a request sent to a peer under an older count may never have arrived, or its answer
/// may be lost, and nothing would ever say so (Raft resends its own messages; a forwarded write
/// or a read-index question is sent once).
#[derive(Default)]
pub struct LinkLosses {
    per_peer: AHashMap<NodeId, Cell<u64>>,
    total: Cell<u64>,
}

impl LinkLosses {
    fn lost(&self, peer: NodeId) {
        if let Some(count) = self.per_peer.get(&peer) {
            count.set(count.get() + 1);
            self.total.set(self.total.get() + 1);
        }
    }
}

impl Transport {
    /// Starts dialing every other voter's core `core`.
    pub fn start(core: usize, config: &Config, voters: &[Peer]) -> Transport {
        let me = NodeId::from(config.node_id);
        let others: Vec<&Peer> = voters.iter().filter(|p| NodeId::from(p.id) != me).collect();
        let per_peer = others.iter().map(|p| (NodeId::from(p.id), Cell::new(0))).collect();
        let losses = Rc::new(LinkLosses { per_peer, total: Cell::new(0) });
        let mut links = AHashMap::new();
        for peer in others {
            let (tx, rx) = local_channel::new_unbounded();
            let hello = PeerMessage::Hello {
                node: me,
                core: core as u32,
                cores: config.cores as u32,
                shards: u32::from(config.shards),
            };
            glommio::spawn_local(dial_loop(core, peer.clone(), hello, rx, losses.clone())).detach();
            links.insert(NodeId::from(peer.id), tx);
        }
        Transport { links, losses }
    }

    /// How many times a link with `peer` lost something so far (see `LinkLosses`).
    pub fn losses_with(&self, peer: NodeId) -> u64 {
        self.losses.per_peer.get(&peer).map_or(0, Cell::get)
    }

    /// Losses with every peer so far: unchanged means no request can have been lost since.
    pub fn losses_total(&self) -> u64 {
        self.losses.total.get()
    }

    /// A connection from `peer` ended: answers it was sending may be lost.
    pub fn incoming_lost(&self, peer: NodeId) {
        self.losses.lost(peer);
    }

    pub fn send(&self, to: NodeId, message: PeerMessage) {
        match self.links.get(&to) {
            Some(link) => {
                let _ = link.try_send(message);
            }
            None => tracing::error!(to, "message for a node that is not a peer; dropped"),
        }
    }
}

/// Keeps one connection to `peer` up and writes what is queued for it.
async fn dial_loop(
    core: usize,
    peer: Peer,
    hello: PeerMessage,
    outbox: LocalReceiver<PeerMessage>,
    losses: Rc<LinkLosses>,
) {
    let node = NodeId::from(peer.id);
    let addr = peer.addr(core);
    let mut wait = REDIAL_FIRST;
    let mut lost_logged = false;
    let mut buf = Vec::new();
    loop {
        let stream = match TcpStream::connect(addr.as_str()).await {
            Ok(stream) => stream,
            Err(error) => {
                if !lost_logged {
                    tracing::warn!(core, peer = peer.id, %addr, %error, "peer unreachable; redialing");
                    lost_logged = true;
                }
                if drop_queued(&outbox).await > 0 {
                    losses.lost(node);
                }
                glommio::timer::sleep(wait).await;
                wait = (wait * 2).min(REDIAL_MAX);
                continue;
            }
        };
        let connected_at = Instant::now();
        let _ = stream.set_nodelay(true);
        let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
        let link = Link { core, peer: peer.id, addr: &addr, connected_at };
        let error = send_until_error(stream, &hello, &outbox, &mut buf, &link).await;
        // What the connection carried last may not have arrived, and the queue is dropped.
        drop_queued(&outbox).await;
        losses.lost(node);
        if connected_at.elapsed() >= STABLE_AFTER {
            tracing::warn!(core, peer = peer.id, %addr, %error, "peer connection lost; redialing");
            wait = REDIAL_FIRST;
        } else {
            // Accepted and dropped at once (the peer is starting or stopping, or something in
            // between cuts the link): not "back" yet; logged once, redialed with backoff.
            if !lost_logged {
                tracing::warn!(core, peer = peer.id, %addr, %error, "peer connection dropped at once; redialing");
            }
            glommio::timer::sleep(wait).await;
            wait = (wait * 2).min(REDIAL_MAX);
        }
        // Logged once per loss, not once per failed redial.
        lost_logged = true;
    }
}

/// One dialed connection, for its log lines.
struct Link<'a> {
    core: usize,
    peer: u8,
    addr: &'a str,
    connected_at: Instant,
}

async fn send_until_error(
    mut stream: TcpStream,
    hello: &PeerMessage,
    outbox: &LocalReceiver<PeerMessage>,
    buf: &mut Vec<u8>,
    link: &Link<'_>,
) -> std::io::Error {
    buf.clear();
    encode_frame(buf, hello);
    let mut announced = false;
    loop {
        if let Err(error) = stream.write_all(buf).await {
            return error;
        }
        // Announced once it has stayed up (heartbeats flow every tick), so a link that is
        // accepted and dropped over and over is not reported as back each time.
        if !announced && link.connected_at.elapsed() >= STABLE_AFTER {
            tracing::info!(core = link.core, peer = link.peer, addr = %link.addr, "peer connected");
            announced = true;
        }
        buf.clear();
        let Some(first) = outbox.recv().await else {
            return std::io::Error::other("the core stopped");
        };
        futures_lite::future::yield_now().await;
        encode_frame(buf, &first);
        for _ in 1..BATCH_MAX {
            match futures_lite::future::poll_once(outbox.recv()).await {
                Some(Some(message)) => encode_frame(buf, &message),
                _ => break,
            }
        }
    }
}

/// Drops what is queued; returns how many messages.
async fn drop_queued(outbox: &LocalReceiver<PeerMessage>) -> usize {
    let mut dropped = 0;
    while let Some(Some(_)) = futures_lite::future::poll_once(outbox.recv()).await {
        dropped += 1;
    }
    dropped
}

/// Accepts the connections other voters dial to this core and hands what they say to it.
pub async fn accept_loop(core: Rc<Core>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok(stream) => {
                let core = core.clone();
                glommio::spawn_local(async move {
                    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                    let mut from = None;
                    if let Err(error) = receive(&core, stream, &mut from).await {
                        tracing::warn!(core = core.id, %peer, %error, "peer connection closed");
                    }
                    if let (Some(node), Some(transport)) = (from, &core.transport) {
                        transport.incoming_lost(node);
                    }
                })
                .detach();
            }
            Err(error) => {
                tracing::warn!(core = core.id, %error, "peer accept failed");
                glommio::timer::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Reads frames until the peer goes away or says something it must be cut off for.
/// `from`: the peer, once it said hello.
async fn receive(core: &Core, mut stream: TcpStream, from: &mut Option<NodeId>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..read]);
        let mut used = 0;
        loop {
            let frame = decode_frame(&buf[used..])
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))?;
            let Some((message, bytes)) = frame else { break };
            used += bytes;
            match (*from, message) {
                (None, PeerMessage::Hello { node, core: their_core, cores, shards }) => {
                    if let Err(refused) = check_hello(core, node, their_core, cores, shards) {
                        tracing::error!(core = core.id, node, %refused, "peer refused at its hello");
                        return Err(refused);
                    }
                    *from = Some(node);
                }
                (None, _) => return Err(invalid("a peer spoke before saying hello")),
                (Some(_), PeerMessage::Hello { .. }) => return Err(invalid("a peer said hello twice")),
                (Some(node), message) => core.on_peer_message(node, message),
            }
        }
        buf.drain(..used);
    }
}

fn check_hello(core: &Core, node: NodeId, their_core: u32, cores: u32, shards: u32) -> std::io::Result<()> {
    if !core.is_voter(node) || node == NodeId::from(core.config.node_id) {
        return Err(invalid(&format!("node {node} is not one of this cluster's other voters")));
    }
    if their_core as usize != core.id || cores as usize != core.cores() {
        return Err(invalid(&format!(
            "node {node} dialed core {their_core} of {cores} cores; this is core {} of {} (every node of a cluster \
             runs the same number of cores: the groups are fixed when the cluster is created)",
            core.id,
            core.cores()
        )));
    }
    if shards != u32::from(core.config.shards) {
        return Err(invalid(&format!(
            "node {node} runs {shards} shards; this node runs {} (every node of a cluster runs the same number of \
             shards: a path's shard, and so the group that orders its writes, is fixed when the cluster is created)",
            core.config.shards
        )));
    }
    Ok(())
}

fn invalid(why: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string())
}
