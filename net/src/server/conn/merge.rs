//! Pure functions turning the answers of a request's parts (one per shard it went to) into
//! the reply: one shard's result encoded by opcode, the merged view of "/", the union of
//! ephemerals, the first error of a request done in every shard. No state, so tested alone.

use super::slots::Kind;
use super::Parts;
use crate::jute::{self, Response};
use crate::server::msg::ReplyBody;
use engine::request::{ReadResult, WriteResult};
use engine::types::Stat;
use engine::ZkError;

fn take_bodies(parts: Parts) -> Vec<ReplyBody> {
    parts.into_iter().map(|p| p.expect("every part answered")).collect()
}

fn read_result(body: ReplyBody) -> Result<ReadResult, ZkError> {
    match body {
        ReplyBody::Read(result) => result,
        _ => Err(ZkError::SystemError),
    }
}

fn write_result(body: ReplyBody) -> Result<WriteResult, ZkError> {
    match body {
        ReplyBody::Write(result) => result,
        _ => Err(ZkError::SystemError),
    }
}

/// Turns the answers of a slot's parts into the reply.
pub(super) fn merge(kind: Kind, parts: Parts) -> Result<Response, ZkError> {
    let mut bodies = take_bodies(parts);
    match kind {
        Kind::Op(opcode) => {
            let body = bodies.pop().expect("one part");
            match body {
                ReplyBody::Read(result) => Ok(read_response(opcode, result?)),
                ReplyBody::Write(result) => Ok(write_response(opcode, result?)),
                ReplyBody::Synced | ReplyBody::Session(_) | ReplyBody::Renewed(_) => Ok(Response::Empty),
            }
        }
        Kind::Broadcast(opcode) => {
            // Every shard must have applied it; shard 0's result speaks for "/".
            let results: Vec<_> = bodies.into_iter().map(write_result).collect::<Result<_, _>>()?;
            let first = results.into_iter().next().expect("shard 0 answers");
            Ok(write_response(opcode, first))
        }
        Kind::Root(opcode) => merge_root(opcode, bodies),
        Kind::Sync(path) => Ok(Response::Sync { path }),
        Kind::Multi(opcodes) => match write_result(bodies.pop().expect("one part"))? {
            WriteResult::Multi(results) => Ok(Response::Multi(opcodes.into_iter().zip(results).collect())),
            _ => Err(ZkError::SystemError),
        },
        Kind::MultiRead => {
            Ok(Response::MultiRead(bodies.into_iter().map(|b| read_result(b).map_err(|e| e.code())).collect()))
        }
        Kind::Ephemerals => {
            let mut all = Vec::new();
            for body in bodies {
                if let ReadResult::Paths(paths) = read_result(body)? {
                    all.extend(paths);
                }
            }
            all.sort();
            Ok(Response::Ephemerals(all))
        }
        Kind::AnyWatch => {
            let results: Vec<_> = bodies.into_iter().map(read_result).collect();
            if results.iter().any(|r| r.is_ok()) {
                Ok(Response::Empty)
            } else {
                Err(results.into_iter().find_map(|r| r.err()).unwrap_or(ZkError::NoWatcher))
            }
        }
        Kind::Done => first_error(bodies).map(|()| Response::Empty),
        Kind::AddWatch => first_error(bodies).map(|()| Response::ErrorResponse(0)),
        Kind::CloseSession | Kind::Connect { .. } | Kind::Ready { .. } => unreachable!("finished by Conn::finish"),
        Kind::RootAcl { .. } => unreachable!("a RootAcl slot becomes Broadcast when shard 0 answers"),
        Kind::Txn(_) => unreachable!("a Txn slot becomes Ready once its parts are answered"),
        Kind::OpenSession { .. } => unreachable!("an OpenSession slot becomes Connect when shard 0 answers"),
        Kind::Reattach { .. } => unreachable!("a Reattach slot becomes Connect once its parts are answered"),
    }
}

/// The first error among the parts of a request that is done when every part is.
fn first_error(bodies: Vec<ReplyBody>) -> Result<(), ZkError> {
    for body in bodies {
        if let ReplyBody::Read(Err(e)) | ReplyBody::Write(Err(e)) = body {
            return Err(e);
        }
    }
    Ok(())
}

fn read_response(opcode: i32, result: ReadResult) -> Response {
    match result {
        ReadResult::Stat(stat) => Response::Stat(stat),
        ReadResult::Data { data, stat } => Response::Data { data, stat },
        ReadResult::Children(children) => Response::Children(children),
        ReadResult::Children2 { children, stat } => Response::Children2 { children, stat },
        ReadResult::Acl { acl, stat } => Response::Acl { acl, stat },
        ReadResult::Number(n) => Response::Number(n),
        ReadResult::Paths(paths) => Response::Ephemerals(paths),
        ReadResult::Multi(results) => {
            Response::MultiRead(results.into_iter().map(|r| r.map_err(|e| e.code())).collect())
        }
        ReadResult::Done => {
            let _ = opcode;
            Response::Empty
        }
    }
}

fn write_response(opcode: i32, result: WriteResult) -> Response {
    match result {
        WriteResult::Created { path, stat } => match opcode {
            jute::opcode::CREATE => Response::Create { path },
            _ => Response::Create2 { path, stat },
        },
        WriteResult::Stat(stat) => Response::Stat(stat),
        WriteResult::Multi(results) => Response::Multi(results.into_iter().map(|r| (opcode, r)).collect()),
        WriteResult::Deleted
        | WriteResult::SessionCreated
        | WriteResult::SessionClosed
        | WriteResult::Reaped(_)
        | WriteResult::Moved(_)
        | WriteResult::Txn(_) => Response::Empty,
    }
}

/// Merges every shard's view of "/" (part i is shard i).
fn merge_root(opcode: i32, bodies: Vec<ReplyBody>) -> Result<Response, ZkError> {
    let results: Vec<ReadResult> = bodies.into_iter().map(read_result).collect::<Result<_, _>>()?;
    let stats: Vec<Stat> = results.iter().filter_map(result_stat).collect();
    let merged_stat = merge_root_stats(&stats);
    let mut children: Vec<String> = Vec::new();
    let mut total = 0i32;
    for result in &results {
        match result {
            ReadResult::Children(c) | ReadResult::Children2 { children: c, .. } => children.extend(c.iter().cloned()),
            ReadResult::Number(n) => total += n,
            _ => {}
        }
    }
    children.sort();
    let first = results.into_iter().next().expect("shard 0 answers");
    Ok(match first {
        ReadResult::Stat(_) => Response::Stat(merged_stat),
        ReadResult::Data { data, .. } => Response::Data { data, stat: merged_stat },
        ReadResult::Acl { acl, .. } => Response::Acl { acl, stat: merged_stat },
        ReadResult::Children(_) => Response::Children(children),
        ReadResult::Children2 { .. } => Response::Children2 { children, stat: merged_stat },
        ReadResult::Number(_) => Response::Number(total),
        other => read_response(opcode, other),
    })
}

fn result_stat(result: &ReadResult) -> Option<Stat> {
    match result {
        ReadResult::Stat(s)
        | ReadResult::Data { stat: s, .. }
        | ReadResult::Acl { stat: s, .. }
        | ReadResult::Children2 { stat: s, .. } => Some(*s),
        _ => None,
    }
}

/// The Stat of "/": shard 0's, with children counted over all shards.
fn merge_root_stats(stats: &[Stat]) -> Stat {
    let Some(first) = stats.first() else { return Stat::default() };
    let mut merged = *first;
    merged.num_children = stats.iter().map(|s| s.num_children).sum();
    merged.cversion = stats.iter().map(|s| s.cversion).sum();
    merged.pzxid = stats.iter().map(|s| s.pzxid).max().unwrap_or(0);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::request::MultiResult;
    use engine::types::{Acl, Id};

    fn parts(bodies: Vec<ReplyBody>) -> Parts {
        bodies.into_iter().map(Some).collect()
    }

    fn read(result: ReadResult) -> ReplyBody {
        ReplyBody::Read(Ok(result))
    }

    fn stat(num_children: i32, cversion: i32, pzxid: i64, version: i32) -> Stat {
        Stat { num_children, cversion, pzxid, version, ..Stat::default() }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn merge_root_stats_sums_children_and_cversion_and_takes_the_highest_pzxid() {
        let merged = merge_root_stats(&[stat(2, 5, 100, 7), stat(3, 4, 300, 9), stat(0, 1, 200, 1)]);
        assert_eq!(merged.num_children, 5);
        assert_eq!(merged.cversion, 10);
        assert_eq!(merged.pzxid, 300);
        assert_eq!(merged.version, 7, "the rest of the Stat is shard 0's");
        assert_eq!(merge_root_stats(&[]), Stat::default());
    }

    #[test]
    fn merge_root_children2_unions_and_sorts_the_children() {
        let bodies = vec![
            read(ReadResult::Children2 { children: names(&["b", "zk"]), stat: stat(2, 2, 10, 0) }),
            read(ReadResult::Children2 { children: names(&["a", "c"]), stat: stat(2, 3, 30, 0) }),
        ];
        let merged = merge(Kind::Root(jute::opcode::GET_CHILDREN2), parts(bodies)).unwrap();
        assert_eq!(merged, Response::Children2 { children: names(&["a", "b", "c", "zk"]), stat: stat(4, 5, 30, 0) });
    }

    #[test]
    fn merge_root_takes_data_and_acl_from_shard_0() {
        let data = |bytes: &[u8], s| read(ReadResult::Data { data: Some(bytes.to_vec()), stat: s });
        let bodies = vec![data(b"zero", stat(1, 1, 5, 3)), data(b"one", stat(2, 1, 9, 4))];
        let merged = merge(Kind::Root(jute::opcode::GET_DATA), parts(bodies)).unwrap();
        assert_eq!(merged, Response::Data { data: Some(b"zero".to_vec()), stat: stat(3, 2, 9, 3) });

        let other = vec![Acl { perms: 1, id: Id::new("digest", "bob:x") }];
        let acl = |acl: Vec<Acl>| read(ReadResult::Acl { acl, stat: stat(1, 0, 0, 0) });
        let bodies = vec![acl(Acl::open_unsafe()), acl(other)];
        let merged = merge(Kind::Root(jute::opcode::GET_ACL), parts(bodies)).unwrap();
        assert_eq!(merged, Response::Acl { acl: Acl::open_unsafe(), stat: stat(2, 0, 0, 0) });
    }

    #[test]
    fn merge_root_sums_numbers_and_fails_on_any_shard_error() {
        let bodies = vec![read(ReadResult::Number(3)), read(ReadResult::Number(4))];
        let merged = merge(Kind::Root(jute::opcode::GET_ALL_CHILDREN_NUMBER), parts(bodies));
        assert_eq!(merged, Ok(Response::Number(7)));

        let bodies = vec![read(ReadResult::Children(names(&["a"]))), ReplyBody::Read(Err(ZkError::NoAuth))];
        assert_eq!(merge(Kind::Root(jute::opcode::GET_CHILDREN), parts(bodies)), Err(ZkError::NoAuth));
    }

    #[test]
    fn ephemerals_are_the_sorted_union() {
        let bodies = vec![read(ReadResult::Paths(names(&["/b/1", "/a"]))), read(ReadResult::Paths(names(&["/a/2"])))];
        assert_eq!(merge(Kind::Ephemerals, parts(bodies)), Ok(Response::Ephemerals(names(&["/a", "/a/2", "/b/1"]))));
    }

    #[test]
    fn any_watch_succeeds_if_any_shard_had_the_watch_else_gives_the_first_error() {
        let missing = || ReplyBody::Read(Err(ZkError::NoWatcher));
        let bodies = vec![missing(), read(ReadResult::Done), missing()];
        assert_eq!(merge(Kind::AnyWatch, parts(bodies)), Ok(Response::Empty));
        let bodies = vec![ReplyBody::Read(Err(ZkError::NoAuth)), missing()];
        assert_eq!(merge(Kind::AnyWatch, parts(bodies)), Err(ZkError::NoAuth));
    }

    #[test]
    fn done_and_add_watch_return_the_first_error() {
        let bodies = || {
            vec![read(ReadResult::Done), ReplyBody::Read(Err(ZkError::NoNode)), ReplyBody::Read(Err(ZkError::NoAuth))]
        };
        assert_eq!(merge(Kind::Done, parts(bodies())), Err(ZkError::NoNode));
        assert_eq!(merge(Kind::AddWatch, parts(bodies())), Err(ZkError::NoNode));
        let fine = || vec![read(ReadResult::Done), read(ReadResult::Done)];
        assert_eq!(merge(Kind::Done, parts(fine())), Ok(Response::Empty));
        assert_eq!(merge(Kind::AddWatch, parts(fine())), Ok(Response::ErrorResponse(0)));
    }

    #[test]
    fn multi_zips_each_opcode_with_its_result() {
        let results = vec![MultiResult::Create { path: "/a".into(), stat: Stat::default() }, MultiResult::Delete];
        let body = ReplyBody::Write(Ok(WriteResult::Multi(results.clone())));
        let opcodes = vec![jute::opcode::CREATE2, jute::opcode::DELETE];
        let merged = merge(Kind::Multi(opcodes.clone()), parts(vec![body]));
        assert_eq!(merged, Ok(Response::Multi(opcodes.into_iter().zip(results).collect())));
    }

    #[test]
    fn broadcast_answers_with_shard_0_and_fails_if_any_shard_failed() {
        let applied = |version| ReplyBody::Write(Ok(WriteResult::Stat(stat(0, 0, 0, version))));
        let merged = merge(Kind::Broadcast(jute::opcode::SET_ACL), parts(vec![applied(1), applied(2)]));
        assert_eq!(merged, Ok(Response::Stat(stat(0, 0, 0, 1))));
        let failed = ReplyBody::Write(Err(ZkError::BadVersion));
        let merged = merge(Kind::Broadcast(jute::opcode::SET_ACL), parts(vec![applied(1), failed]));
        assert_eq!(merged, Err(ZkError::BadVersion));
    }

    #[test]
    fn one_shard_ops_encode_by_opcode() {
        let created = || ReplyBody::Write(Ok(WriteResult::Created { path: "/a".into(), stat: stat(0, 0, 0, 2) }));
        let merged = merge(Kind::Op(jute::opcode::CREATE), parts(vec![created()]));
        assert_eq!(merged, Ok(Response::Create { path: "/a".into() }));
        let merged = merge(Kind::Op(jute::opcode::CREATE2), parts(vec![created()]));
        assert_eq!(merged, Ok(Response::Create2 { path: "/a".into(), stat: stat(0, 0, 0, 2) }));
        let merged = merge(Kind::Op(jute::opcode::EXISTS), parts(vec![ReplyBody::Read(Err(ZkError::NoNode))]));
        assert_eq!(merged, Err(ZkError::NoNode));
        assert_eq!(merge(Kind::Op(jute::opcode::SYNC), parts(vec![ReplyBody::Synced])), Ok(Response::Empty));
    }

    #[test]
    fn multi_read_keeps_each_result_or_error_code_in_op_order() {
        let bodies = vec![read(ReadResult::Children(names(&["x"]))), ReplyBody::Read(Err(ZkError::NoNode))];
        let merged = merge(Kind::MultiRead, parts(bodies));
        let expected = vec![Ok(ReadResult::Children(names(&["x"]))), Err(ZkError::NoNode.code())];
        assert_eq!(merged, Ok(Response::MultiRead(expected)));
    }
}
