// A loopback TCP proxy in front of the server that a case can cut: it closes every connection
// through it and, while refusing, closes new ones at once, so a client is cut off for as long
// as the case wants (ZooKeeper clients then reconnect through it).

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;

final class Proxy implements AutoCloseable {
    private final ServerSocket listener;
    private final String targetHost;
    private final int targetPort;
    private final List<Socket> sockets = new CopyOnWriteArrayList<>();
    private volatile boolean refusing;

    Proxy(String target) throws IOException {
        int colon = target.lastIndexOf(':');
        targetHost = target.substring(0, colon);
        targetPort = Integer.parseInt(target.substring(colon + 1));
        listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread acceptor = new Thread(this::acceptLoop, "proxy-accept");
        acceptor.setDaemon(true);
        acceptor.start();
    }

    /** The connect string of the proxy. */
    String connectString() {
        return "127.0.0.1:" + listener.getLocalPort();
    }

    /** Closes every connection through the proxy; with `refuse`, new ones are closed too. */
    void cut(boolean refuse) {
        refusing = refuse;
        for (Socket s : sockets) {
            closeQuietly(s);
        }
        sockets.clear();
    }

    /** Lets connections through again. */
    void restore() {
        refusing = false;
    }

    @Override
    public void close() {
        closeQuietly(listener);
        cut(true);
    }

    private void acceptLoop() {
        while (!listener.isClosed()) {
            try {
                Socket client = listener.accept();
                if (refusing) {
                    closeQuietly(client);
                    continue;
                }
                Socket server = new Socket();
                server.connect(new InetSocketAddress(targetHost, targetPort), 5_000);
                sockets.add(client);
                sockets.add(server);
                pump(client, server);
                pump(server, client);
            } catch (IOException e) {
                // The listener was closed, or the server refused: the client sees a closed socket.
            }
        }
    }

    private void pump(Socket from, Socket to) throws IOException {
        InputStream in = from.getInputStream();
        OutputStream out = to.getOutputStream();
        Thread t = new Thread(() -> {
            byte[] buf = new byte[64 * 1024];
            try {
                for (int n; (n = in.read(buf)) >= 0; ) {
                    out.write(buf, 0, n);
                    out.flush();
                }
            } catch (IOException e) {
                // Cut: both directions end below.
            } finally {
                closeQuietly(from);
                closeQuietly(to);
            }
        }, "proxy-pump");
        t.setDaemon(true);
        t.start();
    }

    private static void closeQuietly(AutoCloseable c) {
        try {
            c.close();
        } catch (Exception ignored) {
            // Already closed.
        }
    }
}
