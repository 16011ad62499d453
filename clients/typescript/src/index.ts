// ContextStore's client: `new Client({ port })` for the line protocol over TCP, or
// `new Client({ url })` for the HTTP API; one method per op (docs/PROTOCOL.md).

export { Client } from "./client.js";
export type { ClientSettings } from "./client.js";
export * from "./errors.js";
export { parse as parseJSON, stringify as stringifyJSON } from "./json.js";
export type { JSONObject, JSONValue } from "./json.js";
export type { CallOptions } from "./ops.js";
export type {
  Added, BatchAdded, Changes, ChatMessage, Explain, Fields, Filters, ForgetOptions, Hello, Hit, ListOptions, Memory, Mode, NewMemory, Page,
  PromptAnswer, PromptOptions, Role, SearchOptions, Sessions, Time, Users, Vector,
} from "./types.js";
