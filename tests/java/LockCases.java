// Locks: InterProcessMutex, InterProcessReadWriteLock, InterProcessSemaphoreV2.

import static java.util.concurrent.TimeUnit.MILLISECONDS;
import static java.util.concurrent.TimeUnit.SECONDS;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.recipes.locks.InterProcessMutex;
import org.apache.curator.framework.recipes.locks.InterProcessReadWriteLock;
import org.apache.curator.framework.recipes.locks.InterProcessSemaphoreV2;
import org.apache.curator.framework.recipes.locks.Lease;
import org.apache.zookeeper.data.Stat;

final class LockCases {
    static void register(List<CuratorSuite.Case> cases) {
        cases.add(new CuratorSuite.Case("mutex-exclusion", LockCases::mutexExclusion));
        cases.add(new CuratorSuite.Case("mutex-reentrant", LockCases::mutexReentrant));
        cases.add(new CuratorSuite.Case("mutex-container-swept-after-release", LockCases::mutexContainer));
        cases.add(new CuratorSuite.Case("rwlock-readers-share-writer-excludes", LockCases::readWriteLock));
        cases.add(new CuratorSuite.Case("semaphore-v2-bounded-leases", LockCases::semaphore));
    }

    /** Two clients, two threads each, contend: never two holders at once; every turn ran. */
    static void mutexExclusion(Ctx ctx) throws Exception {
        String path = ctx.root + "/mutex";
        List<CuratorFramework> clients = List.of(ctx.client(), ctx.client());
        AtomicInteger holders = new AtomicInteger(), maxHolders = new AtomicInteger(), turns = new AtomicInteger();
        List<Callable<Void>> workers = new ArrayList<>();
        for (CuratorFramework client : clients) {
            for (int t = 0; t < 2; t++) {
                workers.add(() -> {
                    InterProcessMutex mutex = new InterProcessMutex(client, path);
                    for (int i = 0; i < 8; i++) {
                        Ctx.check(mutex.acquire(Ctx.WAIT_S, SECONDS), "acquire timed out");
                        try {
                            maxHolders.accumulateAndGet(holders.incrementAndGet(), Math::max);
                            Thread.sleep(2);
                            turns.incrementAndGet();
                            holders.decrementAndGet();
                        } finally {
                            mutex.release();
                        }
                    }
                    return null;
                });
            }
        }
        runAll(workers);
        Ctx.eq(1, maxHolders.get(), "most holders at once");
        Ctx.eq(32, turns.get(), "turns taken");
        Ctx.eq(List.of(), clients.get(0).getChildren().forPath(path), "lock nodes left after the last release");
    }

    /** Acquire twice, release twice: one lock node, held until the second release. */
    static void mutexReentrant(Ctx ctx) throws Exception {
        String path = ctx.root + "/mutex";
        CuratorFramework a = ctx.client(), b = ctx.client();
        InterProcessMutex mine = new InterProcessMutex(a, path), theirs = new InterProcessMutex(b, path);
        Ctx.check(mine.acquire(5, SECONDS), "first acquire");
        Ctx.check(mine.acquire(5, SECONDS), "reentrant acquire");
        Ctx.eq(1, mine.getParticipantNodes().size(), "lock nodes while held twice");
        mine.release();
        Ctx.check(mine.isAcquiredInThisProcess(), "still held after one of two releases");
        Ctx.check(!theirs.acquire(300, MILLISECONDS), "another client acquired a lock still held once");
        mine.release();
        Ctx.check(!mine.isAcquiredInThisProcess(), "held after the second release");
        Ctx.eq(List.of(), a.getChildren().forPath(path), "lock nodes left after release");
        Ctx.check(theirs.acquire(5, SECONDS), "the other client acquires after the release");
        theirs.release();
    }

    /**
     * The lock parent is a container (creatingParentContainersIfNeeded): right after release it
     * is still there with no children; only the periodic sweep removes it (ZooKeeper's
     * ContainerManager, every znode.container.checkIntervalMs).
     */
    static void mutexContainer(Ctx ctx) throws Exception {
        String path = ctx.root + "/mutex";
        CuratorFramework client = ctx.client();
        InterProcessMutex mutex = new InterProcessMutex(client, path);
        Ctx.check(mutex.acquire(5, SECONDS), "acquire");
        Stat held = client.checkExists().forPath(path);
        Ctx.check(held != null && held.getNumChildren() == 1, "lock parent with one lock node: " + held);
        mutex.release();
        Stat released = client.checkExists().forPath(path);
        Ctx.check(released != null, "the lock parent (a container) vanished right after release");
        Ctx.eq(0, released.getNumChildren(), "children of the lock parent after release");
        Ctx.eventually(ctx.sweepWaitMs(), "the emptied lock parent is swept",
                Ctx.probe(() -> client.checkExists().forPath(path) == null));
    }

    /** Two readers hold the lock together; a writer waits for both; readers wait for a writer. */
    static void readWriteLock(Ctx ctx) throws Exception {
        String path = ctx.root + "/rw";
        InterProcessReadWriteLock r1 = new InterProcessReadWriteLock(ctx.client(), path);
        InterProcessReadWriteLock r2 = new InterProcessReadWriteLock(ctx.client(), path);
        InterProcessReadWriteLock w = new InterProcessReadWriteLock(ctx.client(), path);
        Ctx.check(r1.readLock().acquire(5, SECONDS), "first reader");
        Ctx.check(r2.readLock().acquire(5, SECONDS), "second reader while the first holds");
        Ctx.check(!w.writeLock().acquire(300, MILLISECONDS), "writer acquired while readers hold");
        r1.readLock().release();
        Ctx.check(!w.writeLock().acquire(300, MILLISECONDS), "writer acquired while one reader holds");
        r2.readLock().release();
        Ctx.check(w.writeLock().acquire(5, SECONDS), "writer after the readers left");
        Ctx.check(!r1.readLock().acquire(300, MILLISECONDS), "reader acquired while the writer holds");
        w.writeLock().release();
        Ctx.check(r1.readLock().acquire(5, SECONDS), "reader after the writer left");
        r1.readLock().release();
    }

    /** Two leases, three clients: the third waits until a lease comes back; never over two. */
    static void semaphore(Ctx ctx) throws Exception {
        String path = ctx.root + "/sem";
        List<InterProcessSemaphoreV2> sems = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            sems.add(new InterProcessSemaphoreV2(ctx.client(), path, 2));
        }
        Lease l0 = sems.get(0).acquire(5, SECONDS), l1 = sems.get(1).acquire(5, SECONDS);
        Ctx.check(l0 != null && l1 != null, "two leases granted");
        Ctx.check(sems.get(2).acquire(300, MILLISECONDS) == null, "a third lease granted with max 2");
        sems.get(0).returnLease(l0);
        Lease l2 = sems.get(2).acquire(5, SECONDS);
        Ctx.check(l2 != null, "a lease after one came back");
        sems.get(1).returnLease(l1);
        sems.get(2).returnLease(l2);

        AtomicInteger holders = new AtomicInteger(), maxHolders = new AtomicInteger();
        List<Callable<Void>> workers = new ArrayList<>();
        for (InterProcessSemaphoreV2 sem : sems) {
            workers.add(() -> {
                for (int i = 0; i < 5; i++) {
                    Lease lease = sem.acquire(Ctx.WAIT_S, SECONDS);
                    Ctx.check(lease != null, "acquire timed out");
                    maxHolders.accumulateAndGet(holders.incrementAndGet(), Math::max);
                    Thread.sleep(5);
                    holders.decrementAndGet();
                    sem.returnLease(lease);
                }
                return null;
            });
        }
        runAll(workers);
        Ctx.check(maxHolders.get() <= 2, "more than 2 lease holders at once: " + maxHolders.get());
    }

    /** Runs the workers in parallel and rethrows the first failure. */
    static void runAll(List<Callable<Void>> workers) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(workers.size());
        try {
            List<Future<Void>> futures = pool.invokeAll(workers, Ctx.WAIT_S * 2, SECONDS);
            for (Future<Void> f : futures) {
                Ctx.check(!f.isCancelled(), "a worker did not finish in time");
                f.get();
            }
        } finally {
            pool.shutdownNow();
        }
    }
}
