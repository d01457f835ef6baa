// Barriers, counters and queues: DistributedBarrier, DistributedDoubleBarrier, SharedCount,
// DistributedAtomicLong, DistributedQueue.

import static java.util.concurrent.TimeUnit.MILLISECONDS;
import static java.util.concurrent.TimeUnit.SECONDS;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.Callable;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.recipes.atomic.AtomicValue;
import org.apache.curator.framework.recipes.atomic.DistributedAtomicLong;
import org.apache.curator.framework.recipes.barriers.DistributedBarrier;
import org.apache.curator.framework.recipes.barriers.DistributedDoubleBarrier;
import org.apache.curator.framework.recipes.queue.DistributedQueue;
import org.apache.curator.framework.recipes.queue.QueueBuilder;
import org.apache.curator.framework.recipes.queue.QueueConsumer;
import org.apache.curator.framework.recipes.queue.QueueSerializer;
import org.apache.curator.framework.recipes.shared.SharedCount;
import org.apache.curator.framework.recipes.shared.VersionedValue;
import org.apache.curator.framework.state.ConnectionState;
import org.apache.curator.retry.RetryNTimes;

final class CoordinationCases {
    static void register(List<CuratorSuite.Case> cases) {
        cases.add(new CuratorSuite.Case("distributed-barrier", CoordinationCases::barrier));
        cases.add(new CuratorSuite.Case("distributed-double-barrier", CoordinationCases::doubleBarrier));
        cases.add(new CuratorSuite.Case("shared-count-contention", CoordinationCases::sharedCount));
        cases.add(new CuratorSuite.Case("distributed-atomic-long-contention", CoordinationCases::atomicLong));
        cases.add(new CuratorSuite.Case("distributed-queue-in-order", CoordinationCases::queue));
    }

    /** Waiters block while the barrier is set and all pass once it is removed. */
    static void barrier(Ctx ctx) throws Exception {
        String path = ctx.root + "/barrier";
        DistributedBarrier owner = new DistributedBarrier(ctx.client(), path);
        owner.setBarrier();
        List<CompletableFuture<Boolean>> waiters = new ArrayList<>();
        for (int i = 0; i < 2; i++) {
            DistributedBarrier b = new DistributedBarrier(ctx.client(), path);
            waiters.add(CompletableFuture.supplyAsync(() -> {
                try {
                    return b.waitOnBarrier(Ctx.WAIT_S, SECONDS);
                } catch (Exception e) {
                    throw new RuntimeException(e);
                }
            }));
        }
        Thread.sleep(300);
        for (CompletableFuture<Boolean> w : waiters) {
            Ctx.check(!w.isDone(), "a waiter passed a set barrier");
        }
        owner.removeBarrier();
        for (CompletableFuture<Boolean> w : waiters) {
            Ctx.check(w.get(Ctx.WAIT_S, SECONDS), "a waiter did not pass the removed barrier");
        }
    }

    /** Three members: none enters before all three came; none leaves before all three left. */
    static void doubleBarrier(Ctx ctx) throws Exception {
        String path = ctx.root + "/dbarrier";
        AtomicInteger entered = new AtomicInteger();
        List<Callable<Void>> members = new ArrayList<>();
        List<Integer> seenOnEntry = java.util.Collections.synchronizedList(new ArrayList<>());
        for (int i = 0; i < 3; i++) {
            DistributedDoubleBarrier b = new DistributedDoubleBarrier(ctx.client(), path, 3);
            int delayMs = 100 * i;
            members.add(() -> {
                Thread.sleep(delayMs);
                entered.incrementAndGet();
                Ctx.check(b.enter(Ctx.WAIT_S, SECONDS), "enter timed out");
                seenOnEntry.add(entered.get());
                Thread.sleep(delayMs);
                Ctx.check(b.leave(Ctx.WAIT_S, SECONDS), "leave timed out");
                return null;
            });
        }
        LockCases.runAll(members);
        Ctx.eq(List.of(3, 3, 3), seenOnEntry, "members counted when each got through enter");
        DistributedDoubleBarrier late = new DistributedDoubleBarrier(ctx.client(), path, 3);
        Ctx.check(!late.enter(300, MILLISECONDS), "a lone member entered a 3-member barrier");
    }

    /** Three clients each add 1 ten times with trySetCount: no increment is lost. */
    static void sharedCount(Ctx ctx) throws Exception {
        String path = ctx.root + "/count";
        List<SharedCount> counts = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            SharedCount c = ctx.closeLater(new SharedCount(ctx.client(), path, 0));
            c.start();
            counts.add(c);
        }
        List<Callable<Void>> workers = new ArrayList<>();
        for (SharedCount c : counts) {
            workers.add(() -> {
                for (int i = 0; i < 10; i++) {
                    while (true) {
                        VersionedValue<Integer> v = c.getVersionedValue();
                        if (c.trySetCount(v, v.getValue() + 1)) {
                            break;
                        }
                    }
                }
                return null;
            });
        }
        LockCases.runAll(workers);
        for (SharedCount c : counts) {
            Ctx.eventually("every SharedCount sees 30", () -> c.getCount() == 30);
        }
    }

    /** Three clients, two threads each, increment ten times: the long ends at 60. */
    static void atomicLong(Ctx ctx) throws Exception {
        String path = ctx.root + "/along";
        List<Callable<Void>> workers = new ArrayList<>();
        AtomicInteger failedAttempts = new AtomicInteger();
        for (int i = 0; i < 3; i++) {
            CuratorFramework client = ctx.client();
            for (int t = 0; t < 2; t++) {
                DistributedAtomicLong counter = new DistributedAtomicLong(client, path, new RetryNTimes(1000, 1));
                workers.add(() -> {
                    for (int n = 0; n < 10; n++) {
                        AtomicValue<Long> v = counter.increment();
                        while (!v.succeeded()) {
                            failedAttempts.incrementAndGet();
                            v = counter.increment();
                        }
                        Ctx.eq(v.preValue() + 1, (long) v.postValue(), "post = pre + 1");
                    }
                    return null;
                });
            }
        }
        LockCases.runAll(workers);
        AtomicValue<Long> end = new DistributedAtomicLong(ctx.client(), path, new RetryNTimes(3, 10)).get();
        Ctx.check(end.succeeded(), "get succeeded");
        Ctx.eq(60L, end.postValue(), "final value");
    }

    static final QueueSerializer<String> STRINGS = new QueueSerializer<>() {
        @Override
        public byte[] serialize(String item) {
            return item.getBytes(StandardCharsets.UTF_8);
        }

        @Override
        public String deserialize(byte[] bytes) {
            return new String(bytes, StandardCharsets.UTF_8);
        }
    };

    /** A producer puts 20 items; the consumer on another client gets them all, in order. */
    static void queue(Ctx ctx) throws Exception {
        String path = ctx.root + "/queue";
        BlockingQueue<String> consumed = new LinkedBlockingQueue<>();
        QueueConsumer<String> consumer = new QueueConsumer<>() {
            @Override
            public void consumeMessage(String message) {
                consumed.add(message);
            }

            @Override
            public void stateChanged(CuratorFramework client, ConnectionState newState) {}
        };
        DistributedQueue<String> producer =
                ctx.closeLater(QueueBuilder.builder(ctx.client(), null, STRINGS, path).buildQueue());
        producer.start();
        for (int i = 0; i < 20; i++) {
            producer.put(String.format("item-%02d", i));
        }
        DistributedQueue<String> consuming =
                ctx.closeLater(QueueBuilder.builder(ctx.client(), consumer, STRINGS, path).buildQueue());
        consuming.start();
        List<String> got = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            String item = consumed.poll(Ctx.WAIT_S, SECONDS);
            Ctx.check(item != null, "item " + i + " not consumed; got " + got);
            got.add(item);
        }
        for (int i = 0; i < 20; i++) {
            Ctx.eq(String.format("item-%02d", i), got.get(i), "item " + i);
        }
        producer.put("late");
        Ctx.eq("late", consumed.poll(Ctx.WAIT_S, SECONDS), "an item put while the consumer runs");
    }
}
