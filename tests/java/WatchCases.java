// Recipes built on watches: CuratorCache, PersistentWatcher, GroupMember, PersistentNode.

import static java.util.concurrent.TimeUnit.MILLISECONDS;
import static java.util.concurrent.TimeUnit.SECONDS;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.LinkedBlockingQueue;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.CuratorFrameworkFactory;
import org.apache.curator.framework.recipes.cache.CuratorCache;
import org.apache.curator.framework.recipes.cache.CuratorCacheListener;
import org.apache.curator.framework.recipes.nodes.GroupMember;
import org.apache.curator.framework.recipes.nodes.PersistentNode;
import org.apache.curator.framework.recipes.watch.PersistentWatcher;
import org.apache.zookeeper.CreateMode;
import org.apache.zookeeper.WatchedEvent;

final class WatchCases {
    static void register(List<CuratorSuite.Case> cases) {
        cases.add(new CuratorSuite.Case("curator-cache-deep-subtree", WatchCases::curatorCache));
        cases.add(new CuratorSuite.Case("persistent-watcher-recursive", WatchCases::recursiveWatcher));
        cases.add(new CuratorSuite.Case("persistent-watcher-non-recursive", WatchCases::persistentWatcher));
        cases.add(new CuratorSuite.Case("persistent-watcher-recursive-chroot", WatchCases::chrootRecursiveWatcher));
        cases.add(new CuratorSuite.Case("group-member-three-members", WatchCases::groupMember));
        cases.add(new CuratorSuite.Case("persistent-node-recreated", WatchCases::persistentNode));
    }

    static byte[] bytes(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    static String str(byte[] b) {
        return b == null ? null : new String(b, StandardCharsets.UTF_8);
    }

    /** Takes events until `expected` has been seen; fails on timeout with what came instead. */
    static void expectEvent(BlockingQueue<String> events, String expected) throws InterruptedException {
        List<String> seen = new ArrayList<>();
        long deadline = System.nanoTime() + SECONDS.toNanos(Ctx.WAIT_S);
        while (System.nanoTime() < deadline) {
            String e = events.poll(100, MILLISECONDS);
            if (expected.equals(e)) {
                return;
            }
            if (e != null) {
                seen.add(e);
            }
        }
        throw new AssertionError("no event '" + expected + "'; saw " + seen);
    }

    /** Nothing but events in `allowed` arrive within `ms`. */
    static void expectQuiet(BlockingQueue<String> events, long ms) throws InterruptedException {
        String e = events.poll(ms, MILLISECONDS);
        Ctx.check(e == null, "unexpected event " + e);
    }

    /** A cache of /cache sees creates, changes and deletes four levels down. */
    static void curatorCache(Ctx ctx) throws Exception {
        String base = ctx.root + "/cache";
        CuratorFramework writer = ctx.client();
        writer.create().creatingParentsIfNeeded().forPath(base, bytes("base"));
        writer.create().forPath(base + "/existing", bytes("e"));
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        CountDownLatch initialized = new CountDownLatch(1);
        CuratorCache cache = ctx.closeLater(CuratorCache.build(ctx.client(), base));
        cache.listenable().addListener(CuratorCacheListener.builder()
                .forCreates(n -> events.add("create " + n.getPath() + " " + str(n.getData())))
                .forChanges((old, now) -> events.add("change " + now.getPath() + " " + str(now.getData())))
                .forDeletes(n -> events.add("delete " + n.getPath()))
                .forInitialized(initialized::countDown)
                .build());
        cache.start();
        Ctx.await(initialized, "cache initialized");
        Ctx.eq("e", str(cache.get(base + "/existing").orElseThrow().getData()), "cached data of an existing child");

        String deep = base + "/a/b/c/d";
        writer.create().creatingParentsIfNeeded().forPath(deep, bytes("d1"));
        expectEvent(events, "create " + base + "/a/b/c/d d1");
        for (String p : new String[] {"/a", "/a/b", "/a/b/c"}) {
            Ctx.check(cache.get(base + p).isPresent(), "cache lacks " + base + p);
        }
        writer.setData().forPath(deep, bytes("d2"));
        expectEvent(events, "change " + deep + " d2");
        writer.create().forPath(deep + "/e", bytes("e1"));
        expectEvent(events, "create " + deep + "/e e1");
        writer.delete().forPath(deep + "/e");
        expectEvent(events, "delete " + deep + "/e");
        writer.delete().deletingChildrenIfNeeded().forPath(base + "/a");
        expectEvent(events, "delete " + base + "/a");
        Ctx.check(cache.get(deep).isEmpty(), "deleted node still cached");
        Ctx.eq(2L, cache.stream().count(), "cached nodes after deleting /a (base and existing)");
    }

    /** A recursive persistent watch on /w sees events of descendants at any depth, repeatedly. */
    static void recursiveWatcher(Ctx ctx) throws Exception {
        String base = ctx.root + "/w";
        CuratorFramework writer = ctx.client();
        writer.create().creatingParentsIfNeeded().forPath(base);
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        PersistentWatcher watcher = ctx.closeLater(new PersistentWatcher(ctx.client(), base, true));
        watcher.getListenable().addListener(e -> record(events, e));
        watcher.start();
        Thread.sleep(200); // addWatch is asynchronous in the recipe; give it its round trip

        writer.create().forPath(base + "/x");
        expectEvent(events, "NodeCreated " + base + "/x");
        writer.create().creatingParentsIfNeeded().forPath(base + "/x/y/z");
        expectEvent(events, "NodeCreated " + base + "/x/y");
        expectEvent(events, "NodeCreated " + base + "/x/y/z");
        writer.setData().forPath(base + "/x/y/z", bytes("1"));
        expectEvent(events, "NodeDataChanged " + base + "/x/y/z");
        writer.setData().forPath(base + "/x/y/z", bytes("2"));
        expectEvent(events, "NodeDataChanged " + base + "/x/y/z");
        writer.delete().forPath(base + "/x/y/z");
        expectEvent(events, "NodeDeleted " + base + "/x/y/z");
        writer.setData().forPath(base, bytes("self"));
        expectEvent(events, "NodeDataChanged " + base);
        // Outside the subtree: nothing.
        writer.create().forPath(ctx.root + "/wx");
        expectQuiet(events, 300);
    }

    /** A non-recursive persistent watch sees its node's changes and child list, not grandchildren. */
    static void persistentWatcher(Ctx ctx) throws Exception {
        String base = ctx.root + "/n";
        CuratorFramework writer = ctx.client();
        writer.create().creatingParentsIfNeeded().forPath(base);
        writer.create().forPath(base + "/kid");
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        PersistentWatcher watcher = ctx.closeLater(new PersistentWatcher(ctx.client(), base, false));
        watcher.getListenable().addListener(e -> record(events, e));
        watcher.start();
        Thread.sleep(200);

        writer.setData().forPath(base, bytes("1"));
        expectEvent(events, "NodeDataChanged " + base);
        writer.setData().forPath(base, bytes("2"));
        expectEvent(events, "NodeDataChanged " + base);
        writer.create().forPath(base + "/kid/grandkid");
        writer.setData().forPath(base + "/kid", bytes("x"));
        expectQuiet(events, 300);
        writer.create().forPath(base + "/kid2");
        expectEvent(events, "NodeChildrenChanged " + base);
        writer.delete().deletingChildrenIfNeeded().forPath(base);
        expectEvent(events, "NodeDeleted " + base);
        writer.create().forPath(base);
        expectEvent(events, "NodeCreated " + base);
    }

    /** Through a chrooted connect string, a recursive watch on the chroot's "/" sees its subtree. */
    static void chrootRecursiveWatcher(Ctx ctx) throws Exception {
        CuratorFramework writer = ctx.client();
        writer.create().forPath(ctx.root);
        CuratorFramework chrooted = ctx.clientTo(ctx.server + ctx.root, CuratorFrameworkFactory.builder());
        BlockingQueue<String> events = new LinkedBlockingQueue<>();
        PersistentWatcher watcher = ctx.closeLater(new PersistentWatcher(chrooted, "/", true));
        watcher.getListenable().addListener(e -> record(events, e));
        watcher.start();
        Thread.sleep(200);

        writer.create().creatingParentsIfNeeded().forPath(ctx.root + "/x/y");
        expectEvent(events, "NodeCreated /x");
        expectEvent(events, "NodeCreated /x/y");
        chrooted.setData().forPath("/x/y", bytes("1"));
        expectEvent(events, "NodeDataChanged /x/y");
        Ctx.eq("1", str(writer.getData().forPath(ctx.root + "/x/y")), "data written through the chroot");
        writer.create().forPath(ctx.root + "-outside");
        expectQuiet(events, 300);
        writer.delete().forPath(ctx.root + "-outside");
    }

    static void record(BlockingQueue<String> events, WatchedEvent e) {
        if (e.getType() != org.apache.zookeeper.Watcher.Event.EventType.None) {
            events.add(e.getType() + " " + e.getPath());
        }
    }

    /** Three members of a group, each on its own client, all see all three with their payloads. */
    static void groupMember(Ctx ctx) throws Exception {
        String path = ctx.root + "/group";
        List<GroupMember> members = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            GroupMember m = ctx.closeLater(new GroupMember(ctx.client(), path, "m" + i, bytes("payload" + i)));
            m.start();
            members.add(m);
        }
        for (GroupMember m : members) {
            Ctx.eventually("a member sees 3 members", () -> m.getCurrentMembers().size() == 3);
            Map<String, byte[]> current = m.getCurrentMembers();
            for (int i = 0; i < 3; i++) {
                Ctx.eq("payload" + i, str(current.get("m" + i)), "payload of m" + i);
            }
        }
        members.get(0).close();
        for (GroupMember m : members.subList(1, 3)) {
            Ctx.eventually("the others see m0 leave",
                    () -> m.getCurrentMembers().size() == 2 && !m.getCurrentMembers().containsKey("m0"));
        }
    }

    /** An ephemeral PersistentNode comes back when someone deletes it, and goes on close. */
    static void persistentNode(Ctx ctx) throws Exception {
        String path = ctx.root + "/pn";
        CuratorFramework other = ctx.client();
        PersistentNode node = new PersistentNode(ctx.client(), CreateMode.EPHEMERAL, false, path, bytes("v1"));
        ctx.closeLater(node);
        node.start();
        Ctx.check(node.waitForInitialCreate(Ctx.WAIT_S, SECONDS), "initial create");
        Ctx.eq("v1", str(other.getData().forPath(path)), "data");
        long owner = other.checkExists().forPath(path).getEphemeralOwner();
        Ctx.check(owner != 0, "the node is ephemeral");
        other.delete().forPath(path);
        Ctx.eventually("re-created after delete", Ctx.probe(() -> other.checkExists().forPath(path) != null));
        Ctx.eq("v1", str(other.getData().forPath(path)), "data after re-create");
        node.setData(bytes("v2"));
        Ctx.eventually("setData reaches the node", Ctx.probe(() -> "v2".equals(str(other.getData().forPath(path)))));
        node.close();
        Ctx.check(other.checkExists().forPath(path) == null, "node left after close");
    }
}
