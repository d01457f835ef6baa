//! The ZooKeeper wire protocol: jute records and length-prefixed framing, both directions.
//! The server decodes requests and encodes replies; clients (loadgen, tests) encode requests
//! and decode replies. Records follow zookeeper.jute of ZooKeeper 3.8; multi framing follows
//! MultiOperationRecord.java and MultiResponse.java.
//!
//! Decoding never panics: every length is checked against the bytes that remain before it is
//! allocated. Null ustrings decode as "" (except where null means "unset", e.g. reconfig),
//! null buffers and vectors as empty.

mod codec;
mod records;
mod request;
mod response;
#[cfg(test)]
mod tests;

pub use codec::{frame_len, DecodeError, JuteReader, JuteWriter};
pub use records::{
    decode_connect_request, decode_connect_response, encode_connect_request, encode_connect_response, read_acls,
    read_stat, write_acls, write_stat, ConnectRequest, ConnectResponse, ReplyHeader, RequestHeader, STAT_BYTES,
};
pub use request::{decode_request, encode_request, Request};
pub use response::{decode_notification, decode_reply, encode_notification, encode_reply, Response};

/// ZooDefs.OpCode.
pub mod opcode {
    pub const NOTIFICATION: i32 = 0;
    pub const CREATE: i32 = 1;
    pub const DELETE: i32 = 2;
    pub const EXISTS: i32 = 3;
    pub const GET_DATA: i32 = 4;
    pub const SET_DATA: i32 = 5;
    pub const GET_ACL: i32 = 6;
    pub const SET_ACL: i32 = 7;
    pub const GET_CHILDREN: i32 = 8;
    pub const SYNC: i32 = 9;
    pub const PING: i32 = 11;
    pub const GET_CHILDREN2: i32 = 12;
    pub const CHECK: i32 = 13;
    pub const MULTI: i32 = 14;
    pub const CREATE2: i32 = 15;
    pub const RECONFIG: i32 = 16;
    pub const CHECK_WATCHES: i32 = 17;
    pub const REMOVE_WATCHES: i32 = 18;
    pub const CREATE_CONTAINER: i32 = 19;
    pub const DELETE_CONTAINER: i32 = 20;
    pub const CREATE_TTL: i32 = 21;
    pub const MULTI_READ: i32 = 22;
    pub const AUTH: i32 = 100;
    pub const SET_WATCHES: i32 = 101;
    pub const SASL: i32 = 102;
    pub const GET_EPHEMERALS: i32 = 103;
    pub const GET_ALL_CHILDREN_NUMBER: i32 = 104;
    pub const SET_WATCHES2: i32 = 105;
    pub const ADD_WATCH: i32 = 106;
    pub const WHO_AM_I: i32 = 107;
    pub const CREATE_SESSION: i32 = -10;
    pub const CLOSE_SESSION: i32 = -11;
    /// The type of an error result inside a multi reply.
    pub const ERROR: i32 = -1;
}

/// Reserved xids (ClientCnxn): replies and requests that are not client-numbered.
pub mod xid {
    pub const NOTIFICATION: i32 = -1;
    pub const PING: i32 = -2;
    pub const AUTH: i32 = -4;
    pub const SET_WATCHES: i32 = -8;
}
