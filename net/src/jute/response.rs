//! Server replies: the `Response` enum, its encoding (server side) and decoding (client side),
//! and watch notifications. Multi results follow MultiResponse.java: a MultiHeader before
//! each result, then {type -1, done true, err -1}.

use engine::request::{MultiResult, ReadResult};
use engine::types::{Acl, Stat};
use engine::ZkError;

use super::codec::{write_frame, DecodeError, JuteReader, JuteWriter};
use super::opcode;
use super::records::{read_acls, read_stat, write_acls, write_stat, MultiHeader, ReplyHeader};
use super::xid;

/// A reply body. Which arm answers which opcode is in `decode_reply`.
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// delete, setWatches(2), auth, removeWatches, checkWatches, closeSession, ping, check — and
    /// every reply whose header carries an error.
    Empty,
    /// addWatch: ErrorResponse{err}, err always 0. ZooKeeper's FinalRequestProcessor answers
    /// addWatch so, and the Java client reads that int: without it the reply fails to decode
    /// and the client drops the connection before registering its watcher.
    ErrorResponse(i32),
    /// CREATE: CreateResponse{path}.
    Create {
        path: String,
    },
    /// CREATE2, CREATE_CONTAINER, CREATE_TTL: Create2Response{path, stat}.
    Create2 {
        path: String,
        stat: Stat,
    },
    /// exists, setData, setACL.
    Stat(Stat),
    /// getData, and reconfig (which answers with the new config as GetDataResponse).
    Data {
        /// None = null data (jute length -1).
        data: Option<Vec<u8>>,
        stat: Stat,
    },
    Acl {
        acl: Vec<Acl>,
        stat: Stat,
    },
    Children(Vec<String>),
    Children2 {
        children: Vec<String>,
        stat: Stat,
    },
    Sync {
        path: String,
    },
    /// One result per op with the op's opcode, which picks CreateResponse (CREATE) or
    /// Create2Response (the other creates) for a Create result. An aborted multi is still a
    /// reply with header err 0: clients read the per-op errors from the body.
    Multi(Vec<(i32, MultiResult)>),
    /// Ok(ReadResult::Data | ReadResult::Children) or Err(error code), one per op.
    MultiRead(Vec<Result<ReadResult, i32>>),
    /// getAllChildrenNumber.
    Number(i32),
    Ephemerals(Vec<String>),
    /// whoAmI: (auth scheme, user) pairs.
    WhoAmI(Vec<(String, String)>),
    /// sasl: SetSASLResponse{token}.
    Sasl {
        token: Vec<u8>,
    },
}

/// Appends a complete reply frame: length prefix, `header`, and `body` unless header.err != 0
/// (ZooKeeper sends no body with an error; `body` is then ignored).
pub fn encode_reply(out: &mut Vec<u8>, header: &ReplyHeader, body: &Response) {
    write_frame(out, |w| {
        header.write(w);
        if header.err == 0 {
            write_response(w, body);
        }
    });
}

/// Appends a watch notification frame: ReplyHeader{xid -1, zxid, err 0} then
/// WatcherEvent{type, state, path}.
pub fn encode_notification(out: &mut Vec<u8>, zxid: i64, event_type: i32, state: i32, path: &str) {
    write_frame(out, |w| {
        ReplyHeader { xid: xid::NOTIFICATION, zxid, err: 0 }.write(w);
        w.write_i32(event_type);
        w.write_i32(state);
        w.write_ustring(path);
    });
}

/// Decodes a notification frame into (header, event type, keeper state, path). The caller
/// has already seen xid -1; the header is returned as read.
pub fn decode_notification(frame: &[u8]) -> Result<(ReplyHeader, i32, i32, String), DecodeError> {
    let mut r = JuteReader::new(frame);
    let header = ReplyHeader::read(&mut r)?;
    let event_type = r.read_i32()?;
    let state = r.read_i32()?;
    let path = r.read_ustring()?;
    r.finish()?;
    Ok((header, event_type, state, path))
}

/// Decodes a reply frame given the opcode of the request it answers (clients remember it by
/// xid). Strict: bytes left after the body are an error, since a mismatch means the two sides
/// disagree on the record.
pub fn decode_reply(frame: &[u8], op: i32) -> Result<(ReplyHeader, Response), DecodeError> {
    let mut r = JuteReader::new(frame);
    let header = ReplyHeader::read(&mut r)?;
    let body = if header.err == 0 { read_response(&mut r, op)? } else { Response::Empty };
    r.finish()?;
    Ok((header, body))
}

fn read_response(r: &mut JuteReader<'_>, op: i32) -> Result<Response, DecodeError> {
    use opcode::*;
    match op {
        DELETE | SET_WATCHES | SET_WATCHES2 | AUTH | REMOVE_WATCHES | CHECK_WATCHES | CLOSE_SESSION | PING | CHECK => {
            Ok(Response::Empty)
        }
        ADD_WATCH => Ok(Response::ErrorResponse(r.read_i32()?)),
        CREATE => Ok(Response::Create { path: r.read_ustring()? }),
        CREATE2 | CREATE_CONTAINER | CREATE_TTL => {
            Ok(Response::Create2 { path: r.read_ustring()?, stat: read_stat(r)? })
        }
        EXISTS | SET_DATA | SET_ACL => Ok(Response::Stat(read_stat(r)?)),
        GET_DATA | RECONFIG => Ok(Response::Data { data: r.read_buffer_opt()?, stat: read_stat(r)? }),
        GET_ACL => Ok(Response::Acl { acl: read_acls(r)?, stat: read_stat(r)? }),
        GET_CHILDREN => Ok(Response::Children(r.read_string_vec()?)),
        GET_CHILDREN2 => Ok(Response::Children2 { children: r.read_string_vec()?, stat: read_stat(r)? }),
        SYNC => Ok(Response::Sync { path: r.read_ustring()? }),
        MULTI => Ok(Response::Multi(read_multi_results(r)?)),
        MULTI_READ => Ok(Response::MultiRead(read_multi_read_results(r)?)),
        GET_ALL_CHILDREN_NUMBER => Ok(Response::Number(r.read_i32()?)),
        GET_EPHEMERALS => Ok(Response::Ephemerals(r.read_string_vec()?)),
        WHO_AM_I => Ok(Response::WhoAmI(r.read_vec(8, read_client_info)?)),
        SASL => Ok(Response::Sasl { token: r.read_buffer()? }),
        _ => Err(DecodeError::UnknownOpcode(op)),
    }
}

/// ClientInfo{authScheme, user}.
fn read_client_info(r: &mut JuteReader<'_>) -> Result<(String, String), DecodeError> {
    Ok((r.read_ustring()?, r.read_ustring()?))
}

fn write_response(w: &mut JuteWriter<'_>, body: &Response) {
    match body {
        Response::Empty => {}
        Response::Create { path } | Response::Sync { path } => w.write_ustring(path),
        Response::Create2 { path, stat } => {
            w.write_ustring(path);
            write_stat(w, stat);
        }
        Response::Stat(stat) => write_stat(w, stat),
        Response::Data { data, stat } => write_data(w, data.as_deref(), stat),
        Response::Acl { acl, stat } => {
            write_acls(w, acl);
            write_stat(w, stat);
        }
        Response::Children(children) | Response::Ephemerals(children) => w.write_string_vec(children),
        Response::Children2 { children, stat } => {
            w.write_string_vec(children);
            write_stat(w, stat);
        }
        Response::Multi(results) => write_multi_results(w, results),
        Response::MultiRead(results) => write_multi_read_results(w, results),
        Response::Number(n) | Response::ErrorResponse(n) => w.write_i32(*n),
        Response::WhoAmI(infos) => w.write_vec(infos, |w, (scheme, user)| {
            w.write_ustring(scheme);
            w.write_ustring(user);
        }),
        Response::Sasl { token } => w.write_buffer(token),
    }
}

/// GetDataResponse{data, stat}.
fn write_data(w: &mut JuteWriter<'_>, data: Option<&[u8]>, stat: &Stat) {
    w.write_buffer_opt(data);
    write_stat(w, stat);
}

/// ErrorResult: header {type -1, done false, err} then ErrorResponse{err}.
fn write_error_result(w: &mut JuteWriter<'_>, err: i32) {
    MultiHeader { op: opcode::ERROR, done: false, err }.write(w);
    w.write_i32(err);
}

fn result_header(op: i32) -> MultiHeader {
    MultiHeader { op, done: false, err: 0 }
}

/// OpResult.CreateResult has only two wire types: create (path) and create2 (path, stat);
/// createContainer and createTTL results travel as create2, the only other type
/// MultiResponse.deserialize accepts.
fn write_multi_results(w: &mut JuteWriter<'_>, results: &[(i32, MultiResult)]) {
    for (op, result) in results {
        match result {
            MultiResult::Create { path, .. } if *op == opcode::CREATE => {
                result_header(opcode::CREATE).write(w);
                w.write_ustring(path);
            }
            MultiResult::Create { path, stat } => {
                result_header(opcode::CREATE2).write(w);
                w.write_ustring(path);
                write_stat(w, stat);
            }
            MultiResult::Delete => result_header(opcode::DELETE).write(w),
            MultiResult::Check => result_header(opcode::CHECK).write(w),
            MultiResult::SetData(stat) => {
                result_header(opcode::SET_DATA).write(w);
                write_stat(w, stat);
            }
            MultiResult::Error(err) => write_error_result(w, *err),
        }
    }
    MultiHeader::END.write(w);
}

/// A multiRead op yields GetChildrenResponse or GetDataResponse (or an error). Any other
/// ReadResult is an engine bug: caught in debug builds, answered as ZMARSHALLINGERROR for that
/// op in release rather than a malformed frame.
fn write_multi_read_results(w: &mut JuteWriter<'_>, results: &[Result<ReadResult, i32>]) {
    for result in results {
        match result {
            Ok(ReadResult::Data { data, stat }) => {
                result_header(opcode::GET_DATA).write(w);
                write_data(w, data.as_deref(), stat);
            }
            Ok(ReadResult::Children(children) | ReadResult::Children2 { children, .. }) => {
                result_header(opcode::GET_CHILDREN).write(w);
                w.write_string_vec(children);
            }
            Ok(other) => {
                debug_assert!(false, "multiRead result cannot be encoded: {other:?}");
                write_error_result(w, ZkError::MarshallingError.code());
            }
            Err(err) => write_error_result(w, *err),
        }
    }
    MultiHeader::END.write(w);
}

/// Results up to the done header; each costs at least 9 bytes, so the loop is bounded.
fn read_multi_results(r: &mut JuteReader<'_>) -> Result<Vec<(i32, MultiResult)>, DecodeError> {
    let mut results = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(results);
        }
        let result = match h.op {
            opcode::CREATE => MultiResult::Create { path: r.read_ustring()?, stat: Stat::default() },
            opcode::CREATE2 => MultiResult::Create { path: r.read_ustring()?, stat: read_stat(r)? },
            opcode::DELETE => MultiResult::Delete,
            opcode::CHECK => MultiResult::Check,
            opcode::SET_DATA => MultiResult::SetData(read_stat(r)?),
            opcode::ERROR => MultiResult::Error(r.read_i32()?),
            other => return Err(DecodeError::InvalidMultiResult(other)),
        };
        results.push((h.op, result));
    }
}

fn read_multi_read_results(r: &mut JuteReader<'_>) -> Result<Vec<Result<ReadResult, i32>>, DecodeError> {
    let mut results = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(results);
        }
        let result = match h.op {
            opcode::GET_DATA => Ok(ReadResult::Data { data: r.read_buffer_opt()?, stat: read_stat(r)? }),
            opcode::GET_CHILDREN => Ok(ReadResult::Children(r.read_string_vec()?)),
            opcode::ERROR => Err(r.read_i32()?),
            other => return Err(DecodeError::InvalidMultiResult(other)),
        };
        results.push(result);
    }
}
