// Node kinds and server rules through Curator: TTL and container nodes, transactions, digest
// ACLs, session expiry.

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.api.transaction.CuratorTransactionResult;
import org.apache.curator.framework.api.transaction.OperationType;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;
import org.apache.zookeeper.data.ACL;
import org.apache.zookeeper.data.Id;
import org.apache.zookeeper.data.Stat;
import org.apache.zookeeper.server.auth.DigestAuthenticationProvider;

final class NodeCases {
    static void register(List<CuratorSuite.Case> cases) {
        cases.add(new CuratorSuite.Case("ttl-node-swept-after-ttl", NodeCases::ttlNode));
        cases.add(new CuratorSuite.Case("container-swept-after-last-child", NodeCases::container));
        cases.add(new CuratorSuite.Case("transaction-commit-and-rollback", NodeCases::transaction));
        cases.add(new CuratorSuite.Case("transaction-across-top-level-nodes", ctx -> transactionAcross(ctx, 2)));
        cases.add(new CuratorSuite.Case("transaction-across-cores", ctx -> transactionAcross(ctx, 1)));
        cases.add(new CuratorSuite.Case("digest-acl", NodeCases::digestAcl));
        cases.add(new CuratorSuite.Case("session-expiry-removes-ephemerals", NodeCases::sessionExpiry));
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /**
     * A childless TTL node goes once it is older than its TTL (after a sweep); one with a child
     * stays until the child goes (ContainerManager: no children and now - mtime > ttl).
     */
    static void ttlNode(Ctx ctx) throws Exception {
        CuratorFramework client = ctx.client();
        client.create().forPath(ctx.root);
        String lone = ctx.root + "/lone", parent = ctx.root + "/parent";
        long created = System.nanoTime();
        client.create().withTtl(500).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath(lone);
        client.create().withTtl(500).withMode(CreateMode.PERSISTENT_WITH_TTL).forPath(parent);
        client.create().forPath(parent + "/child");
        Ctx.check(client.checkExists().forPath(lone) != null, "TTL node gone at once");
        Ctx.eventually(ctx.sweepWaitMs(), "the TTL node is swept",
                Ctx.probe(() -> client.checkExists().forPath(lone) == null));
        long lived = (System.nanoTime() - created) / 1_000_000;
        Ctx.check(lived >= 500, "the TTL node was swept after " + lived + " ms, before its TTL of 500 ms");
        Thread.sleep(ctx.reapIntervalMs + 200);
        Ctx.check(client.checkExists().forPath(parent) != null, "a TTL node with a child was swept");
        client.delete().forPath(parent + "/child");
        Ctx.eventually(ctx.sweepWaitMs(), "the TTL node whose child left is swept",
                Ctx.probe(() -> client.checkExists().forPath(parent) == null));
    }

    /**
     * A container that never had a child stays; once it had one and the last one goes, it stays
     * until a sweep removes it (ContainerManager: no children and cversion > 0).
     */
    static void container(Ctx ctx) throws Exception {
        CuratorFramework client = ctx.client();
        client.create().forPath(ctx.root);
        String c = ctx.root + "/container";
        client.create().withMode(CreateMode.CONTAINER).forPath(c);
        Thread.sleep(ctx.reapIntervalMs + 200);
        Ctx.check(client.checkExists().forPath(c) != null, "a container that never had a child was swept");
        client.create().forPath(c + "/child");
        client.delete().forPath(c + "/child");
        Stat right = client.checkExists().forPath(c);
        Ctx.check(right != null, "the container vanished together with its last child");
        Ctx.check(right.getCversion() > 0, "cversion after a child came and went: " + right.getCversion());
        Ctx.eventually(ctx.sweepWaitMs(), "the emptied container is swept",
                Ctx.probe(() -> client.checkExists().forPath(c) == null));
    }

    /** A transaction applies all its ops; a failing one applies none and names the failure. */
    static void transaction(Ctx ctx) throws Exception {
        CuratorFramework client = ctx.client();
        client.create().forPath(ctx.root);
        String a = ctx.root + "/a", b = ctx.root + "/b";
        List<CuratorTransactionResult> results = client.transaction().forOperations(
                client.transactionOp().create().forPath(a, bytes("1")),
                client.transactionOp().setData().forPath(a, bytes("2")),
                client.transactionOp().create().withMode(CreateMode.PERSISTENT_SEQUENTIAL).forPath(b + "-", bytes("s")),
                client.transactionOp().check().withVersion(1).forPath(a));
        Ctx.eq(4, results.size(), "results");
        Ctx.eq(OperationType.CREATE, results.get(0).getType(), "op 0");
        Ctx.eq(a, results.get(0).getResultPath(), "created path");
        Ctx.eq(1, results.get(1).getResultStat().getVersion(), "version after setData in the transaction");
        Ctx.eq(b + "-0000000001", results.get(2).getResultPath(), "sequential name in the transaction");
        Ctx.eq("2", new String(client.getData().forPath(a), StandardCharsets.UTF_8), "data after commit");

        String c = ctx.root + "/c";
        try {
            client.transaction().forOperations(
                    client.transactionOp().create().forPath(c),
                    client.transactionOp().setData().forPath(a, bytes("3")),
                    client.transactionOp().delete().forPath(ctx.root + "/missing"));
            throw new AssertionError("a transaction deleting a missing node committed");
        } catch (KeeperException.NoNodeException expected) {
            // The failing op decides the error.
        }
        Ctx.check(client.checkExists().forPath(c) == null, "create of a failed transaction applied");
        Ctx.eq("2", new String(client.getData().forPath(a), StandardCharsets.UTF_8), "data after rollback");
        try {
            client.transaction().forOperations(
                    client.transactionOp().check().withVersion(7).forPath(a),
                    client.transactionOp().create().forPath(c));
            throw new AssertionError("a transaction with a wrong version check committed");
        } catch (KeeperException.BadVersionException expected) {
            // Checked before anything else happens.
        }
        Ctx.check(client.checkExists().forPath(c) == null, "create after a failed check applied");
    }

    /** warren's shard of a path among its default 8 (engine::path::shard_of: FNV-1a of the first component). */
    static int warrenShard(String path) {
        long h = 0xcbf29ce484222325L;
        for (byte b : path.substring(1).split("/")[0].getBytes(StandardCharsets.UTF_8)) {
            h = (h ^ (b & 0xff)) * 0x100000001b3L;
        }
        return (int) Long.remainderUnsigned(h, 8);
    }

    /** The first `prefix<k>` in warren's shard `shard`. */
    static String nameInShard(String prefix, int shard) {
        for (int k = 0; ; k++) {
            if (warrenShard(prefix + k) == shard) {
                return prefix + k;
            }
        }
    }

    /**
     * Kafka's controller write through Curator's transaction API: a version check of the epoch
     * node and writes under another top-level node, which warren keeps in another shard: shard
     * 2, on the same core as the epoch's shard 0 (one Raft group), or shard 1, on the other core
     * of the suite's 2 (a two-phase commit between the groups). All or nothing, with the failing
     * op's error.
     */
    static void transactionAcross(Ctx ctx, int brokersShard) throws Exception {
        CuratorFramework client = ctx.client();
        String epoch = nameInShard(ctx.root + "-epoch-", 0), brokers = nameInShard(ctx.root + "-brokers-", brokersShard);
        client.create().forPath(epoch, bytes("1"));
        client.create().forPath(brokers);
        List<CuratorTransactionResult> results = client.transaction().forOperations(
                client.transactionOp().check().withVersion(0).forPath(epoch),
                client.transactionOp().create().forPath(brokers + "/t1", bytes("p")),
                client.transactionOp().setData().forPath(brokers, bytes("b1")));
        Ctx.eq(3, results.size(), "results");
        Ctx.eq(brokers + "/t1", results.get(1).getResultPath(), "created path");
        Ctx.eq(1, results.get(2).getResultStat().getVersion(), "version after setData in the transaction");
        try {
            client.transaction().forOperations(
                    client.transactionOp().create().forPath(brokers + "/t2"),
                    client.transactionOp().setData().forPath(brokers, bytes("stale")),
                    client.transactionOp().check().withVersion(5).forPath(epoch));
            throw new AssertionError("a transaction with a stale epoch committed");
        } catch (KeeperException.BadVersionException expected) {
            // The last op fails: the ones before it, in the other shard, are taken back.
        }
        Ctx.check(client.checkExists().forPath(brokers + "/t2") == null, "create of a failed transaction applied");
        Ctx.eq("b1", new String(client.getData().forPath(brokers), StandardCharsets.UTF_8), "data after rollback");
    }

    /** A digest ACL: no auth and wrong auth get NoAuth; the right credentials read and write. */
    static void digestAcl(Ctx ctx) throws Exception {
        String digest = DigestAuthenticationProvider.generateDigest("alice:secret");
        List<ACL> acl = List.of(new ACL(ZooDefs.Perms.ALL, new Id("digest", digest)));
        CuratorFramework alice = ctx.client(CuratorFrameworkFactory.builder().authorization("digest", bytes("alice:secret")));
        String path = ctx.root + "/secret";
        alice.create().creatingParentsIfNeeded().withACL(acl).forPath(path, bytes("s1"));
        Ctx.eq(acl, alice.getACL().forPath(path), "ACL as stored");

        CuratorFramework anonymous = ctx.client();
        CuratorFramework mallory = ctx.client(CuratorFrameworkFactory.builder().authorization("digest", bytes("alice:wrong")));
        for (CuratorFramework other : List.of(anonymous, mallory)) {
            expectNoAuth(() -> other.getData().forPath(path), "getData");
            expectNoAuth(() -> other.setData().forPath(path, bytes("x")), "setData");
            expectNoAuth(() -> other.create().forPath(path + "/kid"), "create child");
            Ctx.check(other.checkExists().forPath(path) != null, "exists needs no permission");
        }
        CuratorFramework alice2 = ctx.client(CuratorFrameworkFactory.builder().authorization("digest", bytes("alice:secret")));
        Ctx.eq("s1", new String(alice2.getData().forPath(path), StandardCharsets.UTF_8), "data with auth");
        alice2.setData().forPath(path, bytes("s2"));
        alice2.create().forPath(path + "/kid");
        Ctx.eq("s2", new String(alice.getData().forPath(path), StandardCharsets.UTF_8), "data after an authorized set");
    }

    interface Op {
        void run() throws Exception;
    }

    static void expectNoAuth(Op op, String what) throws Exception {
        try {
            op.run();
            throw new AssertionError(what + " succeeded without the right auth");
        } catch (KeeperException.NoAuthException expected) {
            // The ACL refused it.
        }
    }

    /**
     * A client cut off (through a proxy) while its session is closed by another handle with the
     * same id and password: its ephemeral goes, it sees LOST, and then works on a new session.
     */
    static void sessionExpiry(Ctx ctx) throws Exception {
        Proxy proxy = ctx.proxy();
        CountDownLatch lost = new CountDownLatch(1), reconnected = new CountDownLatch(1);
        CuratorFramework victim = ctx.clientTo(proxy.connectString(), CuratorFrameworkFactory.builder());
        victim.getConnectionStateListenable().addListener((c, state) -> {
            if (state == ConnectionState.LOST) {
                lost.countDown();
            } else if (state == ConnectionState.RECONNECTED && lost.getCount() == 0) {
                reconnected.countDown();
            }
        });
        String eph = ctx.root + "/eph";
        victim.create().creatingParentsIfNeeded().withMode(CreateMode.EPHEMERAL).forPath(eph);
        ZooKeeper handle = victim.getZookeeperClient().getZooKeeper();
        long session = handle.getSessionId();
        byte[] passwd = handle.getSessionPasswd();

        CuratorFramework observer = ctx.client();
        Ctx.eq(session, observer.checkExists().forPath(eph).getEphemeralOwner(), "owner of the ephemeral");
        proxy.cut(true);
        ZooKeeper killer = new ZooKeeper(ctx.server, Ctx.SESSION_TIMEOUT_MS, e -> {}, session, passwd);
        ctx.closeLater(killer);
        Ctx.eventually("the second handle connects with the session", () -> killer.getState().isConnected());
        Ctx.eq(session, killer.getSessionId(), "session id of the second handle");
        killer.close();
        Ctx.eventually("the ephemeral goes with the closed session",
                Ctx.probe(() -> observer.checkExists().forPath(eph) == null));
        proxy.restore();
        Ctx.await(lost, "the cut-off client sees LOST");
        Ctx.await(reconnected, "the client reconnects with a new session");
        Ctx.check(victim.getZookeeperClient().getZooKeeper().getSessionId() != session, "same session after expiry");
        victim.create().withMode(CreateMode.EPHEMERAL).forPath(eph);
        // The observer may read through another node of a cluster: sync first (ZooKeeper's rule
        // for seeing another client's write at once).
        CountDownLatch synced = new CountDownLatch(1);
        observer.getZookeeperClient().getZooKeeper().sync(eph, (rc, path, c) -> synced.countDown(), null);
        Ctx.await(synced, "the observer's sync");
        Ctx.check(observer.checkExists().forPath(eph) != null, "the new session creates the ephemeral again");
    }
}
