"""kazoo (the Python ZooKeeper client) and its recipes against warren.

Every wait is bounded; every test asserts. Each test keeps its nodes under its own top-level
node (`root` fixture) so transactions stay in one shard.
"""
import threading
import time
import uuid

import pytest
from kazoo.exceptions import (BadVersionError, ConnectionLoss, LockTimeout, NodeExistsError, NoNodeError, NotEmptyError,
                              RolledBackError)
from kazoo.protocol.states import EventType

WAIT = 15  # seconds, the bound on every wait below


def wait_for(pred, timeout=WAIT, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def try_acquire(lock, timeout):
    """Lock.acquire raises LockTimeout on time-out; this answers True/False."""
    try:
        return bool(lock.acquire(timeout=timeout))
    except LockTimeout:
        return False


def join_all(threads, timeout=WAIT):
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    stuck = [t.name for t in threads if t.is_alive()]
    assert not stuck, f"threads did not finish within {timeout}s: {stuck}"


def test_basic_crud_and_stat(zk, root):
    path = zk.create(f"{root}/a", b"hello")
    assert path == f"{root}/a"
    data, stat = zk.get(path)
    assert data == b"hello" and stat.version == 0 and stat.dataLength == 5
    stat = zk.set(path, b"world", version=0)
    assert stat.version == 1
    with pytest.raises(BadVersionError):
        zk.set(path, b"x", version=0)
    with pytest.raises(NodeExistsError):
        zk.create(path)
    zk.create(f"{path}/kid")
    with pytest.raises(NotEmptyError):
        zk.delete(path)
    assert zk.get_children(path) == ["kid"]
    children, stat = zk.get_children(path, include_data=True)
    assert children == ["kid"] and stat.numChildren == 1
    zk.delete(path, recursive=True)
    assert zk.exists(path) is None
    with pytest.raises(NoNodeError):
        zk.get(path)
    zk.ensure_path(f"{root}/x/y/z")
    assert zk.exists(f"{root}/x/y/z") is not None
    seq = zk.create(f"{root}/s-", sequence=True)
    suffix = seq[len(f"{root}/s-"):]
    assert len(suffix) == 10 and suffix.isdigit(), seq


def test_sequence_follows_parent_cversion(zk, root):
    a = zk.create(f"{root}/q-", sequence=True)
    b = zk.create(f"{root}/q-", sequence=True)
    e = zk.create(f"{root}/q-", ephemeral=True, sequence=True)
    assert [a, b, e] == [f"{root}/q-0000000000", f"{root}/q-0000000001", f"{root}/q-0000000002"]


def test_ephemeral_goes_with_session(make_client, zk, root):
    owner = make_client()
    owner.create(f"{root}/e", ephemeral=True)
    zk.sync(f"{root}/e")  # on a cluster owner's write went through another server
    assert zk.exists(f"{root}/e").ephemeralOwner == owner.client_id[0]
    owner.stop()
    owner.close()
    assert wait_for(lambda: zk.exists(f"{root}/e") is None), "ephemeral outlived its closed session"


def test_transaction_commit_and_rollback(zk, root):
    zk.create(f"{root}/keep", b"v0")
    t = zk.transaction()
    t.create(f"{root}/t1", b"one")
    t.check(f"{root}/keep", 0)
    t.set_data(f"{root}/keep", b"v1", version=0)
    t.create(f"{root}/t2")
    t.delete(f"{root}/t2")
    results = t.commit()
    assert results[0] == f"{root}/t1"
    assert results[1] is True
    assert results[2].version == 1
    assert results[3] == f"{root}/t2" and results[4] is True
    assert zk.get(f"{root}/keep")[0] == b"v1"

    t = zk.transaction()
    t.create(f"{root}/t3")
    t.set_data(f"{root}/keep", b"nope", version=0)  # BadVersion: the version is 1 now
    t.create(f"{root}/t4")
    results = t.commit()
    assert isinstance(results[0], RolledBackError), results
    assert isinstance(results[1], BadVersionError), results
    assert isinstance(results[2], RolledBackError) or results[2].__class__.__name__ == "RuntimeInconsistency", results
    assert zk.exists(f"{root}/t3") is None and zk.exists(f"{root}/t4") is None
    assert zk.get(f"{root}/keep")[0] == b"v1"


def warren_shard(path, shards=8):
    """warren's shard of a path (engine::path::shard_of): FNV-1a of its first component."""
    h = 0xcbf29ce484222325
    for b in path.strip("/").split("/")[0].encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h % shards


def names_in_shards(roles, shards):
    """Top-level paths, one per role, in the given shards of warren's 8 (shard s lives on core
    s mod cores)."""
    u = uuid.uuid4().hex[:10]
    paths = []
    for role, shard in zip(roles, shards):
        paths.append(next(p for p in (f"/kafka-{u}-{role}-{k}" for k in range(1000)) if warren_shard(p) == shard))
    return paths


def names_in_shards_of_one_core(roles):
    """Top-level paths in different shards of warren's core 0 whether it runs 1 or 2 cores
    (shards 0, 2, 4...): one Raft group."""
    return names_in_shards(roles, range(0, 8, 2))


def names_in_shards_of_two_cores(roles):
    """Top-level paths in shards 0, 1, 2...: with 2 cores, in both Raft groups."""
    return names_in_shards(roles, range(0, 8))


@pytest.mark.parametrize("spread", [names_in_shards_of_one_core, names_in_shards_of_two_cores])
def test_kafka_shaped_transaction_across_top_level_nodes(zk, spread):
    """Kafka's controller writes in ZooKeeper mode: every write a multi guarded by the version of
    /controller_epoch, over nodes under other top-level nodes (other shards on warren, and with
    WARREN_CORES=2 other Raft groups)."""
    epoch, brokers, admin = spread(["controller_epoch", "brokers", "admin"])
    zk.create(epoch, b"1")
    zk.create(f"{brokers}/topics", makepath=True)
    zk.create(admin, b"a0")

    t = zk.transaction()
    t.check(epoch, 0)
    t.create(f"{brokers}/topics/t1", b"partitions")
    t.set_data(admin, b"a1")
    results = t.commit()
    assert results[0] is True and results[1] == f"{brokers}/topics/t1" and results[2].version == 1, results
    assert zk.get(f"{brokers}/topics/t1")[0] == b"partitions" and zk.get(admin)[0] == b"a1"

    t = zk.transaction()
    t.check(epoch, 5)  # a stale controller: nothing may happen
    t.create(f"{brokers}/topics/t2")
    t.set_data(admin, b"stale")
    results = t.commit()
    assert isinstance(results[0], BadVersionError), results
    assert all(isinstance(r, RolledBackError) or r.__class__.__name__ == "RuntimeInconsistency" for r in results[1:]), results
    assert zk.exists(f"{brokers}/topics/t2") is None and zk.get(admin)[0] == b"a1"

    t = zk.transaction()
    t.create(f"{brokers}/topics/t3")
    t.set_data(admin, b"a2")
    t.delete(f"{epoch}/missing")  # fails last: the ops before it, in other shards, are taken back
    results = t.commit()
    assert isinstance(results[0], RolledBackError) and isinstance(results[2], NoNodeError), results
    assert zk.exists(f"{brokers}/topics/t3") is None and zk.get(admin)[0] == b"a1"


def test_sequential_children_of_root_are_numbered_from_one_counter(make_client, zk):
    """ZooKeeper numbers the children of one parent from one counter. On warren the children of
    / are spread over shards (and, with WARREN_CORES=2, Raft groups) by name: prefixes whose
    plain names land in different shards must still get unique, increasing numbers."""
    prefixes = [p + "-" for p in names_in_shards_of_two_cores(["q", "job", "zz", "lock"])]
    clients = [zk, make_client()]
    made = []
    try:
        for i in range(16):
            client = clients[i % 2]
            made.append(client.create(prefixes[i % len(prefixes)], sequence=True, ephemeral=(i % 3 == 0)))
        numbers = [int(path[-10:]) for path in made]
        assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers), made
        children = set(zk.get_children("/"))
        assert all(path[1:] in children for path in made), made
    finally:
        for path in made:
            if zk.exists(path):
                zk.delete(path)


def test_lock_mutual_exclusion(make_client, root):
    clients = [make_client(), make_client()]
    inside = []
    overlaps = []
    counter = {"n": 0}
    guard = threading.Lock()

    def worker(client, name):
        lock = client.Lock(f"{root}/lock", name)
        for _ in range(15):
            assert try_acquire(lock, WAIT), f"{name} could not take the lock"
            try:
                with guard:
                    inside.append(name)
                    if len(inside) > 1:
                        overlaps.append(list(inside))
                n = counter["n"]
                time.sleep(0.002)
                counter["n"] = n + 1
                with guard:
                    inside.remove(name)
            finally:
                lock.release()

    threads = [threading.Thread(target=worker, args=(c, f"w{i}"), name=f"w{i}") for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    join_all(threads, timeout=60)
    assert overlaps == [], f"two holders at once: {overlaps[:3]}"
    assert counter["n"] == 30


def test_lock_contenders_and_blocking(make_client, root):
    a, b = make_client(), make_client()
    la = a.Lock(f"{root}/lk", "alice")
    lb = b.Lock(f"{root}/lk", "bob")
    assert try_acquire(la, WAIT)
    got = threading.Event()

    def take():
        if try_acquire(lb, WAIT):
            got.set()

    t = threading.Thread(target=take)
    t.start()
    assert wait_for(lambda: len(la.contenders()) == 2)
    assert la.contenders() == ["alice", "bob"]
    assert not got.wait(0.5), "bob got the lock while alice holds it"
    la.release()
    assert got.wait(WAIT), "bob never got the released lock"
    join_all([t])
    lb.release()


def test_lock_released_when_holder_session_dies(make_client, root):
    a, b = make_client(), make_client()
    assert try_acquire(a.Lock(f"{root}/lk", "a"), WAIT)
    lb = b.Lock(f"{root}/lk", "b")
    assert not try_acquire(lb, 0.5)
    a.stop()
    a.close()
    assert try_acquire(lb, WAIT), "lock not freed when its holder's session closed"
    lb.release()


def test_election(make_client, root):
    clients = [make_client() for _ in range(3)]
    elections = [c.Election(f"{root}/election", f"node{i}") for i, c in enumerate(clients)]
    leaders = []
    release = [threading.Event() for _ in clients]
    guard = threading.Lock()

    def lead(i):
        with guard:
            leaders.append(i)
        release[i].wait(WAIT)

    threads = [threading.Thread(target=elections[i].run, args=(lead, i), name=f"e{i}") for i in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.1)  # join in order, so node0 leads first
    assert wait_for(lambda: len(leaders) == 1)
    assert wait_for(lambda: len(elections[0].contenders()) == 3)
    assert elections[0].contenders()[0] == f"node{leaders[0]}"
    for _ in range(3):
        current = leaders[-1]
        n = len(leaders)
        time.sleep(0.2)
        assert len(leaders) == n, "a second leader while the first one leads"
        release[current].set()
        if n < 3:
            assert wait_for(lambda: len(leaders) == n + 1), "no new leader after the leader quit"
    join_all(threads)
    assert sorted(leaders) == [0, 1, 2]


def test_party_and_shallow_party(make_client, root):
    clients = [make_client() for _ in range(3)]
    for kind in ("Party", "ShallowParty"):
        parties = [getattr(c, kind)(f"{root}/{kind}", f"member{i}") for i, c in enumerate(clients)]
        for p in parties:
            p.join()
        # On a cluster the members joined through other servers: a reader syncs first, as it
        # must on a ZooKeeper ensemble (reads are served by the server a client is on).
        clients[0].sync(f"{root}/{kind}")
        clients[1].sync(f"{root}/{kind}")
        assert len(parties[0]) == 3
        assert sorted(parties[1]) == ["member0", "member1", "member2"]
        parties[1].leave()
        assert wait_for(lambda: sorted(parties[0]) == ["member0", "member2"])
        # A member whose session ends leaves the party.
        clients[2].stop()
        assert wait_for(lambda: sorted(parties[0]) == ["member0"]), f"{kind}: {list(parties[0])}"
        clients[2].start(timeout=WAIT)
        parties[0].leave()
        assert len(parties[0]) == 0


def test_data_watch_sees_every_change(make_client, zk, root):
    writer = make_client()
    seen = []
    done = threading.Event()
    path = f"{root}/watched"

    @zk.DataWatch(path)
    def on_change(data, stat, event=None):
        seen.append((data, stat.version if stat else None, event.type if event else None))
        if data == b"3":
            done.set()

    assert wait_for(lambda: seen and seen[0] == (None, None, None)), "initial call for a missing node"
    writer.create(path, b"0")
    assert wait_for(lambda: any(d == b"0" for d, _, _ in seen))
    for v in (b"1", b"2", b"3"):
        writer.set(path, v)
        assert wait_for(lambda: seen[-1][0] == v), f"DataWatch missed {v!r}: {seen}"
    assert done.wait(WAIT)
    writer.delete(path)
    assert wait_for(lambda: seen[-1][0] is None and seen[-1][2] == EventType.DELETED), seen
    versions = [v for _, v, _ in seen if v is not None]
    assert versions == sorted(versions), f"versions out of order: {seen}"


def test_children_watch_sees_membership(make_client, zk, root):
    writer = make_client()
    path = f"{root}/group"
    zk.create(path)
    seen = []

    @zk.ChildrenWatch(path)
    def on_children(children):
        seen.append(sorted(children))

    assert wait_for(lambda: seen and seen[-1] == [])
    writer.create(f"{path}/a")
    assert wait_for(lambda: seen[-1] == ["a"]), seen
    writer.create(f"{path}/b", ephemeral=True)
    assert wait_for(lambda: seen[-1] == ["a", "b"]), seen
    writer.stop()  # b is ephemeral: it leaves with the session
    assert wait_for(lambda: seen[-1] == ["a"]), seen
    zk.delete(f"{path}/a")
    assert wait_for(lambda: seen[-1] == []), seen


def test_barrier(make_client, root):
    holder, waiter = make_client(), make_client()
    barrier = holder.Barrier(f"{root}/barrier")
    barrier.create()
    passed = threading.Event()

    # On a cluster the barrier was created through another server: sync first, as on an
    # ensemble, or the waiter's server may not have it yet.
    waiter.sync(f"{root}/barrier")

    def wait():
        if waiter.Barrier(f"{root}/barrier").wait(timeout=WAIT):
            passed.set()

    t = threading.Thread(target=wait)
    t.start()
    assert not passed.wait(0.5), "went through a standing barrier"
    barrier.remove()
    assert passed.wait(WAIT), "barrier removed but the waiter is still blocked"
    join_all([t])
    assert waiter.Barrier(f"{root}/barrier").wait(timeout=1), "no barrier: wait returns at once"


def test_double_barrier(make_client, root):
    n = 4
    clients = [make_client() for _ in range(n)]
    entered, left = [], []
    guard = threading.Lock()
    errors = []

    def member(i):
        try:
            b = clients[i].DoubleBarrier(f"{root}/dbarrier", n)
            time.sleep(0.1 * i)  # staggered arrivals
            b.enter()
            with guard:
                entered.append((i, time.monotonic()))
            time.sleep(0.05 * (n - i))
            b.leave()
            with guard:
                left.append((i, time.monotonic()))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=member, args=(i,), name=f"m{i}") for i in range(n)]
    for t in threads:
        t.start()
    join_all(threads, timeout=60)
    assert errors == []
    assert len(entered) == n and len(left) == n
    # Nobody got in before everyone arrived, nobody left before everyone was in.
    last_enter = max(t for _, t in entered)
    first_leave = min(t for _, t in left)
    assert first_leave >= last_enter, "left the double barrier before all had entered"
    first_enter = min(t for _, t in entered)
    assert last_enter - first_enter < 1.0 + 0.1 * n, "entries not released together"


def test_counter_concurrent_increments(make_client, root):
    clients = [make_client() for _ in range(3)]

    def bump(c):
        counter = c.Counter(f"{root}/counter")
        for _ in range(20):
            counter += 1

    threads = [threading.Thread(target=bump, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    join_all(threads, timeout=60)
    assert clients[0].Counter(f"{root}/counter").value == 60
    f = clients[0].Counter(f"{root}/fcounter", default=0.0)
    f += 2.5
    f -= 1.0
    assert f.value == 1.5


def test_queue_fifo_and_priority(zk, root):
    q = zk.Queue(f"{root}/queue")
    for i in range(5):
        q.put(f"item{i}".encode())
    q.put(b"urgent", priority=1)
    assert len(q) == 6
    got = [q.get() for _ in range(6)]
    assert got == [b"urgent", b"item0", b"item1", b"item2", b"item3", b"item4"]
    assert q.get() is None


def test_queue_many_consumers_each_item_once(make_client, root):
    producer = make_client()
    q = producer.Queue(f"{root}/q")
    items = [f"job{i}".encode() for i in range(40)]
    for item in items:
        q.put(item)
    taken = []
    guard = threading.Lock()

    def consume(c):
        cq = c.Queue(f"{root}/q")
        while True:
            item = cq.get()
            if item is None:
                return
            with guard:
                taken.append(item)

    threads = [threading.Thread(target=consume, args=(make_client(),)) for _ in range(3)]
    for t in threads:
        t.start()
    join_all(threads, timeout=60)
    assert sorted(taken) == sorted(items), "an item was lost or delivered twice"


def test_locking_queue(make_client, root):
    a, b = make_client(), make_client()
    qa = a.LockingQueue(f"{root}/lq")
    qb = b.LockingQueue(f"{root}/lq")
    qa.put(b"first")
    qa.put(b"second")
    qa.put(b"vip", priority=10)  # lower number = higher priority
    assert len(qa) == 3
    item = qa.get(timeout=WAIT)
    assert item == b"vip"
    assert qa.holds_lock()
    # b sees the next entry, not the one a holds.
    other = qb.get(timeout=WAIT)
    assert other == b"first"
    assert qb.consume()
    # a gives its item back: it reappears for others. On an ensemble b may be connected to
    # another server, which may not have applied a's release yet: ZooKeeper promises one
    # client's view in order, and a sync to see another client's write (as on ZooKeeper).
    assert qa.release()
    b.sync(f"{root}/lq")
    again = qb.get(timeout=WAIT)
    assert again == b"vip"
    assert qb.consume()
    last = qa.get(timeout=WAIT)
    assert last == b"second"
    assert qa.consume()
    assert len(qa) == 0
    assert qb.get(timeout=0.5) is None


def test_semaphore_limits_holders(make_client, root):
    clients = [make_client() for _ in range(4)]
    holders, peak = [], [0]
    guard = threading.Lock()

    def use(c, i):
        sem = c.Semaphore(f"{root}/sem", identifier=f"c{i}", max_leases=2)
        assert try_acquire(sem, WAIT)
        try:
            with guard:
                holders.append(i)
                peak[0] = max(peak[0], len(holders))
            time.sleep(0.2)
            with guard:
                holders.remove(i)
        finally:
            sem.release()

    threads = [threading.Thread(target=use, args=(c, i)) for i, c in enumerate(clients)]
    for t in threads:
        t.start()
    join_all(threads, timeout=60)
    assert 1 <= peak[0] <= 2, f"semaphore let {peak[0]} holders in"


def test_read_write_lock(make_client, root):
    a, b, c = make_client(), make_client(), make_client()
    r1 = a.ReadLock(f"{root}/rw", "r1")
    r2 = b.ReadLock(f"{root}/rw", "r2")
    w = c.WriteLock(f"{root}/rw", "w")
    assert try_acquire(r1, WAIT)
    assert try_acquire(r2, WAIT), "two readers may share"
    assert not try_acquire(w, 0.5), "writer got in beside readers"
    r1.release()
    r2.release()
    assert try_acquire(w, WAIT)
    assert not try_acquire(a.ReadLock(f"{root}/rw", "r3"), 0.5), "reader got in beside a writer"
    w.release()


def test_chroot_client(server, zk, root):
    from kazoo.client import KazooClient
    zk.create(f"{root}/app")
    chrooted = KazooClient(hosts=f"{server}{root}/app", timeout=10)
    chrooted.start(timeout=15)
    try:
        chrooted.create("/inside", b"x")
        seq = chrooted.create("/seq-", sequence=True)
        assert seq.startswith("/seq-"), seq
        assert zk.get(f"{root}/app/inside")[0] == b"x"
        assert sorted(chrooted.get_children("/")) == sorted(["inside", seq[1:]])
        assert chrooted.exists(root) is None, "chroot must hide the outside"
    finally:
        chrooted.stop()
        chrooted.close()


def test_digest_acl_with_add_auth(make_client, zk, root):
    from kazoo.exceptions import NoAuthError
    from kazoo.security import make_digest_acl
    acl = make_digest_acl("dave", "secret", all=True)
    zk.create(f"{root}/locked", b"treasure", acl=[acl])
    with pytest.raises(NoAuthError):
        zk.get(f"{root}/locked")
    dave = make_client(auth_data=[("digest", "dave:secret")])
    assert dave.get(f"{root}/locked")[0] == b"treasure"
    later = make_client()
    later.add_auth("digest", "dave:secret")
    assert later.get(f"{root}/locked")[0] == b"treasure"
    acls, _ = later.get_acls(f"{root}/locked")
    assert acls == [acl]


def test_four_letter_words_via_kazoo(zk):
    assert zk.command(b"ruok") == "imok"
    assert "Mode" in zk.command(b"srvr")
    version = zk.server_version()
    assert len(version) >= 2 and all(isinstance(v, int) for v in version), version


def test_null_data_is_kept_apart_from_empty(zk, root):
    # ZooKeeper stores null (jute length -1) and empty data differently; kazoo reads None back.
    zk.create(f"{root}/null", None)
    zk.create(f"{root}/empty", b"")
    assert zk.get(f"{root}/null")[0] is None
    assert zk.get(f"{root}/empty")[0] == b""
    zk.set(f"{root}/empty", None)
    assert zk.get(f"{root}/empty")[0] is None
    data, stat = zk.get(f"{root}/null")
    assert stat.data_length == 0


def test_request_over_max_size_loses_the_connection(make_client, root):
    # As on ZooKeeper (jute.maxbuffer, 1 MiB by default): the server closes the connection, the
    # client sees ConnectionLoss, reconnects, and nothing of the request was applied.
    zk = make_client()
    with pytest.raises(ConnectionLoss):
        zk.create(f"{root}/too-big", b"x" * (1024 * 1024 + 1))
    assert wait_for(lambda: zk.connected)
    assert zk.exists(f"{root}/too-big") is None
    zk.create(f"{root}/fits", b"x" * (512 * 1024))
    assert len(zk.get(f"{root}/fits")[0]) == 512 * 1024
