//! One ZooKeeper session over a blocking TcpStream, with pipelining: requests are queued into a
//! write buffer, flushed together, and their replies read back in order. ZooKeeper answers a
//! session's requests in the order sent (FIFO client order), so the oldest outstanding request
//! is the one the next reply belongs to; a reply with any other xid is a protocol error.
//! Encoding and decoding are net::jute's; this file only frames and times.

use std::collections::VecDeque;
use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use net::jute::{
    decode_connect_response, decode_notification, decode_reply, encode_connect_request, encode_request, frame_len, xid,
    ConnectRequest, Request, RequestHeader,
};

/// Session timeout asked for; loadgen keeps every session busy, so it never needs pings.
const SESSION_TIMEOUT_MS: i32 = 30_000;
/// A reply larger than this is a protocol error (ZooKeeper's jute.maxbuffer is 1 MiB + slack).
const FRAME_BYTES_MAX: usize = 16 << 20;
/// How long to wait for a connection to be accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long any single read may block: a server that stops answering fails the run instead of
/// hanging it.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A reply matched with the request it answers.
pub struct Completion {
    pub tag: u8,
    pub sent: Instant,
    /// ReplyHeader.err: 0 or a ZooKeeper error code.
    pub err: i32,
}

struct Pending {
    xid: i32,
    opcode: i32,
    tag: u8,
    sent: Instant,
}

pub struct Session {
    addr: SocketAddr,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
    out: Vec<u8>,
    frame: Vec<u8>,
    pending: VecDeque<Pending>,
    next_xid: i32,
    pub session_id: i64,
    /// Watch notifications (xid -1) read so far, consumed by `recv` while it waits for replies.
    pub notifications: u64,
}

/// Resolves `host:port` to its first address.
pub fn resolve(server: &str) -> Result<SocketAddr> {
    server
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {server}"))?
        .next()
        .ok_or_else(|| anyhow!("{server} resolves to no address"))
}

impl Session {
    /// Connects and completes the session handshake (bounded by CONNECT_TIMEOUT and IO_TIMEOUT).
    pub fn connect(addr: SocketAddr) -> Result<Session> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .with_context(|| format!("cannot connect to {addr} (is a ZooKeeper-protocol server listening there?)"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let reader = BufReader::with_capacity(64 << 10, stream.try_clone()?);
        let mut s = Session {
            addr,
            writer: stream,
            reader,
            out: Vec::with_capacity(64 << 10),
            frame: Vec::with_capacity(4096),
            pending: VecDeque::new(),
            next_xid: 1,
            session_id: 0,
            notifications: 0,
        };
        let req = ConnectRequest { timeout_ms: SESSION_TIMEOUT_MS, passwd: vec![0; 16], ..Default::default() };
        encode_connect_request(&mut s.out, &req);
        s.flush()?;
        s.read_frame().with_context(|| format!("{addr}: no answer to the session handshake"))?;
        let resp = decode_connect_response(&s.frame).with_context(|| format!("{addr}: bad ConnectResponse"))?;
        if resp.timeout_ms <= 0 {
            bail!("{addr}: server refused the session (timeout {})", resp.timeout_ms);
        }
        s.session_id = resp.session_id;
        Ok(s)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    /// Appends a request to the write buffer; `tag` comes back in its Completion. Latency is
    /// measured from here, so call `flush` right after queueing a batch.
    pub fn queue(&mut self, req: &Request, tag: u8) {
        self.queue_at(req, tag, Instant::now());
    }

    /// As `queue`, with latency measured from `sent` (an open loop's intended send time).
    pub fn queue_at(&mut self, req: &Request, tag: u8, sent: Instant) {
        let xid = self.next_xid;
        // Positive xids only: negative ones are reserved (notifications, pings, auth).
        self.next_xid = if xid == i32::MAX { 1 } else { xid + 1 };
        let opcode = req.opcode();
        encode_request(&mut self.out, &RequestHeader { xid, opcode }, req);
        self.pending.push_back(Pending { xid, opcode, tag, sent });
    }

    pub fn flush(&mut self) -> Result<()> {
        if !self.out.is_empty() {
            self.writer.write_all(&self.out).with_context(|| format!("{}: write failed", self.addr))?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads the reply to the oldest outstanding request. Watch notifications that arrive
    /// before it (the `x` op sets data watches; a later setData fires them) are decoded,
    /// counted in `notifications` and skipped; pings are skipped.
    pub fn recv(&mut self) -> Result<Completion> {
        let front = self.pending.front().ok_or_else(|| anyhow!("recv with no outstanding request"))?;
        let (want_xid, op) = (front.xid, front.opcode);
        loop {
            self.read_frame().with_context(|| format!("{}: connection lost waiting for a reply", self.addr))?;
            // The frame starts with ReplyHeader.xid (frame_len reads any big-endian i32 prefix).
            let xid = frame_len(&self.frame).unwrap_or(0);
            if xid == xid::NOTIFICATION {
                decode_notification(&self.frame)
                    .with_context(|| format!("{}: cannot decode a watch notification", self.addr))?;
                self.notifications += 1;
                continue;
            }
            if xid == xid::PING {
                continue;
            }
            // Decoded in full (and strictly) to check the server's answer, then dropped.
            let (header, _body) = decode_reply(&self.frame, op)
                .with_context(|| format!("{}: cannot decode the reply to opcode {op}", self.addr))?;
            if header.xid != want_xid {
                bail!(
                    "{}: reply xid {} but the oldest request has xid {want_xid} (FIFO broken)",
                    self.addr,
                    header.xid
                );
            }
            let p = self.pending.pop_front().expect("front checked above");
            return Ok(Completion { tag: p.tag, sent: p.sent, err: header.err });
        }
    }

    /// Whether a whole reply frame is already buffered, so `recv` will not block or read.
    pub fn reply_buffered(&self) -> bool {
        let buf = self.reader.buffer();
        match frame_len(buf) {
            Some(len) => usize::try_from(len).is_ok_and(|len| buf.len() >= 4 + len),
            None => false,
        }
    }

    /// Waits until the socket is readable or `timeout` passes (None = IO_TIMEOUT); returns
    /// whether it is readable. Check `reply_buffered` first: buffered bytes are not on the socket.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> Result<bool> {
        use std::os::fd::AsRawFd;
        let t = timeout.unwrap_or(IO_TIMEOUT);
        // ppoll, not poll: open-loop intervals are often below poll's 1 ms resolution.
        let ts = libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as libc::c_long };
        let mut fd = libc::pollfd { fd: self.writer.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd for a socket we own and a timespec, both live for the call.
        let n = unsafe { libc::ppoll(&mut fd, 1, &ts, std::ptr::null()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e).with_context(|| format!("{}: poll failed", self.addr));
        }
        if n == 0 && timeout.is_none() {
            bail!("{}: no reply within {IO_TIMEOUT:?}", self.addr);
        }
        Ok(n > 0)
    }

    /// Sends closeSession and waits for its answer, so the server drops the session now rather
    /// than at its timeout. Outstanding requests are drained first.
    pub fn close(mut self) -> Result<()> {
        while self.outstanding() > 0 {
            self.recv()?;
        }
        self.queue(&Request::CloseSession, 0);
        self.flush()?;
        let c = self.recv()?;
        debug_assert_eq!(self.pending.len(), 0);
        if c.err != 0 {
            bail!("{}: closeSession failed with error {}", self.addr, c.err);
        }
        Ok(())
    }

    /// Reads one length-prefixed frame into `self.frame` (without the prefix).
    fn read_frame(&mut self) -> Result<()> {
        let eof = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => anyhow!("the server closed the connection"),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => anyhow!("no data within {IO_TIMEOUT:?}"),
            _ => anyhow::Error::new(e),
        };
        let mut prefix = [0u8; 4];
        self.reader.read_exact(&mut prefix).map_err(eof)?;
        let len = i32::from_be_bytes(prefix);
        let len = usize::try_from(len).map_err(|_| anyhow!("negative frame length {len}"))?;
        if len > FRAME_BYTES_MAX {
            bail!("frame of {len} bytes exceeds {FRAME_BYTES_MAX}");
        }
        self.frame.resize(len, 0);
        self.reader.read_exact(&mut self.frame).map_err(eof)?;
        Ok(())
    }
}

/// Sends a four-letter word and returns the whole answer (bounded by `timeout`).
pub fn four_letter(addr: SocketAddr, word: &str, timeout: Duration) -> Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(word.as_bytes())?;
    let mut out = Vec::new();
    s.take(1 << 20).read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}
