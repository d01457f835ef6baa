// Leader election: LeaderLatch and LeaderSelector.

import static java.util.concurrent.TimeUnit.SECONDS;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.curator.framework.CuratorFramework;
import org.apache.curator.framework.recipes.leader.LeaderLatch;
import org.apache.curator.framework.recipes.leader.LeaderSelector;
import org.apache.curator.framework.recipes.leader.LeaderSelectorListenerAdapter;

final class LeaderCases {
    static void register(List<CuratorSuite.Case> cases) {
        cases.add(new CuratorSuite.Case("leader-latch-one-leader-and-handover", LeaderCases::leaderLatch));
        cases.add(new CuratorSuite.Case("leader-selector-one-leader-and-handover", LeaderCases::leaderSelector));
    }

    /** Three latches: exactly one leader; when it closes another takes over, still one. */
    static void leaderLatch(Ctx ctx) throws Exception {
        String path = ctx.root + "/latch";
        List<LeaderLatch> latches = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            LeaderLatch latch = ctx.closeLater(new LeaderLatch(ctx.client(), path, "p" + i));
            latch.start();
            latches.add(latch);
        }
        Ctx.eventually("exactly one of 3 latches leads", () -> leaders(latches) == 1);
        LeaderLatch first = latches.stream().filter(LeaderLatch::hasLeadership).findFirst().orElseThrow();
        for (LeaderLatch latch : latches) {
            Ctx.eq(first.getId(), latch.getLeader().getId(), "leader as seen by " + latch.getId());
        }
        first.close();
        latches.remove(first);
        Ctx.eventually("one of the 2 remaining latches takes over", () -> leaders(latches) == 1);
        LeaderLatch second = latches.stream().filter(LeaderLatch::hasLeadership).findFirst().orElseThrow();
        Ctx.check(second != first, "the closed latch still leads");
        Ctx.eq(2, second.getParticipants().size(), "participants after the leader left");
    }

    static long leaders(List<LeaderLatch> latches) {
        return latches.stream().filter(LeaderLatch::hasLeadership).count();
    }

    /**
     * Three selectors with auto-requeue: each leadership ends when its holder releases it;
     * there is never more than one leader, and leadership passes to every participant.
     */
    static void leaderSelector(Ctx ctx) throws Exception {
        String path = ctx.root + "/selector";
        AtomicInteger leading = new AtomicInteger(), maxLeading = new AtomicInteger();
        CountDownLatch terms = new CountDownLatch(6);
        List<String> leaders = java.util.Collections.synchronizedList(new ArrayList<>());
        for (int i = 0; i < 3; i++) {
            String id = "s" + i;
            CuratorFramework client = ctx.client();
            LeaderSelector selector = new LeaderSelector(client, path, new LeaderSelectorListenerAdapter() {
                @Override
                public void takeLeadership(CuratorFramework c) throws Exception {
                    maxLeading.accumulateAndGet(leading.incrementAndGet(), Math::max);
                    leaders.add(id);
                    Thread.sleep(50);
                    leading.decrementAndGet();
                    terms.countDown();
                }
            });
            selector.setId(id);
            selector.autoRequeue();
            ctx.closeLater(selector);
            selector.start();
        }
        Ctx.await(terms, "6 terms of leadership");
        Ctx.eq(1, maxLeading.get(), "most leaders at once");
        synchronized (leaders) {
            Ctx.eq(3L, leaders.stream().distinct().count(), "distinct leaders among " + leaders);
        }
    }
}
