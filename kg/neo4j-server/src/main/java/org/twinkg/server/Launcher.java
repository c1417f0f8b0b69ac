package org.twinkg.server;

import java.io.IOException;
import java.net.BindException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.connectors.HttpConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;

/**
 * Starts Neo4j Community (embedded) with only a Bolt connector on a loopback address.
 *
 * <p>Options (all {@code --name value}): {@code --home DIR} data folder (required), {@code
 * --address 127.0.0.1}, {@code --port 7687}, {@code --auth true|false}, {@code --password-file F}
 * (password of user neo4j, applied on every start), {@code --pagecache 512m}, {@code --tx-memory
 * 1g}, {@code --parent-pid N} (shut down when that process exits), {@code --conf FILE} (more
 * settings in neo4j.conf syntax; read first, so the options above win).
 *
 * <p>Prints {@code TWINKG-NEO4J-READY bolt://host:port} once Bolt accepts connections. Exit codes:
 * 2 bad arguments, 3 port in use, 4 other start failure. SIGTERM shuts the database down cleanly.
 */
public final class Launcher {
  private static final String USER = "neo4j";

  private Launcher() {}

  public static void main(String[] args) {
    Map<String, String> opts;
    try {
      opts = parse(args);
    } catch (IllegalArgumentException e) {
      fail(2, e.getMessage());
      return;
    }
    Path home = Path.of(opts.get("home")).toAbsolutePath();
    String address = opts.getOrDefault("address", "127.0.0.1");
    int port = Integer.parseInt(opts.getOrDefault("port", "7687"));
    boolean auth = Boolean.parseBoolean(opts.getOrDefault("auth", "true"));

    DatabaseManagementService dbms;
    try {
      DatabaseManagementServiceBuilder builder = new DatabaseManagementServiceBuilder(home);
      if (opts.containsKey("conf")) {
        builder.loadPropertiesFromFile(Path.of(opts.get("conf")));
      }
      dbms =
          builder
              .setConfig(BoltConnector.enabled, true)
              .setConfig(BoltConnector.listen_address, new SocketAddress(address, port))
              .setConfig(HttpConnector.enabled, false)
              .setConfig(GraphDatabaseSettings.auth_enabled, auth)
              .setConfig(
                  GraphDatabaseSettings.pagecache_memory,
                  bytes(opts.getOrDefault("pagecache", "512m")))
              .setConfig(
                  GraphDatabaseSettings.memory_transaction_global_max_size,
                  bytes(opts.getOrDefault("tx-memory", "1g")))
              .build();
    } catch (RuntimeException e) {
      if (causedByBind(e)) {
        fail(3, "port " + port + " on " + address + " is already in use");
      }
      fail(4, "Neo4j did not start: " + rootMessage(e));
      return;
    }
    Runtime.getRuntime().addShutdownHook(new Thread(dbms::shutdown, "twinkg-neo4j-shutdown"));

    if (auth && opts.containsKey("password-file")) {
      try {
        setPassword(dbms, Path.of(opts.get("password-file")));
      } catch (IOException | RuntimeException e) {
        fail(4, "could not set the neo4j password: " + rootMessage(e));
      }
    }
    if (opts.containsKey("parent-pid")) {
      long parent = Long.parseLong(opts.get("parent-pid"));
      ProcessHandle.of(parent)
          .ifPresentOrElse(
              handle -> handle.onExit().thenRun(() -> System.exit(0)), () -> System.exit(0));
    }
    System.out.println("TWINKG-NEO4J-READY bolt://" + address + ":" + port);
    System.out.flush();
    try {
      new CountDownLatch(1).await();
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
    }
  }

  private static void setPassword(DatabaseManagementService dbms, Path file) throws IOException {
    String password = Files.readString(file, StandardCharsets.UTF_8).strip();
    GraphDatabaseService system = dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME);
    try {
      system.executeTransactionally(
          "ALTER USER " + USER + " SET PASSWORD $password CHANGE NOT REQUIRED",
          Map.of("password", password));
    } catch (RuntimeException e) {
      // A restart with the password already in place: Neo4j refuses to "change" it to itself.
      if (!String.valueOf(rootMessage(e)).contains("cannot be the same")) {
        throw e;
      }
    }
  }

  private static Map<String, String> parse(String[] args) {
    Map<String, String> opts = new HashMap<>();
    for (int i = 0; i < args.length; i += 2) {
      if (!args[i].startsWith("--") || i + 1 >= args.length) {
        throw new IllegalArgumentException("expected --name value pairs, got " + args[i]);
      }
      opts.put(args[i].substring(2), args[i + 1]);
    }
    if (!opts.containsKey("home")) {
      throw new IllegalArgumentException("--home is required");
    }
    return opts;
  }

  private static long bytes(String size) {
    String s = size.strip().toLowerCase();
    long unit = 1;
    char last = s.charAt(s.length() - 1);
    if (last == 'k' || last == 'm' || last == 'g') {
      unit = last == 'k' ? 1L << 10 : last == 'm' ? 1L << 20 : 1L << 30;
      s = s.substring(0, s.length() - 1);
    }
    return Long.parseLong(s) * unit;
  }

  private static boolean causedByBind(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof BindException
          || t.getClass().getSimpleName().contains("PortBind")
          || String.valueOf(t.getMessage()).contains("Address already in use")) {
        return true;
      }
    }
    return false;
  }

  private static String rootMessage(Throwable e) {
    Throwable t = e;
    while (t.getCause() != null) {
      t = t.getCause();
    }
    return t.getClass().getSimpleName() + ": " + t.getMessage();
  }

  private static void fail(int code, String message) {
    System.err.println("TWINKG-NEO4J-ERROR " + message);
    System.err.flush();
    Runtime.getRuntime().halt(code);
  }
}
