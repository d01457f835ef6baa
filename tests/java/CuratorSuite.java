// The Apache Curator 5 recipe suite: runs every case of the *Cases classes against one server,
// each with a time limit, and prints `ok   - name` / `FAIL - name: reason` lines and a summary.
// Usage: java CuratorSuite HOST:PORT REAP_INTERVAL_MS [name-substring ...]
// (tests/curator_suite.sh compiles it against the Debian jars, starts the server and runs it).

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;

public final class CuratorSuite {
    /** One case: a name and a body that throws on failure. */
    record Case(String name, Body body) {}

    @FunctionalInterface
    interface Body {
        void run(Ctx ctx) throws Exception;
    }

    /** Every case gets at most this long; a hung recipe is a failure, not a hung suite. */
    static final long CASE_TIMEOUT_S = 60;

    public static void main(String[] args) throws Exception {
        if (args.length < 2) {
            System.err.println("usage: CuratorSuite HOST:PORT REAP_INTERVAL_MS [name-substring ...]");
            System.exit(2);
        }
        String server = args[0];
        long reapIntervalMs = Long.parseLong(args[1]);
        List<String> filters = List.of(args).subList(2, args.length);

        List<Case> cases = new ArrayList<>();
        LockCases.register(cases);
        LeaderCases.register(cases);
        WatchCases.register(cases);
        CoordinationCases.register(cases);
        NodeCases.register(cases);
        ClientCases.register(cases);

        int passed = 0, failed = 0;
        for (Case c : cases) {
            if (!filters.isEmpty() && filters.stream().noneMatch(c.name()::contains)) {
                continue;
            }
            String failure = runOne(c, server, reapIntervalMs);
            if (failure == null) {
                passed++;
                System.out.println("ok   - " + c.name());
            } else {
                failed++;
                System.out.println("FAIL - " + c.name() + ": " + failure);
            }
            System.out.flush();
        }
        System.out.println("curator_suite: " + passed + " passed, " + failed + " failed");
        // Curator and ZooKeeper leave non-daemon threads behind in failed cases: exit explicitly.
        System.exit(failed == 0 && passed > 0 ? 0 : 1);
    }

    /** Runs one case in its own thread with a time limit; returns null or why it failed. */
    static String runOne(Case c, String server, long reapIntervalMs) {
        ExecutorService executor = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "case-" + c.name());
            t.setDaemon(true);
            return t;
        });
        Ctx ctx = new Ctx(server, reapIntervalMs, c.name());
        try {
            Future<?> result = executor.submit(() -> {
                c.body().run(ctx);
                return null;
            });
            result.get(CASE_TIMEOUT_S, TimeUnit.SECONDS);
            return null;
        } catch (TimeoutException e) {
            return "timed out after " + CASE_TIMEOUT_S + " s";
        } catch (java.util.concurrent.ExecutionException e) {
            Throwable cause = e.getCause();
            return cause.getClass().getSimpleName() + ": " + cause.getMessage() + where(cause);
        } catch (InterruptedException e) {
            return "interrupted";
        } finally {
            executor.shutdownNow();
            ctx.close();
        }
    }

    /** The first stack frame inside the suite, so a failed assertion points at its line. */
    static String where(Throwable t) {
        for (StackTraceElement frame : t.getStackTrace()) {
            if (frame.getClassName().endsWith("Cases")) {
                return " (" + frame.getFileName() + ":" + frame.getLineNumber() + ")";
            }
        }
        return "";
    }
}
