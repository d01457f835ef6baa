//! `loadgen canned-server`: a ZooKeeper-protocol server with no tree and no disk. It answers the
//! session handshake, then every request with a fixed, well-formed reply for its opcode, so a
//! loadgen run against it measures loadgen's own ceiling. One blocking thread per connection,
//! at most CONNECTIONS_MAX; replies to every request already read go out in one write.
//! `--stall-ms-at N:MS` stops all answering for MS once, when the N-th request arrives; what
//! queued meanwhile is answered after (a server pause with a known length, for tests).

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use engine::types::Stat;
use engine::ZkError;
use net::jute::{
    decode_connect_request, decode_request, encode_connect_response, encode_reply, frame_len, opcode, ConnectResponse,
    DecodeError, ReplyHeader, Request, Response,
};

/// Connections served at once; one more is closed at accept (matches loadgen's --clients max).
const CONNECTIONS_MAX: usize = 4096;
/// Stack of a connection thread: it only frames and encodes.
const THREAD_STACK_BYTES: usize = 256 << 10;
/// A request larger than this closes the connection (ZooKeeper's jute.maxbuffer + slack).
const FRAME_BYTES_MAX: usize = 16 << 20;
/// A connection idle this long is closed, so a vanished client frees its thread.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
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

/// What every connection thread shares.
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
    let shared = Arc::new(Shared {
        data: vec![b'v'; cfg.value_size],
        stalls: cfg.stalls,
        epoch: Instant::now(),
        requests: AtomicU64::new(0),
        stall_until_ns: AtomicU64::new(0),
        next_session: AtomicI64::new(1),
        connections: AtomicUsize::new(0),
    });
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                eprintln!("canned-server: accept: {e}");
                continue;
            }
        };
        spawn_connection(stream, &shared, addr);
    }
    Ok(())
}

fn spawn_connection(stream: TcpStream, shared: &Arc<Shared>, addr: SocketAddr) {
    if shared.connections.fetch_add(1, Ordering::Relaxed) >= CONNECTIONS_MAX {
        shared.connections.fetch_sub(1, Ordering::Relaxed);
        eprintln!("canned-server: {addr}: over {CONNECTIONS_MAX} connections, closing the new one");
        return;
    }
    let shared = Arc::clone(shared);
    let spawned = std::thread::Builder::new().stack_size(THREAD_STACK_BYTES).spawn(move || {
        let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
        if let Err(e) = connection(stream, &shared) {
            eprintln!("canned-server: {peer}: {e:#}");
        }
        shared.connections.fetch_sub(1, Ordering::Relaxed);
    });
    if let Err(e) = spawned {
        eprintln!("canned-server: cannot start a connection thread: {e}");
    }
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

/// Serves one connection: a four-letter word, or the handshake and then requests until the
/// client closes its session or the connection.
fn connection(stream: TcpStream, shared: &Shared) -> Result<()> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
    let mut writer = stream;
    let mut prefix = [0u8; 4];
    reader.read_exact(&mut prefix)?;
    if prefix.iter().all(u8::is_ascii_lowercase) {
        return Ok(writer.write_all(four_letter_answer(&prefix, shared).as_bytes())?);
    }
    let mut frame = Vec::with_capacity(4096);
    read_body(&mut reader, prefix, &mut frame)?;
    let mut out = Vec::with_capacity(64 << 10);
    handshake(&frame, shared, &mut out)?;
    writer.write_all(&out)?;
    loop {
        out.clear();
        let Some(()) = read_frame(&mut reader, &mut frame)? else { return Ok(()) };
        let mut closing = answer(&frame, &shared.data, &mut out, shared)?;
        // Answer everything already read in the same write.
        while !closing && frame_buffered(reader.buffer()) {
            read_frame(&mut reader, &mut frame)?;
            closing = answer(&frame, &shared.data, &mut out, shared)?;
        }
        shared.wait_out_stall();
        writer.write_all(&out)?;
        if closing {
            return Ok(());
        }
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

/// Whether `buf` starts with a whole frame.
fn frame_buffered(buf: &[u8]) -> bool {
    frame_len(buf).and_then(|len| usize::try_from(len).ok()).is_some_and(|len| buf.len() >= 4 + len)
}

/// Reads one frame into `frame`; None when the client closed the connection between frames.
fn read_frame(reader: &mut impl Read, frame: &mut Vec<u8>) -> Result<Option<()>> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    read_body(reader, prefix, frame)?;
    Ok(Some(()))
}

fn read_body(reader: &mut impl Read, prefix: [u8; 4], frame: &mut Vec<u8>) -> Result<()> {
    let len = i32::from_be_bytes(prefix);
    let len = usize::try_from(len).map_err(|_| anyhow!("negative frame length {len}"))?;
    if len > FRAME_BYTES_MAX {
        bail!("frame of {len} bytes exceeds {FRAME_BYTES_MAX}");
    }
    frame.resize(len, 0);
    reader.read_exact(frame)?;
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

    #[test]
    fn stall_flags_parse() {
        assert_eq!(parse_stall("1k:200"), Ok(Stall { at_request: 1000, ms: 200 }));
        assert!(parse_stall("1000").is_err());
        assert!(parse_stall("0:200").is_err());
        assert!(parse_stall("5:0").is_err());
        assert!(parse_stall("5:x").is_err());
    }
}
