//! One ZooKeeper session over a TcpStream, with pipelining: requests are queued into a write
//! buffer, flushed together, and their replies read back in order. ZooKeeper answers a
//! session's requests in the order sent (FIFO client order), so the oldest outstanding request
//! is the one the next reply belongs to; a reply with any other xid is a protocol error.
//! Replies are read either blocking (`recv`) or, for a thread that multiplexes many sessions
//! over epoll, without waiting (`fill_nonblocking` then `recv_buffered`); the socket itself
//! stays blocking, so writes and the blocking reads keep their timeouts.
//! Encoding and decoding are net::jute's; this file only frames and times.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::ops::Range;
use std::os::fd::{AsRawFd, RawFd};
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
/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 << 10;
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
    stream: TcpStream,
    out: Vec<u8>,
    /// Bytes read from the socket: `inbuf[in_start..]` are not yet taken as frames.
    inbuf: Vec<u8>,
    in_start: usize,
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
        let mut s = Session {
            addr,
            stream,
            out: Vec::with_capacity(64 << 10),
            inbuf: Vec::with_capacity(READ_CHUNK),
            in_start: 0,
            pending: VecDeque::new(),
            next_xid: 1,
            session_id: 0,
            notifications: 0,
        };
        let req = ConnectRequest { timeout_ms: SESSION_TIMEOUT_MS, passwd: vec![0; 16], ..Default::default() };
        encode_connect_request(&mut s.out, &req);
        s.flush()?;
        let frame = s.read_frame().with_context(|| format!("{addr}: no answer to the session handshake"))?;
        let resp =
            decode_connect_response(&s.inbuf[frame.clone()]).with_context(|| format!("{addr}: bad ConnectResponse"))?;
        s.in_start = frame.end;
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
            self.stream.write_all(&self.out).with_context(|| format!("{}: write failed", self.addr))?;
            self.out.clear();
        }
        Ok(())
    }

    /// Reads the reply to the oldest outstanding request, blocking (bounded by IO_TIMEOUT) until
    /// it arrives. Watch notifications that arrive before it (the `x` op sets data watches; a
    /// later setData fires them) are decoded, counted in `notifications` and skipped; pings are
    /// skipped.
    pub fn recv(&mut self) -> Result<Completion> {
        if self.pending.is_empty() {
            bail!("recv with no outstanding request");
        }
        loop {
            if let Some(c) = self.recv_buffered()? {
                return Ok(c);
            }
            self.fill(false).with_context(|| format!("{}: connection lost waiting for a reply", self.addr))?;
        }
    }

    /// The reply to the oldest outstanding request if it is already read from the socket, with
    /// the notifications before it taken as in `recv`; never reads nor blocks.
    pub fn recv_buffered(&mut self) -> Result<Option<Completion>> {
        while let Some(frame) = self.buffered_frame()? {
            let body = &self.inbuf[frame.clone()];
            // The frame starts with ReplyHeader.xid (frame_len reads any big-endian i32 prefix).
            let xid = frame_len(body).unwrap_or(0);
            if xid == xid::NOTIFICATION {
                decode_notification(body)
                    .with_context(|| format!("{}: cannot decode a watch notification", self.addr))?;
                self.notifications += 1;
                self.in_start = frame.end;
                continue;
            }
            if xid == xid::PING {
                self.in_start = frame.end;
                continue;
            }
            let front =
                self.pending.front().ok_or_else(|| anyhow!("{}: a reply with no request outstanding", self.addr))?;
            let (want_xid, op) = (front.xid, front.opcode);
            // Decoded in full (and strictly) to check the server's answer, then dropped.
            let (header, _body) = decode_reply(body, op)
                .with_context(|| format!("{}: cannot decode the reply to opcode {op}", self.addr))?;
            if header.xid != want_xid {
                bail!(
                    "{}: reply xid {} but the oldest request has xid {want_xid} (FIFO broken)",
                    self.addr,
                    header.xid
                );
            }
            self.in_start = frame.end;
            let p = self.pending.pop_front().expect("front checked above");
            return Ok(Some(Completion { tag: p.tag, sent: p.sent, err: header.err }));
        }
        Ok(None)
    }

    /// Whether a whole reply frame is already buffered, so `recv` will not block or read.
    pub fn reply_buffered(&self) -> bool {
        matches!(self.buffered_frame(), Ok(Some(_)))
    }

    /// Reads what the socket has without waiting (one recv; the epoll loop comes back if more
    /// is left). Err if the connection is closed or broken.
    pub fn fill_nonblocking(&mut self) -> Result<()> {
        self.fill(true).with_context(|| format!("{}: connection lost waiting for a reply", self.addr))
    }

    /// The socket, for an epoll set.
    pub fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }

    /// Waits until the socket is readable or `timeout` passes (None = IO_TIMEOUT); returns
    /// whether it is readable. Check `reply_buffered` first: buffered bytes are not on the socket.
    pub fn wait_readable(&self, timeout: Option<Duration>) -> Result<bool> {
        let t = timeout.unwrap_or(IO_TIMEOUT);
        // ppoll, not poll: open-loop intervals are often below poll's 1 ms resolution.
        let ts = libc::timespec { tv_sec: t.as_secs() as libc::time_t, tv_nsec: t.subsec_nanos() as libc::c_long };
        let mut fd = libc::pollfd { fd: self.stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
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

    /// Blocks until one whole frame is read and returns where its body (without the length
    /// prefix) lies in `inbuf`; the caller moves `in_start` past it.
    fn read_frame(&mut self) -> Result<Range<usize>> {
        loop {
            if let Some(frame) = self.buffered_frame()? {
                return Ok(frame);
            }
            self.fill(false)?;
        }
    }

    /// Where the next whole frame's body lies in `inbuf`, if it is all there.
    fn buffered_frame(&self) -> Result<Option<Range<usize>>> {
        let buf = &self.inbuf[self.in_start..];
        let Some(len) = frame_len(buf) else { return Ok(None) };
        let len = usize::try_from(len).map_err(|_| anyhow!("{}: negative frame length {len}", self.addr))?;
        if len > FRAME_BYTES_MAX {
            bail!("{}: frame of {len} bytes exceeds {FRAME_BYTES_MAX}", self.addr);
        }
        let body = self.in_start + 4;
        Ok((buf.len() >= 4 + len).then(|| body..body + len))
    }

    /// One recv into `inbuf`: waiting for data (bounded by IO_TIMEOUT), or with MSG_DONTWAIT
    /// returning at once when there is none.
    fn fill(&mut self, dont_wait: bool) -> Result<()> {
        if self.in_start == self.inbuf.len() {
            self.inbuf.clear();
            self.in_start = 0;
        } else if self.in_start > 0 && self.inbuf.capacity() - self.inbuf.len() < READ_CHUNK / 2 {
            self.inbuf.drain(..self.in_start);
            self.in_start = 0;
        }
        self.inbuf.reserve(READ_CHUNK);
        let spare = self.inbuf.spare_capacity_mut();
        let flags = if dont_wait { libc::MSG_DONTWAIT } else { 0 };
        // SAFETY: recv writes at most spare.len() bytes into the vector's unused capacity, which
        // stays allocated for the call; set_len below covers only the bytes it reports written.
        let n = unsafe { libc::recv(self.stream.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len(), flags) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return match e.kind() {
                std::io::ErrorKind::WouldBlock if dont_wait => Ok(()),
                std::io::ErrorKind::Interrupted => Ok(()),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    bail!("no data within {IO_TIMEOUT:?}")
                }
                _ => Err(e.into()),
            };
        }
        if n == 0 {
            bail!("the server closed the connection");
        }
        // SAFETY: recv initialised n bytes past the old length (n <= spare.len()).
        unsafe { self.inbuf.set_len(self.inbuf.len() + n as usize) };
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
