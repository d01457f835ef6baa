//! `loadgen canned-server`: a ZooKeeper-protocol server with no tree and no disk. It answers the
//! session handshake, then every request with a fixed, well-formed reply for its opcode, so a
//! loadgen run against it measures loadgen's own ceiling, and the CPU floor of this machine's
//! loopback TCP per request. One thread and one epoll set for all connections (at most
//! CONNECTIONS_MAX); per ready connection one read, and the replies to every whole request
//! read go out in one write.
//! `--stall-ms-at N:MS` stops all answering for MS once, when the N-th request arrives; what
//! queued meanwhile is answered after (a server pause with a known length, for tests).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::epoll::Epoll;
use engine::types::Stat;
use engine::ZkError;
use net::jute::{
    decode_connect_request, decode_request, encode_connect_response, encode_reply, frame_len, opcode, ConnectResponse,
    DecodeError, ReplyHeader, Request, Response,
};

/// Connections served at once; one more is closed at accept (matches loadgen's --clients max).
const CONNECTIONS_MAX: usize = 4096;
/// A request larger than this closes the connection (ZooKeeper's jute.maxbuffer + slack).
const FRAME_BYTES_MAX: usize = 16 << 20;
/// The zxid every reply carries: nothing is ever written.
const ZXID: i64 = 1;

/// One pause: when request number `at_request` (1-based, over all connections, handshakes
/// not counted) arrives, nothing is answered for `ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    pub at_request: u64,
    pub ms: u64,
}

/// Parses `N:MS`, e.g. `1000:200`.
pub fn parse_stall(s: &str) -> Result<Stall, String> {
    let (n, ms) = s.split_once(':').ok_or_else(|| format!("{s:?}: expected N:MS, e.g. 1000:200"))?;
    let at_request = crate::parse::parse_count(n)?;
    let ms = ms.trim().parse::<u64>().map_err(|e| format!("{ms:?}: {e}"))?;
    if at_request == 0 || ms == 0 || ms > 600_000 {
        return Err(format!("{s:?}: N must be at least 1 and MS within 1..=600000"));
    }
    Ok(Stall { at_request, ms })
}

pub struct Config {
    pub port: u16,
    /// Bytes of data in every getData reply.
    pub value_size: usize,
    pub stalls: Vec<Stall>,
}

/// What every connection shares.
struct Shared {
    data: Vec<u8>,
    stalls: Vec<Stall>,
    epoch: Instant,
    /// Requests received so far, all connections.
    requests: AtomicU64,
    /// Nanoseconds after `epoch` until which nothing is answered.
    stall_until_ns: AtomicU64,
    next_session: AtomicI64,
    connections: AtomicUsize,
}

impl Shared {
    /// Counts one request and starts the stall it triggers, if any.
    fn count_request(&self) {
        let n = self.requests.fetch_add(1, Ordering::Relaxed) + 1;
        for s in self.stalls.iter().filter(|s| s.at_request == n) {
            let until = self.epoch.elapsed() + Duration::from_millis(s.ms);
            self.stall_until_ns.fetch_max(until.as_nanos() as u64, Ordering::Relaxed);
            eprintln!("canned-server: request {n}: stalling {} ms", s.ms);
        }
    }

    /// Sleeps while a stall is in force. Bounded: every stall ends, and each fires once.
    fn wait_out_stall(&self) {
        loop {
            let until = Duration::from_nanos(self.stall_until_ns.load(Ordering::Relaxed));
            let now = self.epoch.elapsed();
            if now >= until {
                return;
            }
            std::thread::sleep(until - now);
        }
    }
}

/// Binds 127.0.0.1:`port` (0 = any free port), prints `canned-server listening on <addr>` on
/// stdout and serves until killed.
pub fn serve(cfg: Config) -> Result<()> {
    let listener =
        TcpListener::bind(("127.0.0.1", cfg.port)).with_context(|| format!("cannot bind port {}", cfg.port))?;
    let addr = listener.local_addr()?;
    println!("canned-server listening on {addr}");
    std::io::stdout().flush()?;
    let shared = Shared {
        data: vec![b'v'; cfg.value_size],
        stalls: cfg.stalls,
        epoch: Instant::now(),
        requests: AtomicU64::new(0),
        stall_until_ns: AtomicU64::new(0),
        next_session: AtomicI64::new(1),
        connections: AtomicUsize::new(0),
    };
    EventLoop::new(listener, shared)?.run()
}

/// Where a connection is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing read yet: a four-letter word or a ConnectRequest comes first.
    New,
    /// Handshake done: request frames.
    Session,
    /// Answered a four-letter word or closeSession: close once the output is sent.
    Closing,
}

/// One client connection of the event loop: what was read and not yet answered, what was
/// answered and not yet sent.
struct Conn {
    stream: TcpStream,
    phase: Phase,
    input: Vec<u8>,
    output: Vec<u8>,
    /// Bytes of `output` already written.
    sent: usize,
    /// Whether EPOLLOUT is registered (output is waiting for socket space).
    waiting_to_write: bool,
}

/// Bytes read per read(2): one read drains what loadgen's pipelined sessions send in a turn.
const READ_CHUNK: usize = 64 << 10;
/// Events taken per epoll_wait.
const EVENTS_MAX: usize = 256;
/// The listener's epoll token; connections use their fd, which is never this.
const LISTENER_TOKEN: u64 = u64::MAX;

/// One thread, one epoll instance, level-triggered: per ready connection one read, every whole
/// frame answered, one write. No thread per connection, so the server costs about as little CPU
/// per request as loopback TCP allows: the floor a real server is compared with.
struct EventLoop {
    epoll: Epoll,
    listener: TcpListener,
    conns: HashMap<RawFd, Conn>,
    shared: Shared,
}

impl EventLoop {
    fn new(listener: TcpListener, shared: Shared) -> Result<EventLoop> {
        listener.set_nonblocking(true)?;
        let epoll = Epoll::new()?;
        let ev = EventLoop { epoll, listener, conns: HashMap::new(), shared };
        ev.ctl(libc::EPOLL_CTL_ADD, ev.listener.as_raw_fd(), libc::EPOLLIN as u32, LISTENER_TOKEN)?;
        Ok(ev)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> Result<()> {
        self.epoll.ctl(op, fd, events, token)
    }

    fn run(mut self) -> Result<()> {
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_MAX];
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            let Some(ready) = self.epoll.wait(&mut events, None)? else { continue };
            for ev in ready {
                let (token, flags) = (ev.u64, ev.events);
                if token == LISTENER_TOKEN {
                    self.accept_all();
                } else {
                    self.serve_ready(token as RawFd, flags, &mut chunk);
                }
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    eprintln!("canned-server: accept: {e}");
                    return;
                }
            };
            if self.conns.len() >= CONNECTIONS_MAX {
                eprintln!("canned-server: over {CONNECTIONS_MAX} connections, closing the new one");
                continue;
            }
            if let Err(e) = self.register(stream) {
                eprintln!("canned-server: {e:#}");
            }
        }
    }

    fn register(&mut self, stream: TcpStream) -> Result<()> {
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        let fd = stream.as_raw_fd();
        self.ctl(libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32, fd as u64)?;
        let conn = Conn {
            stream,
            phase: Phase::New,
            input: Vec::with_capacity(4096),
            output: Vec::with_capacity(4096),
            sent: 0,
            waiting_to_write: false,
        };
        self.conns.insert(fd, conn);
        self.shared.connections.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reads once if readable, answers every whole frame, writes what it can; closes the
    /// connection on EOF, error or a finished four-letter word or closeSession.
    fn serve_ready(&mut self, fd: RawFd, flags: u32, chunk: &mut [u8]) {
        let Some(conn) = self.conns.get_mut(&fd) else { return };
        let readable = flags & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0;
        let outcome = (|| -> Result<bool> {
            if readable && conn.phase != Phase::Closing {
                match conn.stream.read(chunk) {
                    Ok(0) => return Ok(false),
                    Ok(n) => conn.input.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
                answer_buffered(&mut conn.phase, &mut conn.input, &mut conn.output, &self.shared)?;
                self.shared.wait_out_stall();
            }
            flush(conn)
        })();
        let keep = match outcome {
            Ok(keep) => keep,
            Err(e) => {
                let peer = conn.stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                eprintln!("canned-server: {peer}: {e:#}");
                false
            }
        };
        if !keep {
            self.close(fd);
            return;
        }
        let want_write = conn.sent < conn.output.len();
        if want_write != conn.waiting_to_write {
            conn.waiting_to_write = want_write;
            let events = if want_write { (libc::EPOLLIN | libc::EPOLLOUT) as u32 } else { libc::EPOLLIN as u32 };
            if let Err(e) = self.ctl(libc::EPOLL_CTL_MOD, fd, events, fd as u64) {
                eprintln!("canned-server: {e:#}");
                self.close(fd);
            }
        }
    }

    fn close(&mut self, fd: RawFd) {
        if self.conns.remove(&fd).is_some() {
            // Dropping the stream closes the fd, which also removes it from the epoll set.
            self.shared.connections.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Answers every whole frame in `input` into `output` and removes it from `input`: a
/// four-letter word or the handshake first, then requests, up to a closeSession.
fn answer_buffered(phase: &mut Phase, input: &mut Vec<u8>, output: &mut Vec<u8>, shared: &Shared) -> Result<()> {
    if *phase == Phase::New && input.len() >= 4 && input[..4].iter().all(u8::is_ascii_lowercase) {
        let word: [u8; 4] = input[..4].try_into().expect("4 bytes");
        output.extend_from_slice(four_letter_answer(&word, shared).as_bytes());
        *phase = Phase::Closing;
        input.clear();
        return Ok(());
    }
    let mut at = 0;
    while *phase != Phase::Closing {
        let Some(frame) = whole_frame(&input[at..])? else { break };
        let body = &input[at + 4..at + 4 + frame];
        if *phase == Phase::New {
            handshake(body, shared, output)?;
            *phase = Phase::Session;
        } else if answer(body, &shared.data, output, shared)? {
            *phase = Phase::Closing;
        }
        at += 4 + frame;
    }
    input.drain(..at);
    Ok(())
}

/// The body length of the frame at the start of `buf` if all of it is there; an error for a
/// negative or oversized length.
fn whole_frame(buf: &[u8]) -> Result<Option<usize>> {
    let Some(len) = frame_len(buf) else { return Ok(None) };
    let len = usize::try_from(len).map_err(|_| anyhow!("negative frame length {len}"))?;
    if len > FRAME_BYTES_MAX {
        bail!("frame of {len} bytes exceeds {FRAME_BYTES_MAX}");
    }
    Ok((buf.len() >= 4 + len).then_some(len))
}

/// Writes as much pending output as the socket takes. Ok(false): all sent and the connection
/// is done (after a four-letter word or closeSession).
fn flush(conn: &mut Conn) -> Result<bool> {
    while conn.sent < conn.output.len() {
        match conn.stream.write(&conn.output[conn.sent..]) {
            Ok(0) => bail!("the peer stopped reading"),
            Ok(n) => conn.sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) => return Err(e.into()),
        }
    }
    conn.output.clear();
    conn.sent = 0;
    Ok(conn.phase != Phase::Closing)
}

/// The answer to a four-letter word (srvr, conf, ruok, ...): enough for loadgen to name its
/// target (target.rs recognises the `loadgen-canned-` version) and record its settings.
fn four_letter_answer(word: &[u8; 4], shared: &Shared) -> String {
    let version = format!(
        "Zookeeper version: {}{}, built on loadgen canned-server\n",
        crate::target::CANNED_VERSION_PREFIX,
        env!("CARGO_PKG_VERSION")
    );
    match word {
        b"srvr" | b"stat" => format!("{version}Mode: standalone\n"),
        b"conf" => format!("cannedValueSize={}\nstalls={}\n", shared.data.len(), shared.stalls.len()),
        _ => version,
    }
}

fn handshake(frame: &[u8], shared: &Shared, out: &mut Vec<u8>) -> Result<()> {
    let req = decode_connect_request(frame).map_err(|e| anyhow!("bad ConnectRequest: {e}"))?;
    let session_id =
        if req.session_id != 0 { req.session_id } else { shared.next_session.fetch_add(1, Ordering::Relaxed) };
    let resp = ConnectResponse {
        protocol_version: 0,
        timeout_ms: req.timeout_ms.max(1),
        session_id,
        passwd: vec![0; 16],
        read_only: false,
    };
    encode_connect_response(out, &resp);
    Ok(())
}

/// Appends the reply to one request frame; true if it closed the session.
fn answer(frame: &[u8], data: &[u8], out: &mut Vec<u8>, shared: &Shared) -> Result<bool> {
    shared.count_request();
    let (xid, op, err, body) = match decode_request(frame) {
        Ok((h, req)) => {
            let (err, body) = match canned(&req, data) {
                Some(body) => (0, body),
                None => (ZkError::Unimplemented.code(), Response::Empty),
            };
            (h.xid, h.opcode, err, body)
        }
        Err((Some(h), DecodeError::UnknownOpcode(_))) => {
            (h.xid, h.opcode, ZkError::Unimplemented.code(), Response::Empty)
        }
        Err((Some(h), _)) => (h.xid, h.opcode, ZkError::MarshallingError.code(), Response::Empty),
        Err((None, e)) => bail!("undecodable request header: {e}"),
    };
    encode_reply(out, &ReplyHeader { xid, zxid: ZXID, err }, &body);
    Ok(op == opcode::CLOSE_SESSION)
}

/// The fixed reply body for `req`, or None for ops the canned server does not answer (they get
/// ZUNIMPLEMENTED).
fn canned(req: &Request, data: &[u8]) -> Option<Response> {
    let stat = Stat { czxid: ZXID, mzxid: ZXID, pzxid: ZXID, data_length: data.len() as i32, ..Stat::default() };
    Some(match req {
        Request::GetData { .. } => Response::Data { data: Some(data.to_vec()), stat },
        Request::SetData { .. } | Request::Exists { .. } => Response::Stat(stat),
        Request::Create { opcode: opcode::CREATE, path, .. } => Response::Create { path: path.clone() },
        Request::Create { path, .. } => Response::Create2 { path: path.clone(), stat },
        Request::Delete { .. } | Request::Ping | Request::CloseSession | Request::Check { .. } => Response::Empty,
        Request::SetWatches { .. } | Request::SetWatches2 { .. } => Response::Empty,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::types::Acl;
    use net::jute::{decode_reply, encode_request, RequestHeader};

    fn shared() -> Shared {
        Shared {
            data: b"abc".to_vec(),
            stalls: vec![Stall { at_request: 2, ms: 30 }],
            epoch: Instant::now(),
            requests: AtomicU64::new(0),
            stall_until_ns: AtomicU64::new(0),
            next_session: AtomicI64::new(1),
            connections: AtomicUsize::new(0),
        }
    }

    /// Encodes `req`, answers it and decodes the reply as a client would.
    fn round_trip(req: &Request, s: &Shared) -> (ReplyHeader, Response) {
        let mut frame = Vec::new();
        encode_request(&mut frame, &RequestHeader { xid: 7, opcode: req.opcode() }, req);
        let mut out = Vec::new();
        answer(&frame[4..], &s.data, &mut out, s).unwrap();
        assert_eq!(frame_len(&out), Some(out.len() as i32 - 4));
        decode_reply(&out[4..], req.opcode()).unwrap()
    }

    #[test]
    fn every_op_loadgen_sends_gets_a_well_formed_reply() {
        let s = shared();
        let create = |opcode| Request::Create {
            opcode,
            path: "/a".into(),
            data: None,
            acl: Acl::open_unsafe(),
            flags: 0,
            ttl_ms: 0,
        };
        let (h, body) = round_trip(&Request::GetData { path: "/a".into(), watch: true }, &s);
        assert_eq!((h.xid, h.err), (7, 0));
        assert!(matches!(body, Response::Data { data: Some(d), stat } if d == b"abc" && stat.data_length == 3));
        let set = Request::SetData { path: "/a".into(), data: None, version: -1 };
        assert!(matches!(round_trip(&set, &s).1, Response::Stat(_)));
        assert_eq!(round_trip(&create(opcode::CREATE), &s).1, Response::Create { path: "/a".into() });
        assert!(matches!(round_trip(&create(opcode::CREATE2), &s).1, Response::Create2 { .. }));
        let delete = Request::Delete { path: "/a".into(), version: -1 };
        assert_eq!(round_trip(&delete, &s), (ReplyHeader { xid: 7, zxid: ZXID, err: 0 }, Response::Empty));
        assert_eq!(round_trip(&Request::Ping, &s).1, Response::Empty);
    }

    #[test]
    fn ops_without_a_canned_reply_get_unimplemented() {
        let s = shared();
        let (h, body) = round_trip(&Request::GetChildren { path: "/".into(), watch: false }, &s);
        assert_eq!((h.err, body), (ZkError::Unimplemented.code(), Response::Empty));
        // An opcode jute does not know at all.
        let mut frame = Vec::new();
        frame.extend_from_slice(&9i32.to_be_bytes());
        frame.extend_from_slice(&999i32.to_be_bytes());
        let mut out = Vec::new();
        answer(&frame, &s.data, &mut out, &s).unwrap();
        let (h, _) = decode_reply(&out[4..], 999).unwrap();
        assert_eq!((h.xid, h.err), (9, ZkError::Unimplemented.code()));
    }

    #[test]
    fn the_nth_request_stalls_answering_once() {
        let s = shared();
        s.count_request();
        let t = Instant::now();
        s.wait_out_stall();
        assert!(t.elapsed() < Duration::from_millis(30));
        s.count_request();
        s.wait_out_stall();
        assert!(t.elapsed() >= Duration::from_millis(30));
        let t = Instant::now();
        s.count_request();
        s.wait_out_stall();
        assert!(t.elapsed() < Duration::from_millis(30));
    }

    /// The bytes a client sends: ConnectRequest, then `requests`, each framed.
    fn client_bytes(requests: &[Request]) -> Vec<u8> {
        let mut out = Vec::new();
        let connect = net::jute::ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: 0,
            timeout_ms: 10_000,
            session_id: 0,
            passwd: vec![0; 16],
            read_only: false,
        };
        net::jute::encode_connect_request(&mut out, &connect);
        for (xid, req) in (1..).zip(requests) {
            encode_request(&mut out, &RequestHeader { xid, opcode: req.opcode() }, req);
        }
        out
    }

    #[test]
    fn frames_split_across_reads_are_answered_once_whole() {
        let s = shared();
        let get = Request::GetData { path: "/a".into(), watch: false };
        let bytes = client_bytes(&[get.clone(), get.clone(), Request::CloseSession]);
        let (mut phase, mut input, mut output) = (Phase::New, Vec::new(), Vec::new());
        // Feed the stream 5 bytes at a time, as a slow client would.
        for piece in bytes.chunks(5) {
            input.extend_from_slice(piece);
            answer_buffered(&mut phase, &mut input, &mut output, &s).unwrap();
        }
        assert_eq!(phase, Phase::Closing);
        assert!(input.is_empty());
        // ConnectResponse, then three replies with xids 1, 2, 3.
        let mut at = 4 + frame_len(&output).unwrap() as usize;
        let mut xids = Vec::new();
        for op in [opcode::GET_DATA, opcode::GET_DATA, opcode::CLOSE_SESSION] {
            let len = frame_len(&output[at..]).unwrap() as usize;
            let (h, _) = decode_reply(&output[at + 4..at + 4 + len], op).unwrap();
            xids.push(h.xid);
            at += 4 + len;
        }
        assert_eq!((xids, at), (vec![1, 2, 3], output.len()));
    }

    #[test]
    fn a_four_letter_word_is_answered_and_closes() {
        let s = shared();
        let (mut phase, mut input, mut output) = (Phase::New, b"srvr".to_vec(), Vec::new());
        answer_buffered(&mut phase, &mut input, &mut output, &s).unwrap();
        assert_eq!(phase, Phase::Closing);
        let text = String::from_utf8(output).unwrap();
        assert!(text.contains("loadgen-canned-") && text.contains("Mode: standalone"), "{text}");
    }

    #[test]
    fn oversized_and_negative_frames_are_errors() {
        let s = shared();
        for len in [i32::try_from(FRAME_BYTES_MAX + 1).unwrap(), -5] {
            let (mut phase, mut input, mut output) = (Phase::Session, len.to_be_bytes().to_vec(), Vec::new());
            assert!(answer_buffered(&mut phase, &mut input, &mut output, &s).is_err(), "{len}");
        }
    }

    #[test]
    fn stall_flags_parse() {
        assert_eq!(parse_stall("1k:200"), Ok(Stall { at_request: 1000, ms: 200 }));
        assert!(parse_stall("1000").is_err());
        assert!(parse_stall("0:200").is_err());
        assert!(parse_stall("5:0").is_err());
        assert!(parse_stall("5:x").is_err());
    }
}
