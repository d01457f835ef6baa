//! Fixed jute records shared by requests and replies: the data-model records (Stat, ACL, Id),
//! the session handshake (ConnectRequest/ConnectResponse) and the request and reply headers.
//! Field order follows zookeeper.jute exactly; it is the wire format.

use engine::types::{Acl, Id, Stat};

use super::codec::{write_frame, DecodeError, JuteReader, JuteWriter};

/// Encoded size of a Stat: 6 longs and 5 ints.
pub const STAT_BYTES: usize = 6 * 8 + 5 * 4;
/// Smallest encoding of an ACL: perms, then two ustring lengths.
pub(crate) const ACL_BYTES_MIN: usize = 12;

pub fn read_stat(r: &mut JuteReader<'_>) -> Result<Stat, DecodeError> {
    Ok(Stat {
        czxid: r.read_i64()?,
        mzxid: r.read_i64()?,
        ctime: r.read_i64()?,
        mtime: r.read_i64()?,
        version: r.read_i32()?,
        cversion: r.read_i32()?,
        aversion: r.read_i32()?,
        ephemeral_owner: r.read_i64()?,
        data_length: r.read_i32()?,
        num_children: r.read_i32()?,
        pzxid: r.read_i64()?,
    })
}

pub fn write_stat(w: &mut JuteWriter<'_>, s: &Stat) {
    w.write_i64(s.czxid);
    w.write_i64(s.mzxid);
    w.write_i64(s.ctime);
    w.write_i64(s.mtime);
    w.write_i32(s.version);
    w.write_i32(s.cversion);
    w.write_i32(s.aversion);
    w.write_i64(s.ephemeral_owner);
    w.write_i32(s.data_length);
    w.write_i32(s.num_children);
    w.write_i64(s.pzxid);
}

fn read_acl(r: &mut JuteReader<'_>) -> Result<Acl, DecodeError> {
    let perms = r.read_i32()?;
    let scheme = r.read_ustring()?;
    let id = r.read_ustring()?;
    Ok(Acl { perms, id: Id { scheme, id } })
}

fn write_acl(w: &mut JuteWriter<'_>, a: &Acl) {
    w.write_i32(a.perms);
    w.write_ustring(&a.id.scheme);
    w.write_ustring(&a.id.id);
}

/// `vector<ACL>`.
pub fn read_acls(r: &mut JuteReader<'_>) -> Result<Vec<Acl>, DecodeError> {
    r.read_vec(ACL_BYTES_MIN, read_acl)
}

pub fn write_acls(w: &mut JuteWriter<'_>, acls: &[Acl]) {
    w.write_vec(acls, write_acl);
}

/// The first frame a client sends. `read_only` travels as a trailing byte outside the jute
/// record; clients before 3.4 omit it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
}

/// The server's answer to a ConnectRequest; `read_only` is again a trailing byte.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    pub timeout_ms: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
}

/// The optional trailing readOnly byte: absent means false, as ZooKeeper's server has it.
fn read_trailing_bool(r: &mut JuteReader<'_>) -> Result<bool, DecodeError> {
    if r.remaining() == 0 {
        return Ok(false);
    }
    r.read_bool()
}

/// Decodes a ConnectRequest frame (the bytes after the length prefix). Bytes after the
/// readOnly byte are ignored, as ZooKeeper ignores them.
pub fn decode_connect_request(frame: &[u8]) -> Result<ConnectRequest, DecodeError> {
    let mut r = JuteReader::new(frame);
    Ok(ConnectRequest {
        protocol_version: r.read_i32()?,
        last_zxid_seen: r.read_i64()?,
        timeout_ms: r.read_i32()?,
        session_id: r.read_i64()?,
        passwd: r.read_buffer()?,
        read_only: read_trailing_bool(&mut r)?,
    })
}

/// Appends a ConnectRequest frame, length prefix and readOnly byte included.
pub fn encode_connect_request(out: &mut Vec<u8>, c: &ConnectRequest) {
    write_frame(out, |w| {
        w.write_i32(c.protocol_version);
        w.write_i64(c.last_zxid_seen);
        w.write_i32(c.timeout_ms);
        w.write_i64(c.session_id);
        w.write_buffer(&c.passwd);
        w.write_bool(c.read_only);
    });
}

/// Decodes a ConnectResponse frame; a missing readOnly byte (pre-3.4 server) reads as false.
pub fn decode_connect_response(frame: &[u8]) -> Result<ConnectResponse, DecodeError> {
    let mut r = JuteReader::new(frame);
    let c = ConnectResponse {
        protocol_version: r.read_i32()?,
        timeout_ms: r.read_i32()?,
        session_id: r.read_i64()?,
        passwd: r.read_buffer()?,
        read_only: read_trailing_bool(&mut r)?,
    };
    r.finish()?;
    Ok(c)
}

/// Appends a ConnectResponse frame. The readOnly byte is always written, as ZooKeeper's
/// server does, whatever the client sent.
pub fn encode_connect_response(out: &mut Vec<u8>, c: &ConnectResponse) {
    write_frame(out, |w| {
        w.write_i32(c.protocol_version);
        w.write_i32(c.timeout_ms);
        w.write_i64(c.session_id);
        w.write_buffer(&c.passwd);
        w.write_bool(c.read_only);
    });
}

/// RequestHeader{xid, type}: starts every request frame after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader {
    pub xid: i32,
    pub opcode: i32,
}

impl RequestHeader {
    pub fn read(r: &mut JuteReader<'_>) -> Result<RequestHeader, DecodeError> {
        Ok(RequestHeader { xid: r.read_i32()?, opcode: r.read_i32()? })
    }

    pub fn write(&self, w: &mut JuteWriter<'_>) {
        w.write_i32(self.xid);
        w.write_i32(self.opcode);
    }
}

/// ReplyHeader{xid, zxid, err}: starts every reply and notification frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyHeader {
    pub xid: i32,
    pub zxid: i64,
    pub err: i32,
}

impl ReplyHeader {
    pub fn read(r: &mut JuteReader<'_>) -> Result<ReplyHeader, DecodeError> {
        Ok(ReplyHeader { xid: r.read_i32()?, zxid: r.read_i64()?, err: r.read_i32()? })
    }

    pub fn write(&self, w: &mut JuteWriter<'_>) {
        w.write_i32(self.xid);
        w.write_i64(self.zxid);
        w.write_i32(self.err);
    }
}

/// MultiHeader{type, done, err}: precedes each op of a multi request and each result of a
/// multi reply; a header with done = true ends the list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MultiHeader {
    pub op: i32,
    pub done: bool,
    pub err: i32,
}

impl MultiHeader {
    /// The terminator both directions write: {type -1, done true, err -1}.
    pub const END: MultiHeader = MultiHeader { op: -1, done: true, err: -1 };

    pub fn read(r: &mut JuteReader<'_>) -> Result<MultiHeader, DecodeError> {
        Ok(MultiHeader { op: r.read_i32()?, done: r.read_bool()?, err: r.read_i32()? })
    }

    pub fn write(&self, w: &mut JuteWriter<'_>) {
        w.write_i32(self.op);
        w.write_bool(self.done);
        w.write_i32(self.err);
    }
}
