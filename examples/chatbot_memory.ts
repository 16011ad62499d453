// A chatbot's memory with ContextStore, from TypeScript: what an LLM would receive for each
// new message (the same as chatbot_memory.py).
//
// For each new message of a user: store it, ask the server for a prompt (pinned facts, the
// memories that answer it, a summary and the latest turns of the chat, within a token budget),
// and print what the model would be sent. No LLM is needed to run it.
//
//   tsc -p clients/typescript && tsc -p examples
//   node examples/chatbot_memory.js --locomo ../shared/datasets/locomo-dev --conversation conv-26
//
// Without --locomo it reads messages from standard input, one per line, as user "demo".
// --url http://127.0.0.1:7421 speaks the HTTP API instead of TCP.

import { readFileSync } from "node:fs";
import { Client, NewMemory } from "../clients/typescript/dist/index.js";

const options = new Map<string, string>();
for (let i = 2; i + 1 < process.argv.length; i += 2) options.set(process.argv[i].replace(/^--/, ""), process.argv[i + 1]);
const budget = Number(options.get("budget") ?? 1024);
const show = Number(options.get("show") ?? 1);

/** '1:56 pm on 8 May, 2023' -> Unix milliseconds (UTC). */
function locomoTime(text: string): number {
  const match = /^(\d+):(\d+) (am|pm) on (\d+) (\w+), (\d+)$/.exec(text);
  if (!match) throw new Error(`not a LoCoMo time: ${text}`);
  const [, hour, minute, half, day, month, year] = match;
  const months = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
  const hours = (Number(hour) % 12) + (half === "pm" ? 12 : 0);
  return Date.UTC(Number(year), months.indexOf(month), Number(day), hours, Number(minute));
}

interface Turn { conv: string; id: string; session: string; speaker: string; text: string; date: string }
interface Question { conv: string; text: string; evidence: string[] }

const jsonLines = <T>(path: string): T[] =>
  readFileSync(path, "utf8").split("\n").filter((line) => line.trim()).map((line) => JSON.parse(line) as T);

/** Stores the conversation's turns (ids as the dataset's, so evidence can be checked) and returns its questions. */
async function loadHistory(client: Client, folder: string, conversation: string): Promise<Question[]> {
  const turns = jsonLines<Turn>(`${folder}/turns.jsonl`).filter((turn) => turn.conv === conversation);
  if (!turns.length) throw new Error(`no turns of ${conversation} in ${folder}/turns.jsonl`);
  const items: NewMemory[] = turns.map((turn) => ({
    id: `${conversation}/${turn.id}`, user: conversation, session: turn.session, speaker: turn.speaker, text: turn.text,
    created_at: locomoTime(turn.date),
  }));
  for (let start = 0; start < items.length; start += 128) await client.addBatch(items.slice(start, start + 128));
  console.error(`stored ${items.length} turns of ${conversation} as user '${conversation}'`);
  return jsonLines<Question>(`${folder}/questions.jsonl`).filter((question) => question.conv === conversation);
}

async function main(): Promise<void> {
  const url = options.get("url");
  const client = url
    ? new Client({ url, secret: options.get("secret") })
    : new Client({ host: options.get("host"), port: Number(options.get("port") ?? 7420), secret: options.get("secret") });
  let user = "demo";
  let messages: [string, Set<string>][];
  const locomo = options.get("locomo");
  if (locomo) {
    user = options.get("conversation") ?? "conv-26";
    const questions = (await loadHistory(client, locomo, user)).slice(0, Number(options.get("questions") ?? 5));
    messages = questions.map((question) => [question.text, new Set(question.evidence.map((e) => `${user}/${e}`))]);
  } else {
    messages = readFileSync(0, "utf8").split("\n").filter((line) => line.trim()).map((line) => [line.trim(), new Set<string>()]);
  }
  const chat = "chat-" + new Date().toISOString().replace(/[-:]/g, "").slice(0, 15);
  let found = 0;
  let wanted = 0;
  for (const [number, [message, evidence]] of messages.entries()) {
    // One new message: store it, then build the prompt for it.
    await client.add(user, { id: `${chat}/${number}`, text: message, session: chat, role: "user" });
    const prompt = await client.prompt(user, message, { session: chat, budget });
    const used = new Set(prompt.used);
    const hits = [...evidence].filter((id) => used.has(id));
    found += hits.length;
    wanted += evidence.size;
    console.log(`\n=== message ${number + 1}: ${message}`);
    const sections = prompt.sections.filter((s) => s.tokens).map((s) => `${s.name} ${s.tokens}`).join(", ");
    console.log(`    prompt: ${prompt.tokens} tokens (${prompt.counter}), ${sections}`);
    if (evidence.size) console.log(`    evidence in the prompt: ${hits.length} of ${evidence.size}`);
    if (number < show) console.log(`--- what the LLM receives ---\n${prompt.prompt}\n-----------------------------`);
  }
  if (wanted) console.log(`\nevidence turns in the prompts: ${found} of ${wanted} (${Math.round((100 * found) / wanted)}%)`);
  client.close();
}

main().catch((error) => {
  console.error(String(error));
  process.exitCode = 1;
});
