// The TypeScript client against a real release server it starts (loopback, with keys), over
// both transports: `node --test` in clients/typescript after `tsc -p .` (scripts/test-typescript).

import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import {
  BudgetTooSmall, CertificateRejected, Client, ConnectionLost, Forbidden, NotFound, RateLimited, ServerError, Timeout, TurnsExist,
  Unauthorized, UnknownField, WrongDimension, parseJSON, stringifyJSON,
} from "../dist/index.js";

const repository = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");
const binary = process.env.CONTEXTSTORE_BIN ?? join(repository, ".build", "release", "contextstore");
const model = join(repository, "data", "models", "all-MiniLM-L6-v2");
const ADMIN = "admin-secret-0123456789";
const APP = "app-secret-0123456789ab";
const READER = "read-secret-0123456789a";
const SLOW = "slow-secret-0123456789a";
const keys = {
  keys: [
    { name: "ops", secret: ADMIN, role: "admin" },
    { name: "app", secret: APP, role: "app", users: ["alice", "bob", "team/*"] },
    { name: "reader", secret: READER, role: "read", users: ["alice"] },
    { name: "slow", secret: SLOW, role: "app", users: ["slow/*"], rate: { per_second: 20, burst: 2 } },
  ],
};

function freePort() {
  return new Promise((resolve) => {
    const probe = createServer().listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

/** A `contextstore serve` process on a port of its own; `restart()` keeps the port and the file. */
class Server {
  constructor(folder, port, extra) {
    this.folder = folder;
    this.port = port;
    this.extra = extra;
  }

  static async start(extra = []) {
    const folder = mkdtempSync(join(tmpdir(), "contextstore-ts-"));
    writeFileSync(join(folder, "keys.json"), JSON.stringify(keys));
    const server = new Server(folder, await freePort(), extra);
    await server.run();
    return server;
  }

  async run() {
    this.process = spawn(binary, [
      "serve", "--db", join(this.folder, "space.db"), "--port", String(this.port), "--http-port", "0", "--model",
      model, "--keys", join(this.folder, "keys.json"), "--log-level", "error", ...this.extra,
    ], { stdio: ["ignore", "pipe", "inherit"] });
    const lines = createInterface({ input: this.process.stdout });
    for await (const line of lines) {
      if (line.startsWith("http listening on ")) {
        this.http = `http://127.0.0.1:${line.split(":").pop()}`;
        break;
      }
    }
    assert.ok(this.http, "the server did not start");
  }

  async stop() {
    const exited = new Promise((resolve) => this.process.once("exit", resolve));
    this.process.kill("SIGTERM");
    await exited;
  }

  async restart() {
    await this.stop();
    await this.run();
  }
}

const dimension = 384;
const unit = (i) => Float32Array.from({ length: dimension }, (_, j) => (j === i % dimension ? 1 : 0));

let server;
before(async () => {
  server = await Server.start();
});
after(async () => {
  await server.stop();
  rmSync(server.folder, { recursive: true, force: true });
});

for (const transport of ["tcp", "http"]) {
  describe(`over ${transport}`, () => {
    const connect = (secret, settings = {}) =>
      transport === "tcp"
        ? new Client({ port: server.port, secret, ...settings })
        : new Client({ url: server.http, secret, ...settings });
    const user = `team/${transport}`;

    test("every op, with exact integers and strings", async () => {
      const client = connect(APP);
      const admin = connect(ADMIN);
      assert.equal(await client.ping(), true);
      const hello = await client.hello();
      assert.equal(hello.server, "contextstore");
      assert.equal(hello.dimension, dimension);
      const text = "tea at \u0000 noon, caf\u00e9 \u{1F375}";
      const big = 2n ** 63n - 1n;
      const metadata = parseJSON('{"n":9223372036854775807,"pinned":true,"__proto__":{"a":1}}');
      const added = await client.add(user, {
        id: "a1", text, session: "s1", role: "user", speaker: "Alice", created_at: 1_683_554_160_000, metadata,
        vector: unit(0),
      });
      assert.equal(added.id, "a1");
      const memory = await client.get(user, "a1");
      assert.equal(memory.text, text);
      assert.equal(memory.metadata.n, big);
      assert.deepEqual(Object.keys(memory.metadata), ["n", "pinned", "__proto__"]);
      assert.deepEqual(memory.metadata.__proto__, parseJSON('{"a":1}'));
      const batch = await client.addBatch([
        { id: "a2", user, session: "s1", role: "assistant", text: "I like green tea", created_at: 1_683_554_170_000, vector: Array.from(unit(1)) },
        { id: "a3", user, session: "s2", text: "Lisbon is sunny", created_at: 1_683_554_180_000, vector: unit(2) },
      ]);
      assert.deepEqual([batch.count, batch.ids], [2, ["a2", "a3"]]);
      const hits = await client.search(user, undefined, { vector: unit(2), k: 2, explain: true });
      assert.equal(hits[0].id, "a3");
      assert.equal(hits[0].explain.vector.rank, 1);
      const inSession = await client.search(user, undefined, { vector: unit(1), k: 1, session: "s1", context: 1 });
      assert.deepEqual(inSession.map((hit) => hit.id), ["a2"]);
      assert.deepEqual(inSession[0].context.map((turn) => turn.id), ["a1"]);
      const many = await client.getMany(user, ["a1", "zz", "a3"]);
      assert.deepEqual([many.memories.map((m) => m.id), many.missing], [["a1", "a3"], ["zz"]]);
      const page = await client.list(user, { limit: 2 });
      assert.deepEqual(page.memories.map((m) => m.id), ["a1", "a2"]);
      const rest = await client.list(user, { limit: 2, cursor: page.next_cursor });
      assert.deepEqual([rest.memories.map((m) => m.id), rest.next_cursor], [["a3"], null]);
      const sessions = await client.sessions(user);
      assert.deepEqual(sessions.sessions.map((s) => [s.session, s.turns]), [["s2", 1], ["s1", 2]]);
      const updated = await client.update(user, "a3", { session: null, metadata: { topic: "weather" } });
      assert.deepEqual([updated.session, updated.metadata], [null, { topic: "weather" }]);
      assert.deepEqual(await client.feedback(user, "a2", true), { helped: 1, not_helped: 0 });
      const prompt = await client.prompt(user, "What tea do I like?", { vector: unit(1), session: "s1", budget: 400, format: "messages", mode: "vector", spans: true });
      assert.ok(prompt.tokens <= 400 && prompt.prompt.endsWith("What tea do I like?"));
      // a1 is pinned and one of the session's latest turns: it stays in the dialogue.
      assert.deepEqual(prompt.sections.find((s) => s.name === "pinned").ids, []);
      assert.ok(prompt.sections.find((s) => s.name === "recent").ids.includes("a1"));
      assert.deepEqual(prompt.messages.at(-1), { role: "user", content: "What tea do I like?" });
      const bytes = new TextEncoder().encode(prompt.prompt);
      const query = prompt.spans.at(-1);
      assert.equal(new TextDecoder().decode(bytes.subarray(query.start, query.end)), "What tea do I like?");
      await assert.rejects(client.prompt(user, "What tea do I like? ".repeat(20), { vector: unit(1), budget: 5 }), (error) => {
        assert.ok(error instanceof BudgetTooSmall && error.details.needed > 5);
        return true;
      });
      assert.equal(await client.delete(user, "a3"), 1);
      await assert.rejects(client.get(user, "a3"), NotFound);
      assert.equal(await client.forget(user, { session: "s1" }), 2);
      assert.deepEqual((await client.list(user)).memories, []);
      const users = await admin.users({ prefix: "team/" });
      assert.ok(Array.isArray(users.users));
      assert.ok((await admin.metrics()).includes("contextstore_requests_total"));
      assert.equal((await admin.keys()).enabled, true);
      assert.equal((await admin.slowRequests(5)).threshold_ms, 250);
      assert.equal((await admin.digest()).digest.length, 64);
      assert.deepEqual((await admin.check()).problems, []);
      assert.equal(typeof (await admin.stats()).memories, "number");
      client.close();
      admin.close();
    });

    test("errors come as one class per code, and the connection survives them", async () => {
      const client = connect(APP);
      await assert.rejects(client.add(user, { text: "x", vector: [1, 2, 3, 4] }), (error) => {
        assert.ok(error instanceof WrongDimension && error instanceof ServerError);
        assert.equal(error.code, "wrong_dimension");
        return true;
      });
      await assert.rejects(client.search("carol", undefined, { vector: unit(0) }), Forbidden);
      await assert.rejects(client.search(user, undefined, { vector: unit(0), colour: "red" }), UnknownField);
      assert.equal(await client.ping(), true);
      await assert.rejects(connect("not-a-secret-of-any-key-0").ping(), Unauthorized);
      const reader = connect(READER);
      await assert.rejects(reader.add("alice", { text: "x", vector: unit(0) }), Forbidden);
      client.close();
      reader.close();
    });

    test("a fact that changes: supersedes, as_of and the history", async () => {
      const client = connect(APP);
      const facts = `${user}/facts`;
      await client.add(facts, { id: "lisbon", text: "Eve lives in Lisbon", created_at: "2023-05-08", vector: unit(3) });
      await client.add(facts, { id: "porto", text: "Eve moved to Porto", created_at: "2023-05-18", vector: unit(3), supersedes: "lisbon" });
      assert.deepEqual((await client.search(facts, undefined, { vector: unit(3) })).map((hit) => hit.id), ["porto"]);
      const before = await client.search(facts, undefined, { vector: unit(3), as_of: "2023-05-10" });
      assert.deepEqual(before.map((hit) => [hit.id, hit.valid_to, hit.superseded_by]), [["lisbon", 1684368000000, "porto"]]);
      const history = await client.list(facts, { include_superseded: true });
      assert.deepEqual(history.memories.map((m) => [m.id, m.supersedes ?? null]), [["lisbon", null], ["porto", "lisbon"]]);
      // A read at a time of one's choosing says so, and answers alike whenever it is asked.
      const then = await client.list(facts, { now: "2023-05-10" });
      assert.deepEqual([then.memories.map((m) => m.id), then.now], [["lisbon"], 1683676800000]);
      assert.deepEqual(await client.list(facts, { now: "2023-05-10" }), then);
      assert.equal((await client.sessions(facts, { now: 1683676800000 })).now, 1683676800000);
      const first = await client.export({ user: facts, limit: 1 });
      assert.deepEqual(first.memories.map((m) => [m.id, m.superseded_by]), [["lisbon", "porto"]]);
      assert.deepEqual((await client.export({ user: facts, after: first.next })).memories.map((m) => m.id), ["porto"]);
      await assert.rejects(client.add(facts, { text: "x", vector: unit(3), supersedes: "nobody" }), NotFound);
      await client.add(facts, { id: "turn", text: "Eve said she moved", vector: unit(4) });
      await client.add(facts, { id: "derived", text: "Eve lives in Porto now", vector: unit(4), sources: ["turn", "doc:1"] });
      assert.deepEqual((await client.get(facts, "derived")).sources, ["turn", "doc:1"]);
      assert.equal(await client.delete(facts, "turn", { with_derived: true }), 2);
      const again = await client.add(facts, { text: " eve MOVED to porto", vector: unit(3), dedupe: "exact" });
      assert.deepEqual([again.id, again.duplicate], ["porto", true]);
      client.close();
    });

    test("addMessages appends chat turns and never overwrites one", async () => {
      const client = connect(APP);
      const chat = `${user}/chat`;
      const first = await client.addMessages(user, chat, [
        { role: "user", content: "Hi, I'm Ana", name: "Ana", created_at: 1_700_000_000_000 },
        { role: "assistant", content: "Hello Ana!", created_at: 1_700_000_001_000 },
      ]);
      assert.deepEqual(first.ids, [`${chat}/0`, `${chat}/1`]);
      const next = await client.addMessages(user, chat, [{ role: "user", content: "I moved to Porto", created_at: 1_700_000_002_000 }]);
      assert.deepEqual(next.ids, [`${chat}/2`]);
      await assert.rejects(
        client.addMessages(user, chat, [{ role: "user", content: "something else", created_at: 1 }], { firstIndex: 0 }),
        TurnsExist,
      );
      const turns = await client.list(user, { session: chat });
      assert.deepEqual(turns.memories.map((m) => m.text), ["Hi, I'm Ana", "Hello Ana!", "I moved to Porto"]);
      client.close();
    });

    test("a thousand calls at once are answered, each its own", async () => {
      const client = connect(APP);
      await client.addBatch([0, 1, 2, 3].map((i) => ({ id: `p${i}`, user, text: `memory ${i}`, vector: unit(i) })));
      const started = performance.now();
      const answers = await Promise.all(
        Array.from({ length: 1000 }, (_, i) => client.search(user, undefined, { vector: unit(i % 4), k: 1 })),
      );
      const seconds = (performance.now() - started) / 1000;
      assert.ok(answers.every((hits, i) => hits[0].id === `p${i % 4}`));
      console.log(`# ${transport}: 1,000 concurrent searches in ${seconds.toFixed(3)} s`);
      client.close();
    });

    test("a timeout or an abort ends a call; a rate limit is waited out", async () => {
      const client = connect(APP, { timeout: 1 });
      await assert.rejects(client.addBatch(Array.from({ length: 2000 }, (_, i) => ({ user, text: `t${i}`, vector: unit(i) }))), Timeout);
      const controller = new AbortController();
      controller.abort();
      const patient = connect(APP);
      await assert.rejects(patient.ping({ signal: controller.signal }), Timeout);
      assert.equal(await patient.ping(), true);
      // 20 a second, a burst of 2: the searches past the burst wait and then succeed.
      const slow = connect(SLOW);
      const hits = await Promise.all(Array.from({ length: 5 }, () => slow.search("slow/a", undefined, { vector: unit(0) })));
      assert.equal(hits.length, 5);
      const impatient = connect(SLOW, { retries: 0 });
      await assert.rejects(
        Promise.all(Array.from({ length: 5 }, () => impatient.search("slow/a", undefined, { vector: unit(0) }))),
        RateLimited,
      );
      client.close();
      patient.close();
      slow.close();
      impatient.close();
    });
  });
}

test("over tcp, a safe request is sent again after a restart; an unsafe write is not", async () => {
  const client = new Client({ port: server.port, secret: APP, backoff: 100 });
  await client.add("alice", { id: "r1", text: "kept", vector: unit(0) });
  await server.restart();
  assert.equal((await client.get("alice", "r1")).text, "kept"); // reconnected and authenticated again
  const writer = new Client({ port: server.port, secret: APP, retries: 3, backoff: 10 });
  await writer.ping();
  await server.stop();
  await assert.rejects(writer.add("alice", { text: "no id: sent twice it would be stored twice", vector: unit(0) }), ConnectionLost);
  await server.run();
  client.close();
  writer.close();
});

test("over TLS, with the server's certificate trusted; untrusted, refused at once", async () => {
  const folder = mkdtempSync(join(tmpdir(), "contextstore-ts-tls-"));
  const certificate = join(folder, "cert.pem");
  const key = join(folder, "key.pem");
  execFileSync("openssl", [
    "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
    certificate, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
  ], { stdio: "ignore" });
  const secure = await Server.start(["--tls-cert", certificate, "--tls-key", key]);
  try {
    const client = new Client({ host: "localhost", port: secure.port, secret: APP, tls: { ca: readFileSync(certificate) } });
    assert.equal((await client.add("alice", { id: "t", text: "over TLS \u0000", vector: unit(1) })).id, "t");
    const got = await Promise.all(Array.from({ length: 300 }, () => client.get("alice", "t")));
    assert.ok(got.every((memory) => memory.text === "over TLS \u0000"));
    client.close();
    const distrusting = new Client({ host: "localhost", port: secure.port, secret: APP, tls: true });
    const started = performance.now();
    await assert.rejects(distrusting.ping(), CertificateRejected);
    assert.ok(performance.now() - started < 1000, "not tried again");
  } finally {
    await secure.stop();
    rmSync(secure.folder, { recursive: true, force: true });
    rmSync(folder, { recursive: true, force: true });
  }
});

test("JSON keeps integers exact and __proto__ a key like any other", () => {
  const parsed = parseJSON('{"big":9223372036854775807,"small":-3,"real":1.5e3,"__proto__":{"x":[true,null,"\\u0000"]}}');
  assert.equal(parsed.big, 9223372036854775807n);
  assert.equal(parsed.small, -3);
  assert.equal(parsed.real, 1500);
  assert.deepEqual(Object.keys(parsed), ["big", "small", "real", "__proto__"]);
  assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
  assert.equal(stringifyJSON(parsed), '{"big":9223372036854775807,"small":-3,"real":1500,"__proto__":{"x":[true,null,"\\u0000"]}}');
  assert.throws(() => parseJSON("[1,]"), SyntaxError);
  assert.throws(() => stringifyJSON({ x: NaN }), TypeError);
});

test("a write's sequence goes with later requests about its user, over a scripted peer", async () => {
  // A cluster node answers writes with `seqs`; the client keeps each user's newest and sends it
  // as `min_seq`. The peer answers a write with sequences and every other request with the
  // `min_seq` it was sent.
  const peer = createServer((socket) => {
    let buffered = "";
    socket.on("data", (chunk) => {
      buffered += chunk.toString("utf8");
      let newline;
      while ((newline = buffered.indexOf("\n")) >= 0) {
        const request = JSON.parse(buffered.slice(0, newline));
        buffered = buffered.slice(newline + 1);
        const answer = request.op === "add"
          ? { ok: true, rid: request.rid, id: "x", seqs: request.user === "alice" ? { alice: request.seq } : { bob: 3 } }
          : { ok: true, rid: request.rid, sessions: [], more: false, min_seq: request.min_seq ?? null };
        socket.write(JSON.stringify(answer) + "\n");
      }
    });
  });
  await new Promise((resolve) => peer.listen(0, "127.0.0.1", resolve));
  const client = new Client({ port: peer.address().port });
  await client.addBatch([]); // not an add: nothing noted
  await client.add("alice", { text: "t", seq: 7 });
  await client.add("alice", { text: "t", seq: 5 }); // the answer to an older write
  await client.add("bob", { text: "t" });
  assert.deepEqual([...client.sequences], [["alice", 7], ["bob", 3]]);
  assert.equal((await client.sessions("alice")).min_seq, 7);
  assert.equal((await client.sessions("carol")).min_seq, null);
  client.close();
  peer.close();
});
