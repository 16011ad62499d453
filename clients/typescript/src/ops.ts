// Every op of docs/PROTOCOL.md as a method, written once for both transports: a method builds a
// `Request` (the JSON fields, how to read the answer, whether it may be sent again) and hands it
// to `call`, which the TCP and the HTTP transport each implement.

import { TurnsExist } from "./errors.js";
import type { JSONObject, JSONValue } from "./json.js";
import type {
  Added, BatchAdded, Changes, ChatMessage, ExportPage, Fields, ForgetOptions, Hello, Hit, ListOptions, Memory, NewMemory, Page, PromptAnswer,
  PromptOptions, SearchOptions, Sessions, Time, Users, Vector,
} from "./types.js";

export interface Request<T> {
  /** The request object, `op` included, without `rid` (the transport adds it). */
  fields: { [key: string]: unknown };
  /** Reads a successful answer. */
  parse: (answer: JSONObject) => T;
  /** Whether sending it twice does no harm: reads, and writes that carry their ids. Only these
   * are sent again after a lost connection, `busy` or `rate_limited`. */
  safe: boolean;
}

/** What every call may be given: a signal that abandons it, a timeout in milliseconds. */
export interface CallOptions {
  signal?: AbortSignal;
  timeout?: number;
}

/** A vector as the wire carries it: base64 of little-endian float32 (a quarter of the text, and
 * what the server stores), or the numbers as given when they do not fit float32, so the server
 * names the problem (`non_finite`). */
export function wireVector(vector: Vector | undefined): unknown {
  if (vector === undefined) return undefined;
  const floats = vector instanceof Float32Array ? vector : Float32Array.from(vector);
  if (!floats.every(Number.isFinite)) return Array.from(vector);
  const bytes = new Uint8Array(floats.buffer, floats.byteOffset, floats.byteLength);
  return Buffer.from(bytes).toString("base64");
}

function memoryFields(memory: NewMemory): { [key: string]: unknown } {
  return { ...memory, vector: wireVector(memory.vector) };
}

const asIs = (answer: JSONObject): Fields => {
  const { ok: _ok, rid: _rid, ...fields } = answer;
  return fields;
};

export abstract class Operations {
  /** Sends one request; the transport's. */
  protected abstract call<T>(request: Request<T>, options?: CallOptions): Promise<T>;

  // Connection and server

  ping(options?: CallOptions): Promise<boolean> {
    return this.call({ fields: { op: "ping" }, parse: (a) => a.pong === true, safe: true }, options);
  }

  hello(options?: CallOptions): Promise<Hello> {
    return this.call({ fields: { op: "hello" }, parse: (a) => asIs(a) as unknown as Hello, safe: true }, options);
  }

  /** Proves a key for the connection (the client does it itself when given a secret). */
  auth(secret: string, options?: CallOptions): Promise<{ key: string; role: string }> {
    return this.call(
      { fields: { op: "auth", secret }, parse: (a) => ({ key: a.key as string, role: a.role as string }), safe: true },
      options,
    );
  }

  stats(options?: CallOptions): Promise<Fields> {
    return this.call({ fields: { op: "stats" }, parse: asIs, safe: true }, options);
  }

  metrics(options?: CallOptions): Promise<string> {
    return this.call({ fields: { op: "metrics" }, parse: (a) => a.text as string, safe: true }, options);
  }

  cluster(options?: CallOptions): Promise<Fields> {
    return this.call({ fields: { op: "cluster" }, parse: asIs, safe: true }, options);
  }

  keys(options?: CallOptions): Promise<Fields> {
    return this.call({ fields: { op: "keys" }, parse: asIs, safe: true }, options);
  }

  /** Every place a memory lives agrees with the rows (an admin's): `users`, `memories`, `problems`. */
  check(options?: CallOptions): Promise<Fields> {
    return this.call({ fields: { op: "check" }, parse: asIs, safe: true }, options);
  }

  slowRequests(limit?: number, options?: CallOptions): Promise<Fields> {
    return this.call({ fields: { op: "slow_requests", limit }, parse: asIs, safe: true }, options);
  }

  backup(to: string, options?: CallOptions): Promise<Fields> {
    return this.call({ fields: { op: "backup", to }, parse: asIs, safe: false }, options);
  }

  /** A page of `user`'s memories (every user's, an admin's, when absent) in the order they were
   * stored, with every field; pass `next` back as `after` for the next page. */
  export(settings: { user?: string; after?: number; limit?: number; with_vector?: boolean } = {}, options?: CallOptions): Promise<ExportPage> {
    return this.call({ fields: { op: "export", ...settings }, parse: (a) => asIs(a) as unknown as ExportPage, safe: true }, options);
  }

  digest(user?: string, options?: CallOptions): Promise<{ digest: string; applied_index?: number }> {
    return this.call(
      { fields: { op: "digest", user }, parse: (a) => asIs(a) as { digest: string; applied_index?: number }, safe: true },
      options,
    );
  }

  embed(texts: string[], options?: CallOptions): Promise<{ model: string; vectors: number[][] }> {
    return this.call(
      { fields: { op: "embed", texts }, parse: (a) => ({ model: a.model as string, vectors: a.vectors as number[][] }), safe: true },
      options,
    );
  }

  // Writing memories

  /** Adds one memory; without `vector` the server embeds `text`. Sent again after a lost
   * connection only when it carries its `id`. */
  add(user: string, memory: NewMemory, options?: CallOptions): Promise<Added> {
    return this.call(
      { fields: { op: "add", ...memoryFields({ ...memory, user }) }, parse: (a) => asIs(a) as unknown as Added, safe: memory.id !== undefined },
      options,
    );
  }

  /** Adds every item (each with its `user`) in one transaction, or none. Sent again only when every item carries its `id`. */
  addBatch(items: NewMemory[], settings: { if_absent?: boolean; model?: string } = {}, options?: CallOptions): Promise<BatchAdded> {
    return this.call(
      {
        fields: { op: "add_batch", items: items.map(memoryFields), ...settings },
        parse: (a) => asIs(a) as unknown as BatchAdded,
        safe: items.every((item) => item.id !== undefined),
      },
      options,
    );
  }

  /**
   * Chat messages (`{role, content}`, optionally `name` as the speaker, `created_at`,
   * `metadata`) stored as the turns of `session` in one `add_batch`, with ids `{session}/{n}`.
   * By default they are appended: n continues after the session's turns on the server (one
   * `sessions` request first). A turn whose id holds another turn is kept, never overwritten,
   * unless `replace` (storing a conversation again): the others are stored and `TurnsExist`
   * names those that were not.
   */
  async addMessages(
    user: string, session: string, messages: ChatMessage[], settings: { firstIndex?: number; replace?: boolean } = {},
    options?: CallOptions,
  ): Promise<BatchAdded> {
    let first = settings.firstIndex;
    if (first === undefined) {
      const found = await this.sessions(user, 10_000, options);
      const listed = found.sessions.find((entry) => entry.session === session);
      if (!listed && found.more) throw new RangeError(`${user} has more sessions than one answer lists; pass firstIndex`);
      first = listed?.turns ?? 0;
    }
    const start = first;
    const items: NewMemory[] = messages.map((message, n) => ({
      id: `${session}/${start + n}`, user, session, role: message.role, speaker: message.name, text: message.content,
      created_at: message.created_at, metadata: message.metadata,
    }));
    if (settings.replace) return this.addBatch(items, {}, options);
    return this.call(
      {
        fields: { op: "add_batch", items: items.map(memoryFields), if_absent: true },
        parse: (a) => {
          const added = asIs(a) as unknown as BatchAdded;
          if (added.conflicts.length) throw new TurnsExist(added.conflicts.map((i) => items[i].id as string));
          return added;
        },
        safe: true,
      },
      options,
    );
  }

  /** Changes a memory's fields (`null` removes session, role or speaker); answers it as it now is. */
  update(user: string, id: string, changes: Changes, options?: CallOptions): Promise<Memory> {
    return this.call({ fields: { op: "update", user, id, ...changes }, parse: (a) => a.memory as unknown as Memory, safe: true }, options);
  }

  /** Deletes one memory. Not sent again: after a lost answer, a second delete would say `not_found` for a memory the first one deleted. */
  /** Deletes a memory (and, `with_derived`, the user's memories whose `sources` name it); answers how many went. */
  delete(user: string, id: string, settings: { with_derived?: boolean } = {}, options?: CallOptions): Promise<number> {
    return this.call({ fields: { op: "delete", user, id, ...settings }, parse: (a) => a.deleted as number, safe: false }, options);
  }

  /** Deletes all of `user`'s memories, or those matching every filter given (and, `with_derived`,
   * the user's memories whose `sources` name one of them); answers how many went. */
  forget(user: string, filters: ForgetOptions = {}, options?: CallOptions): Promise<number> {
    return this.call({ fields: { op: "forget", user, ...filters }, parse: (a) => a.deleted as number, safe: false }, options);
  }

  feedback(user: string, id: string, helped: boolean, options?: CallOptions): Promise<{ helped: number; not_helped: number }> {
    return this.call(
      { fields: { op: "feedback", user, id, helped }, parse: (a) => ({ helped: a.helped as number, not_helped: a.not_helped as number }), safe: false },
      options,
    );
  }

  // Reading memories

  /** The memories of `user` that best answer `query` (text) and/or `options.vector`, best first. */
  search(user: string, query: string | undefined, settings: SearchOptions = {}, options?: CallOptions): Promise<Hit[]> {
    return this.call(
      {
        fields: { op: "search", user, query, ...settings, vector: wireVector(settings.vector) },
        parse: (a) => a.hits as unknown as Hit[],
        safe: true,
      },
      options,
    );
  }

  /** A prompt for `query` within a token budget, and what went in and what was left out. */
  prompt(user: string, query: string, settings: PromptOptions = {}, options?: CallOptions): Promise<PromptAnswer> {
    return this.call(
      {
        fields: { op: "prompt", user, query, ...settings, vector: wireVector(settings.vector) },
        parse: (a) => asIs(a) as unknown as PromptAnswer,
        safe: true,
      },
      options,
    );
  }

  get(user: string, id: string, settings: { with_vector?: boolean; now?: Time } = {}, options?: CallOptions): Promise<Memory> {
    return this.call({ fields: { op: "get", user, id, ...settings }, parse: (a) => a.memory as unknown as Memory, safe: true }, options);
  }

  /** Several memories by id: those found, and the ids that were not. */
  getMany(user: string, ids: string[], settings: { with_vector?: boolean; now?: Time } = {}, options?: CallOptions): Promise<{ memories: Memory[]; missing: string[] }> {
    return this.call(
      {
        fields: { op: "get", user, ids, ...settings },
        parse: (a) => ({ memories: a.memories as unknown as Memory[], missing: a.missing as string[] }),
        safe: true,
      },
      options,
    );
  }

  /** A page of `user`'s memories; pass the answer's `next_cursor` as `cursor` for the next. */
  list(user: string, settings: ListOptions = {}, options?: CallOptions): Promise<Page> {
    return this.call(
      { fields: { op: "list", user, ...settings }, parse: (a) => ({ memories: a.memories as unknown as Memory[], next_cursor: a.next_cursor as string | null, now: a.now as number }), safe: true },
      options,
    );
  }

  /** `user`'s sessions, the latest active first; `settings` may be the limit alone. */
  sessions(user: string, settings: number | { limit?: number; now?: Time } = {}, options?: CallOptions): Promise<Sessions> {
    const { limit, now } = typeof settings === "number" ? { limit: settings, now: undefined } : settings;
    return this.call({ fields: { op: "sessions", user, limit, now }, parse: (a) => asIs(a) as unknown as Sessions, safe: true }, options);
  }

  /** A page of the users whose ids begin with `prefix`; pass `next` as `after` for the next. */
  users(settings: { prefix?: string; limit?: number; after?: string; now?: Time } = {}, options?: CallOptions): Promise<Users> {
    return this.call({ fields: { op: "users", ...settings }, parse: (a) => asIs(a) as unknown as Users, safe: true }, options);
  }
}

export type { JSONValue };
