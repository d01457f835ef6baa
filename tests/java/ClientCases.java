// The plain Java client (org.apache.zookeeper.ZooKeeper) where the behaviour is subtle: null
// data, watches re-registered on reconnect, per-op results of a failed multi.

import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import org.apache.zookeeper.AddWatchMode;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.KeeperException;
import org.apache.zookeeper.Op;
import org.apache.zookeeper.OpResult;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooDefs;
import org.apache.zookeeper.ZooKeeper;

final class ClientCases {
    static void register(List<CuratorSuite.Case> cases) {
        cases.add(new CuratorSuite.Case("java-null-data-stays-null", ClientCases::nullData));
        cases.add(new CuratorSuite.Case("java-watches-survive-reconnect", ClientCases::watchesAfterReconnect));
        cases.add(new CuratorSuite.Case("java-multi-error-results", ClientCases::multiErrors));
    }

    static final List<org.apache.zookeeper.data.ACL> OPEN = ZooDefs.Ids.OPEN_ACL_UNSAFE;

    /** ZooKeeper keeps null data apart from empty data: getData returns null, not byte[0]. */
    static void nullData(Ctx ctx) throws Exception {
        ZooKeeper zk = ctx.zk(ctx.server, null);
        zk.create(ctx.root, null, OPEN, CreateMode.PERSISTENT);
        zk.create(ctx.root + "/empty", new byte[0], OPEN, CreateMode.PERSISTENT);
        Ctx.check(zk.getData(ctx.root, false, null) == null, "getData of a node created with null data is not null");
        byte[] empty = zk.getData(ctx.root + "/empty", false, null);
        Ctx.check(empty != null && empty.length == 0, "getData of a node created with empty data is not byte[0]");
        zk.setData(ctx.root + "/empty", null, -1);
        Ctx.check(zk.getData(ctx.root + "/empty", false, null) == null, "getData after setData(null) is not null");
    }

    /**
     * A client cut off while its watched nodes change gets the one-shot events it missed when it
     * reconnects (setWatches with its last zxid), and its persistent recursive watch is back.
     */
    static void watchesAfterReconnect(Ctx ctx) throws Exception {
        ZooKeeper writer = ctx.zk(ctx.server, null);
        String data = ctx.root + "/data", absent = ctx.root + "/absent", kids = ctx.root + "/kids", tree = ctx.root + "/tree";
        writer.create(ctx.root, new byte[0], OPEN, CreateMode.PERSISTENT);
        for (String p : List.of(data, kids, tree)) {
            writer.create(p, new byte[0], OPEN, CreateMode.PERSISTENT);
        }
        Proxy proxy = ctx.proxy();
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        BlockingQueue<String> states = new LinkedBlockingQueue<>();
        ZooKeeper zk = ctx.zk(proxy.connectString(), e -> {
            if (e.getType() == Watcher.Event.EventType.None) {
                states.add(e.getState().toString());
            }
        });
        // Every watcher also gets the connection's state changes (type None): keep node events.
        Watcher record = e -> {
            if (e.getType() != Watcher.Event.EventType.None) {
                events.add(e.getType() + " " + e.getPath());
            }
        };
        zk.getData(data, record, null);
        zk.exists(absent, record);
        zk.getChildren(kids, record);
        zk.addWatch(tree, record, AddWatchMode.PERSISTENT_RECURSIVE);

        long session = zk.getSessionId();
        proxy.cut(true);
        Ctx.check(poll(states, "Disconnected"), "the client did not notice the cut");
        writer.setData(data, bytes("changed"), -1);
        writer.create(absent, new byte[0], OPEN, CreateMode.PERSISTENT);
        writer.create(kids + "/k", new byte[0], OPEN, CreateMode.PERSISTENT);
        proxy.restore();
        Ctx.check(poll(states, "SyncConnected"), "the client did not reconnect");
        Ctx.eq(session, zk.getSessionId(), "session after reconnect");
        java.util.Set<String> missed = new java.util.TreeSet<>();
        for (int i = 0; i < 3; i++) {
            String e = events.poll(Ctx.WAIT_S, TimeUnit.SECONDS);
            Ctx.check(e != null, "missed events delivered after reconnect: only " + missed);
            missed.add(e);
        }
        Ctx.eq(new java.util.TreeSet<>(List.of("NodeDataChanged " + data, "NodeCreated " + absent,
                "NodeChildrenChanged " + kids)), missed, "events missed while cut off");
        writer.create(tree + "/a", new byte[0], OPEN, CreateMode.PERSISTENT);
        writer.create(tree + "/a/b", new byte[0], OPEN, CreateMode.PERSISTENT);
        Ctx.eq("NodeCreated " + tree + "/a", events.poll(Ctx.WAIT_S, TimeUnit.SECONDS), "recursive watch after reconnect");
        Ctx.eq("NodeCreated " + tree + "/a/b", events.poll(Ctx.WAIT_S, TimeUnit.SECONDS), "recursive watch, depth 2");
        writer.setData(data, bytes("again"), -1);
        Ctx.check(events.poll(300, TimeUnit.MILLISECONDS) == null, "a one-shot watch fired twice");
    }

    static boolean poll(BlockingQueue<String> states, String wanted) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Ctx.WAIT_S);
        while (System.nanoTime() < deadline) {
            if (wanted.equals(states.poll(100, TimeUnit.MILLISECONDS))) {
                return true;
            }
        }
        return false;
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    /**
     * A failed multi: the ops before the failure report OK, the failing one its error, the ones
     * after it RUNTIMEINCONSISTENCY; nothing is applied. Sync and async clients agree.
     */
    static void multiErrors(Ctx ctx) throws Exception {
        ZooKeeper zk = ctx.zk(ctx.server, null);
        zk.create(ctx.root, new byte[0], OPEN, CreateMode.PERSISTENT);
        List<Op> ops = List.of(
                Op.create(ctx.root + "/a", new byte[0], OPEN, CreateMode.PERSISTENT),
                Op.setData(ctx.root + "/missing", new byte[0], -1),
                Op.create(ctx.root + "/b", new byte[0], OPEN, CreateMode.PERSISTENT));
        List<Integer> expected = List.of(KeeperException.Code.OK.intValue(), KeeperException.Code.NONODE.intValue(),
                KeeperException.Code.RUNTIMEINCONSISTENCY.intValue());
        try {
            zk.multi(ops);
            throw new AssertionError("a multi with a setData of a missing node committed");
        } catch (KeeperException e) {
            Ctx.eq(KeeperException.Code.NONODE, e.code(), "code of the exception");
            Ctx.eq(expected, errors(e.getResults()), "per-op errors");
        }
        CompletableFuture<List<OpResult>> async = new CompletableFuture<>();
        zk.multi(ops, (rc, path, context, results) -> {
            Ctx.eq(KeeperException.Code.NONODE.intValue(), rc, "rc of the async multi");
            async.complete(results);
        }, null);
        Ctx.eq(expected, errors(async.get(Ctx.WAIT_S, TimeUnit.SECONDS)), "per-op errors, async");
        Ctx.check(zk.exists(ctx.root + "/a", false) == null, "an op of a failed multi was applied");

        zk.create(ctx.root + "/v", new byte[0], OPEN, CreateMode.PERSISTENT);
        try {
            zk.multi(List.of(Op.check(ctx.root + "/v", 3), Op.delete(ctx.root + "/v", -1)));
            throw new AssertionError("a multi with a wrong version check committed");
        } catch (KeeperException e) {
            Ctx.eq(List.of(KeeperException.Code.BADVERSION.intValue(),
                    KeeperException.Code.RUNTIMEINCONSISTENCY.intValue()), errors(e.getResults()), "per-op errors");
        }
        Ctx.check(zk.exists(ctx.root + "/v", false) != null, "delete of a failed multi applied");
    }

    static List<Integer> errors(List<OpResult> results) {
        return results.stream()
                .map(r -> r instanceof OpResult.ErrorResult err ? err.getErr() : Integer.MIN_VALUE)
                .toList();
    }
}
