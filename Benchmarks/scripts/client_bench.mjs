// The TypeScript client's side of Benchmarks/scripts/clients.sh: search latency one call at a
// time, and throughput with many calls in flight on one connection (pipelined), as one JSON line.
//   node client_bench.mjs PORT [USER] [SEQUENTIAL] [CONCURRENT]
import { Client } from "../../clients/typescript/dist/index.js";

const [port, user = "bench", sequential = "2000", concurrent = "1000"] = process.argv.slice(2);
/** A random unit vector (queries vary, so no cache answers them). */
function query() {
  const vector = Float32Array.from({ length: 384 }, () => Math.random() * 2 - 1);
  const norm = Math.hypot(...vector);
  return vector.map((x) => x / norm);
}

const client = new Client({ port: Number(port) });
for (let i = 0; i < 200; i++) await client.search(user, undefined, { vector: query(), k: 10 }); // warm-up, untimed
const latencies = [];
for (let i = 0; i < Number(sequential); i++) {
  const vector = query();
  const started = performance.now();
  await client.search(user, undefined, { vector, k: 10 });
  latencies.push((performance.now() - started) * 1000);
}
latencies.sort((a, b) => a - b);
const vectors = Array.from({ length: Number(concurrent) }, query);
const started = performance.now();
await Promise.all(vectors.map((vector) => client.search(user, undefined, { vector, k: 10 })));
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({
  client: "typescript", p50_us: latencies[latencies.length >> 1], p99_us: latencies[Math.floor(latencies.length * 0.99)],
  pipelined_per_s: Number(concurrent) / seconds,
}));
client.close();
