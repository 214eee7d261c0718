/**
 * Private services for the fault suite, started and stopped by the suite itself, never the shared ones of
 * scripts/services (others test against those): a single-node Kafka (KRaft) from the jars scripts/services
 * cached, a PostgreSQL cluster made with initdb in a temporary directory, and a nats-server with JetStream
 * from the cached binary — each on free ports, each with its data in a temporary directory.
 *
 * Kafka clients connect to the broker address that metadata advertises, so a proxy in front of the bootstrap
 * address alone would see only the first connection. The private broker therefore has two listeners:
 * INTERNAL (direct, for test plumbing and the broker itself) and EXTERNAL, advertised at the proxy's port, so
 * every connection of the job under test goes through the proxy.
 * @module
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import process from "node:process";
import { Kafka, logLevel } from "kafkajs";
import postgres from "postgres";
import { freePort } from "../support/tcp-proxy.ts";

// Where scripts/services caches its downloads and builds (outside the checkout, shared by clones).
const CACHE = process.env.GRESS_SERVICES_CACHE ?? join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "gress", "services");
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitUntil(what: string, timeoutMs: number, ready: () => Promise<boolean>, log?: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await ready()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`${what} not ready after ${timeoutMs} ms${log === undefined ? "" : `\n${log()}`}`);
    await sleep(300);
  }
}

function tail(file: string, lines = 30): string {
  try {
    return execFileSync("tail", ["-n", String(lines), file], { encoding: "utf8" });
  } catch {
    return "";
  }
}

/** Stops a detached child: TERM, then KILL after `ms`. */
async function stopChild(child: ChildProcess, ms: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), ms);
  await exited;
  clearTimeout(t);
}

// ---------------------------------------------------------------- Kafka

/** A private single-node Kafka broker. */
export interface PrivateKafka {
  /** Direct address (INTERNAL listener): for producing input and reading output. */
  readonly internal: string;
  /** The EXTERNAL listener's real port: the proxy's target. */
  readonly externalPort: number;
  /** The port EXTERNAL is advertised at: where the proxy listens. */
  readonly advertisedPort: number;
  kafka(): Kafka;
  /** Stops the broker (SIGTERM, or SIGKILL with `kill`), keeping its data. */
  stop(kill?: boolean): Promise<void>;
  /** Starts it again on the same ports and data. */
  start(): Promise<void>;
  /** Stops it and deletes its data. */
  destroy(): Promise<void>;
}

/** The directory of the Kafka jars scripts/services cached, or a clear error. */
function kafkaLibs(): string {
  const dir = existsSync(CACHE) ? readdirSync(CACHE).find((d) => /^kafka-\d/.test(d) && existsSync(join(CACHE, d, "libs"))) : undefined;
  if (dir === undefined) throw new Error(`no Kafka jars under ${CACHE}: run scripts/services up kafka once`);
  return join(CACHE, dir, "libs");
}

/** Starts a private broker whose EXTERNAL listener is advertised at `advertisedPort` (a proxy's port). */
export async function startPrivateKafka(advertisedPort: number): Promise<PrivateKafka> {
  const libs = kafkaLibs();
  const dir = mkdtempSync(join(tmpdir(), "gress-faults-kafka-"));
  const [internal, external, controller] = [await freePort(), await freePort(), await freePort()];
  const host = "127.0.0.1";
  const props = join(dir, "server.properties");
  writeFileSync(
    props,
    [
      "process.roles=broker,controller",
      "node.id=1",
      `controller.quorum.voters=1@${host}:${controller}`,
      `listeners=INTERNAL://${host}:${internal},EXTERNAL://${host}:${external},CONTROLLER://${host}:${controller}`,
      `advertised.listeners=INTERNAL://${host}:${internal},EXTERNAL://${host}:${advertisedPort}`,
      "listener.security.protocol.map=INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
      "inter.broker.listener.name=INTERNAL",
      "controller.listener.names=CONTROLLER",
      `log.dirs=${join(dir, "data")}`,
      "offsets.topic.replication.factor=1",
      "transaction.state.log.replication.factor=1",
      "transaction.state.log.min.isr=1",
      "offsets.topic.num.partitions=1",
      "transaction.state.log.num.partitions=1",
      "group.initial.rebalance.delay.ms=0",
      // No time-based deletion: records carry fixed past timestamps (see scripts/services).
      "log.retention.ms=-1",
      "auto.create.topics.enable=true",
      "num.partitions=1",
      "default.replication.factor=1",
      "num.network.threads=2",
      "num.io.threads=2",
      // Transactions past their timeout are aborted within a second (default: checked every 10 s).
      "transaction.abort.timed.out.transaction.cleanup.interval.ms=1000",
      "",
    ].join("\n"),
  );
  const log4j = join(dir, "log4j.properties");
  writeFileSync(
    log4j,
    "log4j.rootLogger=WARN, stdout\nlog4j.appender.stdout=org.apache.log4j.ConsoleAppender\nlog4j.appender.stdout.layout=org.apache.log4j.PatternLayout\nlog4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n",
  );
  const java = process.env.JAVA_HOME !== undefined ? join(process.env.JAVA_HOME, "bin", "java") : "java";
  const cp = `${libs}/*`;
  // A random 16-byte id in URL-safe base64 (22 characters). Its first character is made a letter (the top 6
  // bits of the first byte), or StorageTool would take an id starting with "-" for an option.
  const id = Array.from({ length: 16 }, () => Math.floor(Math.random() * 256));
  id[0] = (Math.floor(Math.random() * 52) << 2) | (id[0]! & 3);
  const clusterId = Buffer.from(id).toString("base64").replace(/\+/g, "-").replace(/\//g, "_").slice(0, 22);
  execFileSync(java, ["-Xmx256m", `-Dlog4j.configuration=file:${log4j}`, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", clusterId, "-c", props], {
    stdio: "ignore",
  });
  const logFile = join(dir, "kafka.log");
  let child: ChildProcess | undefined;
  const k = (): Kafka => new Kafka({ brokers: [`${host}:${internal}`], clientId: "gress-faults", logLevel: logLevel.NOTHING });
  const start = async (): Promise<void> => {
    const { openSync } = await import("node:fs");
    const out = openSync(logFile, "a");
    child = spawn(java, ["-Xms128m", "-Xmx512m", "-XX:+UseG1GC", "-XX:TieredStopAtLevel=1", `-Dlog4j.configuration=file:${log4j}`, "-cp", cp, "kafka.Kafka", props], {
      stdio: ["ignore", out, out],
    });
    const c = child;
    await waitUntil(
      "private Kafka",
      120_000,
      async () => {
        if (c.exitCode !== null) throw new Error("exited");
        const admin = k().admin();
        await admin.connect();
        try {
          await admin.listTopics();
          return true;
        } finally {
          await admin.disconnect();
        }
      },
      () => tail(logFile),
    );
    if (c.exitCode !== null) throw new Error(`private Kafka exited with ${c.exitCode}:\n${tail(logFile)}`);
  };
  const stop = async (kill = false): Promise<void> => {
    if (child === undefined) return;
    if (kill) child.kill("SIGKILL");
    await stopChild(child, 30_000);
    child = undefined;
  };
  await start();
  return {
    internal: `${host}:${internal}`,
    externalPort: external,
    advertisedPort,
    kafka: k,
    stop,
    start,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- PostgreSQL

const PG_BIN = "/usr/lib/postgresql/15/bin";

/** A private PostgreSQL cluster. */
export interface PrivatePostgres {
  readonly port: number;
  /** URL for user `gress` at `host:port` (pass the proxy's port to go through it). */
  url(port?: number): string;
  /** Restarts the server: `immediate` is a crash restart (no shutdown checkpoint, connections cut). */
  restart(mode?: "fast" | "immediate"): void;
  destroy(): Promise<void>;
}

/** Starts a private cluster (initdb in a temporary directory, run as the `postgres` OS user when root). */
export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  if (!existsSync(join(PG_BIN, "postgres"))) throw new Error(`no PostgreSQL 15 at ${PG_BIN}: run scripts/services up pg once`);
  const root = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "gress-faults-pg-"));
  const data = join(dir, "data");
  const sock = join(dir, "s");
  mkdirSync(sock);
  const uid = root ? Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim()) : undefined;
  const gid = root ? Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim()) : undefined;
  if (uid !== undefined && gid !== undefined) {
    chownSync(dir, uid, gid);
    chownSync(sock, uid, gid);
  }
  const asPg = (cmd: string, args: string[]): string =>
    root ? execFileSync("runuser", ["-u", "postgres", "--", join(PG_BIN, cmd), ...args], { encoding: "utf8" }) : execFileSync(join(PG_BIN, cmd), args, { encoding: "utf8" });
  const port = await freePort();
  asPg("initdb", ["-D", data, "-U", "postgres", "--auth-local=trust", "--auth-host=md5", "-E", "UTF8", "--locale=C.UTF-8", "-N"]);
  const opts = `-c listen_addresses=127.0.0.1 -p ${port} -k ${sock} -c fsync=off -c full_page_writes=off -c max_prepared_transactions=20`;
  const pgctl = (args: string[]): string => asPg("pg_ctl", ["-D", data, "-l", join(dir, "postgres.log"), "-w", "-t", "60", ...args]);
  pgctl(["-o", opts, "start"]);
  const admin = (sql: string): string => asPg("psql", ["-h", sock, "-p", String(port), "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qtAc", sql]);
  admin("CREATE ROLE gress LOGIN CREATEDB PASSWORD 'gress'");
  admin("CREATE DATABASE gress OWNER gress");
  const url = (p = port): string => `postgres://gress:gress@127.0.0.1:${p}/gress`;
  await waitUntil("private PostgreSQL", 30_000, async () => {
    const sql = postgres(url(), { max: 1, onnotice: () => {} });
    try {
      await sql`select 1`;
      return true;
    } finally {
      await sql.end({ timeout: 1 });
    }
  });
  return {
    port,
    url,
    restart: (mode = "immediate") => {
      pgctl(["-m", mode, "-o", opts, "restart"]);
    },
    destroy: async () => {
      try {
        pgctl(["-m", "immediate", "stop"]);
      } catch {
        // already stopped
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

// ---------------------------------------------------------------- NATS

/** A private nats-server with JetStream. */
export interface PrivateNats {
  readonly port: number;
  readonly monitorPort: number;
  /** Stops the server (SIGKILL with `kill`: no clean shutdown), keeping its store. */
  stop(kill?: boolean): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

function natsBin(): string {
  const dir = existsSync(CACHE) ? readdirSync(CACHE).find((d) => /^nats-server-/.test(d) && existsSync(join(CACHE, d, "nats-server"))) : undefined;
  if (dir !== undefined) return join(CACHE, dir, "nats-server");
  throw new Error(`no nats-server under ${CACHE}: run scripts/services up nats once`);
}

/** Starts a private nats-server with JetStream on free ports. */
export async function startPrivateNats(): Promise<PrivateNats> {
  const bin = natsBin();
  const dir = mkdtempSync(join(tmpdir(), "gress-faults-nats-"));
  const [port, monitorPort] = [await freePort(), await freePort()];
  let child: ChildProcess | undefined;
  const logFile = join(dir, "nats.log");
  const start = async (): Promise<void> => {
    const { openSync } = await import("node:fs");
    const out = openSync(logFile, "a");
    child = spawn(bin, ["--server_name", "gress-faults", "-js", "-sd", dir, "-a", "127.0.0.1", "-p", String(port), "-m", String(monitorPort)], {
      stdio: ["ignore", out, out],
    });
    const c = child;
    await waitUntil(
      "private NATS",
      30_000,
      async () => {
        if (c.exitCode !== null) throw new Error("exited");
        const r = await fetch(`http://127.0.0.1:${monitorPort}/healthz?js-enabled-only=true`);
        return r.ok;
      },
      () => tail(logFile),
    );
  };
  const stop = async (kill = false): Promise<void> => {
    if (child === undefined) return;
    if (kill) child.kill("SIGKILL");
    await stopChild(child, 20_000);
    child = undefined;
  };
  await start();
  return {
    port,
    monitorPort,
    stop,
    start,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
