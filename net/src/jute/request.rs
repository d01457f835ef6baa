//! Client requests: the `Request` enum, its decoding (server side) and encoding (client side).
//! One arm per ZooKeeper opcode; bodies follow zookeeper.jute, multi follows
//! MultiOperationRecord (a MultiHeader before each op, a done header at the end).

use engine::types::Acl;

use super::codec::{write_frame, DecodeError, JuteReader, JuteWriter};
use super::opcode;
use super::records::{read_acls, write_acls, MultiHeader, RequestHeader};

/// A decoded request body. The opcode lives in the RequestHeader, except for Create, whose
/// four opcodes share one arm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// CREATE, CREATE2, CREATE_CONTAINER or CREATE_TTL; `ttl_ms` is 0 unless CREATE_TTL.
    Create {
        opcode: i32,
        path: String,
        /// None = null data (jute length -1), kept apart from empty.
        data: Option<Vec<u8>>,
        acl: Vec<Acl>,
        flags: i32,
        ttl_ms: i64,
    },
    Delete {
        path: String,
        version: i32,
    },
    Exists {
        path: String,
        watch: bool,
    },
    GetData {
        path: String,
        watch: bool,
    },
    SetData {
        path: String,
        data: Option<Vec<u8>>,
        version: i32,
    },
    GetAcl {
        path: String,
    },
    SetAcl {
        path: String,
        acl: Vec<Acl>,
        version: i32,
    },
    GetChildren {
        path: String,
        watch: bool,
    },
    GetChildren2 {
        path: String,
        watch: bool,
    },
    Sync {
        path: String,
    },
    Ping,
    /// Only meaningful inside a multi, but decodable on its own as ZooKeeper does.
    Check {
        path: String,
        version: i32,
    },
    /// Ops are Create, Delete, SetData and Check.
    Multi(Vec<Request>),
    /// Ops are GetChildren and GetData.
    MultiRead(Vec<Request>),
    /// None stands for a null ustring (a field the client left unset).
    Reconfig {
        joining: Option<String>,
        leaving: Option<String>,
        new_members: Option<String>,
        config_id: i64,
    },
    CheckWatches {
        path: String,
        watcher_type: i32,
    },
    RemoveWatches {
        path: String,
        watcher_type: i32,
    },
    Auth {
        auth_type: i32,
        scheme: String,
        auth: Vec<u8>,
    },
    SetWatches {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
    },
    SetWatches2 {
        relative_zxid: i64,
        data: Vec<String>,
        exist: Vec<String>,
        child: Vec<String>,
        persistent: Vec<String>,
        persistent_recursive: Vec<String>,
    },
    GetEphemerals {
        prefix: String,
    },
    GetAllChildrenNumber {
        path: String,
    },
    AddWatch {
        path: String,
        mode: i32,
    },
    WhoAmI,
    CloseSession,
    Sasl {
        token: Vec<u8>,
    },
}

impl Request {
    /// The opcode this request travels under (for a RequestHeader or a MultiHeader).
    pub fn opcode(&self) -> i32 {
        use Request::*;
        match self {
            Create { opcode, .. } => *opcode,
            Delete { .. } => opcode::DELETE,
            Exists { .. } => opcode::EXISTS,
            GetData { .. } => opcode::GET_DATA,
            SetData { .. } => opcode::SET_DATA,
            GetAcl { .. } => opcode::GET_ACL,
            SetAcl { .. } => opcode::SET_ACL,
            GetChildren { .. } => opcode::GET_CHILDREN,
            GetChildren2 { .. } => opcode::GET_CHILDREN2,
            Sync { .. } => opcode::SYNC,
            Ping => opcode::PING,
            Check { .. } => opcode::CHECK,
            Multi(_) => opcode::MULTI,
            MultiRead(_) => opcode::MULTI_READ,
            Reconfig { .. } => opcode::RECONFIG,
            CheckWatches { .. } => opcode::CHECK_WATCHES,
            RemoveWatches { .. } => opcode::REMOVE_WATCHES,
            Auth { .. } => opcode::AUTH,
            SetWatches { .. } => opcode::SET_WATCHES,
            SetWatches2 { .. } => opcode::SET_WATCHES2,
            GetEphemerals { .. } => opcode::GET_EPHEMERALS,
            GetAllChildrenNumber { .. } => opcode::GET_ALL_CHILDREN_NUMBER,
            AddWatch { .. } => opcode::ADD_WATCH,
            WhoAmI => opcode::WHO_AM_I,
            CloseSession => opcode::CLOSE_SESSION,
            Sasl { .. } => opcode::SASL,
        }
    }
}

/// Decodes one request frame (the bytes after the 4-byte length prefix). On failure the
/// header is returned when it was readable, so the server can still answer the xid (with
/// ZUNIMPLEMENTED for `UnknownOpcode`, ZMARSHALLINGERROR otherwise). Trailing bytes after the
/// body are ignored, as ZooKeeper's server ignores them.
pub fn decode_request(frame: &[u8]) -> Result<(RequestHeader, Request), (Option<RequestHeader>, DecodeError)> {
    let mut r = JuteReader::new(frame);
    let header = RequestHeader::read(&mut r).map_err(|e| (None, e))?;
    let request = read_body(&mut r, header.opcode).map_err(|e| (Some(header), e))?;
    Ok((header, request))
}

/// Appends a complete request frame: length prefix, `header`, then `req`'s body. The header
/// is written as given (normally `RequestHeader { xid, opcode: req.opcode() }`).
pub fn encode_request(out: &mut Vec<u8>, header: &RequestHeader, req: &Request) {
    write_frame(out, |w| {
        header.write(w);
        write_body(w, req);
    });
}

fn read_body(r: &mut JuteReader<'_>, op: i32) -> Result<Request, DecodeError> {
    use opcode::*;
    match op {
        CREATE | CREATE2 | CREATE_CONTAINER | CREATE_TTL => read_create(r, op),
        DELETE => Ok(Request::Delete { path: r.read_ustring()?, version: r.read_i32()? }),
        EXISTS => Ok(Request::Exists { path: r.read_ustring()?, watch: r.read_bool()? }),
        GET_DATA => Ok(Request::GetData { path: r.read_ustring()?, watch: r.read_bool()? }),
        SET_DATA => read_set_data(r),
        GET_ACL => Ok(Request::GetAcl { path: r.read_ustring()? }),
        SET_ACL => read_set_acl(r),
        GET_CHILDREN => Ok(Request::GetChildren { path: r.read_ustring()?, watch: r.read_bool()? }),
        GET_CHILDREN2 => Ok(Request::GetChildren2 { path: r.read_ustring()?, watch: r.read_bool()? }),
        SYNC => Ok(Request::Sync { path: r.read_ustring()? }),
        PING => Ok(Request::Ping),
        CHECK => Ok(Request::Check { path: r.read_ustring()?, version: r.read_i32()? }),
        MULTI => Ok(Request::Multi(read_multi(r, MULTI)?)),
        MULTI_READ => Ok(Request::MultiRead(read_multi(r, MULTI_READ)?)),
        _ => read_session_body(r, op),
    }
}

/// Bodies of the requests about the session and its watches rather than about one znode.
fn read_session_body(r: &mut JuteReader<'_>, op: i32) -> Result<Request, DecodeError> {
    use opcode::*;
    match op {
        RECONFIG => read_reconfig(r),
        CHECK_WATCHES => Ok(Request::CheckWatches { path: r.read_ustring()?, watcher_type: r.read_i32()? }),
        REMOVE_WATCHES => Ok(Request::RemoveWatches { path: r.read_ustring()?, watcher_type: r.read_i32()? }),
        AUTH => read_auth(r),
        SET_WATCHES => read_set_watches(r),
        SET_WATCHES2 => read_set_watches2(r),
        GET_EPHEMERALS => Ok(Request::GetEphemerals { prefix: r.read_ustring()? }),
        GET_ALL_CHILDREN_NUMBER => Ok(Request::GetAllChildrenNumber { path: r.read_ustring()? }),
        ADD_WATCH => Ok(Request::AddWatch { path: r.read_ustring()?, mode: r.read_i32()? }),
        WHO_AM_I => Ok(Request::WhoAmI),
        CLOSE_SESSION => Ok(Request::CloseSession),
        SASL => Ok(Request::Sasl { token: r.read_buffer()? }),
        _ => Err(DecodeError::UnknownOpcode(op)),
    }
}

/// CreateRequest, or CreateTTLRequest (the same fields plus a trailing ttl) for CREATE_TTL.
fn read_create(r: &mut JuteReader<'_>, op: i32) -> Result<Request, DecodeError> {
    let path = r.read_ustring()?;
    let data = r.read_buffer_opt()?;
    let acl = read_acls(r)?;
    let flags = r.read_i32()?;
    let ttl_ms = if op == opcode::CREATE_TTL { r.read_i64()? } else { 0 };
    Ok(Request::Create { opcode: op, path, data, acl, flags, ttl_ms })
}

fn read_set_data(r: &mut JuteReader<'_>) -> Result<Request, DecodeError> {
    Ok(Request::SetData { path: r.read_ustring()?, data: r.read_buffer_opt()?, version: r.read_i32()? })
}

fn read_set_acl(r: &mut JuteReader<'_>) -> Result<Request, DecodeError> {
    Ok(Request::SetAcl { path: r.read_ustring()?, acl: read_acls(r)?, version: r.read_i32()? })
}

fn read_reconfig(r: &mut JuteReader<'_>) -> Result<Request, DecodeError> {
    Ok(Request::Reconfig {
        joining: r.read_ustring_opt()?,
        leaving: r.read_ustring_opt()?,
        new_members: r.read_ustring_opt()?,
        config_id: r.read_i64()?,
    })
}

fn read_auth(r: &mut JuteReader<'_>) -> Result<Request, DecodeError> {
    Ok(Request::Auth { auth_type: r.read_i32()?, scheme: r.read_ustring()?, auth: r.read_buffer()? })
}

fn read_set_watches(r: &mut JuteReader<'_>) -> Result<Request, DecodeError> {
    Ok(Request::SetWatches {
        relative_zxid: r.read_i64()?,
        data: r.read_string_vec()?,
        exist: r.read_string_vec()?,
        child: r.read_string_vec()?,
    })
}

fn read_set_watches2(r: &mut JuteReader<'_>) -> Result<Request, DecodeError> {
    Ok(Request::SetWatches2 {
        relative_zxid: r.read_i64()?,
        data: r.read_string_vec()?,
        exist: r.read_string_vec()?,
        child: r.read_string_vec()?,
        persistent: r.read_string_vec()?,
        persistent_recursive: r.read_string_vec()?,
    })
}

/// Whether `op` may appear inside `multi`: MultiOperationRecord refuses to mix transactions
/// with reads, and knows no other ops. Refusing here also rules out nested multis, so decoding
/// never recurses.
fn allowed_in_multi(multi: i32, op: i32) -> bool {
    use opcode::*;
    match multi {
        MULTI => matches!(op, CREATE | CREATE2 | CREATE_CONTAINER | CREATE_TTL | DELETE | SET_DATA | CHECK),
        _ => matches!(op, GET_CHILDREN | GET_DATA),
    }
}

/// The ops of a multi up to the done header. Each op costs at least a 9-byte header, so the
/// loop is bounded by the frame size.
fn read_multi(r: &mut JuteReader<'_>, multi: i32) -> Result<Vec<Request>, DecodeError> {
    let mut ops = Vec::new();
    loop {
        let h = MultiHeader::read(r)?;
        if h.done {
            return Ok(ops);
        }
        if !allowed_in_multi(multi, h.op) {
            return Err(DecodeError::InvalidMultiOp { multi, op: h.op });
        }
        ops.push(read_body(r, h.op)?);
    }
}

fn write_body(w: &mut JuteWriter<'_>, req: &Request) {
    use Request::*;
    match req {
        Create { opcode, path, data, acl, flags, ttl_ms } => {
            write_create(w, *opcode, path, data.as_deref(), acl, *flags, *ttl_ms)
        }
        Delete { path, version } | Check { path, version } => write_path_int(w, path, *version),
        CheckWatches { path, watcher_type } | RemoveWatches { path, watcher_type } => {
            write_path_int(w, path, *watcher_type)
        }
        AddWatch { path, mode } => write_path_int(w, path, *mode),
        Exists { path, watch }
        | GetData { path, watch }
        | GetChildren { path, watch }
        | GetChildren2 { path, watch } => {
            w.write_ustring(path);
            w.write_bool(*watch);
        }
        SetData { path, data, version } => {
            w.write_ustring(path);
            w.write_buffer_opt(data.as_deref());
            w.write_i32(*version);
        }
        GetAcl { path } | Sync { path } | GetAllChildrenNumber { path } => w.write_ustring(path),
        GetEphemerals { prefix } => w.write_ustring(prefix),
        SetAcl { path, acl, version } => {
            w.write_ustring(path);
            write_acls(w, acl);
            w.write_i32(*version);
        }
        Ping | WhoAmI | CloseSession => {}
        Multi(ops) | MultiRead(ops) => write_multi(w, ops),
        Reconfig { joining, leaving, new_members, config_id } => {
            w.write_ustring_opt(joining.as_deref());
            w.write_ustring_opt(leaving.as_deref());
            w.write_ustring_opt(new_members.as_deref());
            w.write_i64(*config_id);
        }
        Auth { auth_type, scheme, auth } => {
            w.write_i32(*auth_type);
            w.write_ustring(scheme);
            w.write_buffer(auth);
        }
        SetWatches { relative_zxid, data, exist, child } => write_watch_lists(w, *relative_zxid, &[data, exist, child]),
        SetWatches2 { relative_zxid, data, exist, child, persistent, persistent_recursive } => {
            let lists = [data, exist, child, persistent, persistent_recursive];
            write_watch_lists(w, *relative_zxid, &lists)
        }
        Sasl { token } => w.write_buffer(token),
    }
}

fn write_watch_lists(w: &mut JuteWriter<'_>, relative_zxid: i64, lists: &[&Vec<String>]) {
    w.write_i64(relative_zxid);
    for list in lists {
        w.write_string_vec(list);
    }
}

fn write_path_int(w: &mut JuteWriter<'_>, path: &str, v: i32) {
    w.write_ustring(path);
    w.write_i32(v);
}

fn write_create(
    w: &mut JuteWriter<'_>,
    op: i32,
    path: &str,
    data: Option<&[u8]>,
    acl: &[Acl],
    flags: i32,
    ttl_ms: i64,
) {
    w.write_ustring(path);
    w.write_buffer_opt(data);
    write_acls(w, acl);
    w.write_i32(flags);
    if op == opcode::CREATE_TTL {
        w.write_i64(ttl_ms);
    }
}

/// Ops are written as given, even ones a server will refuse, so tests can send bad multis.
/// The op headers carry err -1, as MultiOperationRecord writes them.
fn write_multi(w: &mut JuteWriter<'_>, ops: &[Request]) {
    for op in ops {
        MultiHeader { op: op.opcode(), done: false, err: -1 }.write(w);
        write_body(w, op);
    }
    MultiHeader::END.write(w);
}
