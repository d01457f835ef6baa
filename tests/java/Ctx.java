// What a case gets: its own top-level node, clients that are closed when the case ends, and
// the assertions and bounded waits the cases share.

import java.io.Closeable;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.retry.ExponentialBackoffRetry;
import org.apache.zookeeper.Watcher;
import org.apache.zookeeper.ZooKeeper;

final class Ctx implements Closeable {
    static final int SESSION_TIMEOUT_MS = 10_000;
    static final long WAIT_S = 20;

    final String server;
    final long reapIntervalMs;
    /** The case's own top-level node (not created): cases never share a subtree. */
    final String root;
    private final List<AutoCloseable> closers = new ArrayList<>();

    Ctx(String server, long reapIntervalMs, String caseName) {
        this.server = server;
        this.reapIntervalMs = reapIntervalMs;
        this.root = "/curator-" + caseName.replaceAll("[^A-Za-z0-9]", "-") + "-" + System.nanoTime() % 1_000_000;
    }

    /** A started, connected Curator client. */
    CuratorFramework client() throws InterruptedException {
        return client(CuratorFrameworkFactory.builder());
    }

    /** A started, connected Curator client from a builder the case configured (auth...). */
    CuratorFramework client(CuratorFrameworkFactory.Builder builder) throws InterruptedException {
        return clientTo(server, builder);
    }

    /** A started, connected Curator client to `connect` (the server or a proxy in front of it). */
    CuratorFramework clientTo(String connect, CuratorFrameworkFactory.Builder builder) throws InterruptedException {
        CuratorFramework client = builder.connectString(connect)
                .sessionTimeoutMs(SESSION_TIMEOUT_MS)
                .connectionTimeoutMs(5_000)
                .retryPolicy(new ExponentialBackoffRetry(100, 10, 1_000))
                .build();
        closeLater(client);
        client.start();
        check(client.blockUntilConnected((int) WAIT_S, TimeUnit.SECONDS), "Curator client did not connect");
        return client;
    }

    /** A proxy to the server that the case can cut, closed when the case ends. */
    /** A proxy to the server (the first node, when `server` lists a cluster's nodes). */
    Proxy proxy() throws java.io.IOException {
        return closeLater(new Proxy(server.split(",")[0]));
    }

    /** A plain ZooKeeper handle to `connect`, connected. */
    ZooKeeper zk(String connect, Watcher watcher) throws Exception {
        CountDownLatch connected = new CountDownLatch(1);
        ZooKeeper zk = new ZooKeeper(connect, SESSION_TIMEOUT_MS, event -> {
            if (event.getState() == Watcher.Event.KeeperState.SyncConnected) {
                connected.countDown();
            }
            if (watcher != null) {
                watcher.process(event);
            }
        });
        closeLater(zk);
        check(connected.await(WAIT_S, TimeUnit.SECONDS), "ZooKeeper handle did not connect");
        return zk;
    }

    /** Closed when the case ends, last registered first. */
    <T extends AutoCloseable> T closeLater(T resource) {
        closers.add(resource);
        return resource;
    }

    @Override
    public void close() {
        for (int i = closers.size() - 1; i >= 0; i--) {
            try {
                closers.get(i).close();
            } catch (Exception ignored) {
                // A case that failed may leave recipes in any state; closing is best effort.
            }
        }
    }

    /** How long a container or TTL node may take to be swept: two intervals and slack. */
    long sweepWaitMs() {
        return 2 * reapIntervalMs + 5_000;
    }

    static void check(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    static void eq(Object expected, Object actual, String what) {
        if (!Objects.equals(expected, actual)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    /** Polls `condition` every 20 ms for up to `ms`; fails with `what` if it never holds. */
    static void eventually(long ms, String what, BooleanSupplier condition) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ms);
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("within " + ms + " ms: " + what);
            }
            Thread.sleep(20);
        }
    }

    static void eventually(String what, BooleanSupplier condition) throws InterruptedException {
        eventually(TimeUnit.SECONDS.toMillis(WAIT_S), what, condition);
    }

    /** A check that may throw, for `eventually`. */
    interface Probe {
        boolean test() throws Exception;
    }

    static BooleanSupplier probe(Probe p) {
        return () -> {
            try {
                return p.test();
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        };
    }

    static void await(CountDownLatch latch, String what) throws InterruptedException {
        check(latch.await(WAIT_S, TimeUnit.SECONDS), "within " + WAIT_S + " s: " + what);
    }
}
