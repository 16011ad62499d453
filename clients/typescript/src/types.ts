// What the ops take and answer, as the wire has them (docs/PROTOCOL.md): field names are the
// protocol's own, so its reference reads for this client too. Times are Unix milliseconds
// (or ISO 8601 text where a request takes a time).

import type { JSONObject, JSONValue } from "./json.js";

export type Role = "user" | "assistant" | "system" | "tool";
export type Mode = "vector" | "keyword" | "hybrid";
/** A vector: numbers, or a Float32Array (sent as base64 of its bytes). */
export type Vector = number[] | Float32Array;
export type Time = number | string;

export interface Memory {
  id: string;
  user: string;
  session: string | null;
  role: Role | null;
  speaker: string | null;
  text: string;
  created_at: number;
  metadata: JSONObject;
  expires_at?: number | null;
  /** When it holds (absent: from `created_at`, and still) and its links (`supersedes`). */
  valid_from?: number;
  valid_to?: number;
  supersedes?: string;
  superseded_by?: string;
  /** Where it came from: turn ids or other references, in order. */
  sources?: string[];
  helped?: number;
  not_helped?: number;
  vector?: number[] | string;
}

/** A memory to add: `text` at least; `user` is required in `addBatch`'s items. */
export interface NewMemory {
  id?: string;
  user?: string;
  session?: string;
  role?: Role;
  speaker?: string;
  text: string;
  created_at?: Time;
  metadata?: JSONObject;
  vector?: Vector;
  ttl?: number;
  /** When it expires, instead of `ttl` (a restore of an export). */
  expires_at?: Time;
  valid_from?: Time;
  /** The id of the user's memory this one replaces: it stops holding when this one begins. */
  supersedes?: string;
  /** Where it came from: ids of the user's turns it was derived from, or other references. */
  sources?: string[];
  /** Store nothing when the user has it: the same normalized text, or a vector this similar. */
  dedupe?: "exact" | { near: number };
  /** How often users said it helped, and did not (a restore of an export); 0 when absent. */
  helped?: number;
  not_helped?: number;
}

export interface Explain {
  vector: { score: number; rank: number } | null;
  keyword: { score: number; rank: number } | null;
  neighbours: number | null;
  recency: number | null;
  /** What the best fused scores of the hit's session added (hybrid). */
  session: number | null;
  /** The factor the hit weighs because the query names its speaker (hybrid). */
  speaker: number | null;
  /** The span of time the query names, when the hit was said within it. */
  time?: { from: number; to: number; phrase: string };
}

export interface Hit extends Memory {
  score: number;
  explain?: Explain;
  context?: Memory[];
}

/** The filters `search`, `list`, `forget` and `prompt` share. */
export interface Filters {
  session?: string;
  role?: Role;
  speaker?: string;
  since?: Time;
  until?: Time;
  where?: JSONObject;
}

export interface SearchOptions extends Filters {
  vector?: Vector;
  k?: number;
  mode?: Mode;
  explain?: boolean;
  half_life?: number;
  context?: number;
  ef?: number;
  exact?: boolean;
  feedback_boost?: number;
  /** What held at a time (and had been stored by then); what holds now when absent. */
  as_of?: Time;
  /** Every memory, superseded or not (not with `as_of`). */
  include_superseded?: boolean;
  /** The time the server reads at (expiry, recency, which facts hold); its clock when absent. */
  now?: Time;
}

export interface PromptOptions extends Omit<SearchOptions, "k" | "explain" | "include_superseded"> {
  budget?: number;
  limit?: number;
  recent?: number;
  template?: string;
  system?: string;
  format?: "text" | "messages";
  caps?: { pinned?: number; memories?: number; summary?: number; recent?: number };
  spans?: boolean;
}

export interface PromptAnswer {
  prompt: string;
  messages?: { role: string; content: string }[];
  tokens: number;
  counter: string;
  sections: { name: string; tokens: number; ids: string[] }[];
  used: string[];
  dropped: { id: string; reason: string }[];
  spans?: { section: string; start: number; end: number }[];
  /** The time the prompt was read at (unix milliseconds). */
  now: number;
}

export interface Added {
  id: string;
  truncated?: JSONValue[];
  /** The user had the memory (`dedupe`): nothing was stored; `id` is the one it had. */
  duplicate?: boolean;
}

export interface BatchAdded {
  count: number;
  skipped: number;
  ids: string[];
  conflicts: number[];
  truncated?: JSONValue[];
  /** Items `dedupe` left out: each item's index and the id of the memory the user had. */
  duplicates?: { item: number; id: string }[];
}

export interface ForgetOptions extends Filters {
  /** Also the user's memories whose `sources` name one of those forgotten. */
  with_derived?: boolean;
}

export interface ListOptions extends Filters {
  order?: "asc" | "desc";
  limit?: number;
  cursor?: string;
  with_vector?: boolean;
  as_of?: Time;
  include_superseded?: boolean;
  now?: Time;
}

/** The answers of reads that depend on time carry the time they were read at (unix milliseconds). */
export interface Page {
  memories: Memory[];
  next_cursor: string | null;
  now: number;
}

/** A page of `export`: each memory with every field (`helped`/`not_helped` when it has feedback,
 * `vector` as base64 float32 when asked), and the `after` of the next page (null: the last). */
export interface ExportPage {
  memories: (Memory & { helped?: number; not_helped?: number; vector?: string })[];
  next: number | null;
}

export interface Sessions {
  sessions: { session: string | null; turns: number; first_at: number; last_at: number }[];
  more: boolean;
  now: number;
}

export interface Users {
  users: { user: string; memories: number }[];
  next: string | null;
  now: number;
}

export interface Changes {
  session?: string | null;
  role?: Role | null;
  speaker?: string | null;
  metadata?: JSONObject;
  created_at?: Time;
}

/** A chat message as chat APIs write them; `name` is stored as the turn's speaker. */
export interface ChatMessage {
  role: Role;
  content: string;
  name?: string;
  created_at?: Time;
  metadata?: JSONObject;
}

export interface Hello {
  server: string;
  version: string;
  protocol: number;
  dimension: number | null;
  metric: string;
  index: string;
  blas: string;
  /** The instruction set of the server's distance kernels ("avx2+fma+f16c" or "baseline"). */
  kernels: string;
  /** The server's processor, as its system names it. */
  cpu: string;
  memories?: number;
  embedder?: string | null;
}

/** Any answer's fields, for the ops whose answers are shown as the wire has them. */
export type Fields = JSONObject;
