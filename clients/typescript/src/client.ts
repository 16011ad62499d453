// The client: one class, two transports. Given `host`/`port` it speaks the line protocol over
// TCP (node:net, or node:tls), every call written at once and its answer matched by `rid`, so
// calls made together are pipelined on one connection. Given `url` it speaks the HTTP API with
// `fetch`, for runtimes without raw sockets (serverless functions, edge workers).

import * as net from "node:net";
import * as tls from "node:tls";
import {
  Busy, CertificateRejected, ConnectionLost, ContextStoreError, Overloaded, ProtocolMismatch, RateLimited, ShuttingDown,
  Timeout,
  serverError,
} from "./errors.js";
import { JSONObject, parse, stringify } from "./json.js";
import { CallOptions, Operations, Request } from "./ops.js";

export interface ClientSettings {
  /** TCP: the server's address (default 127.0.0.1) and port (default 7420). */
  host?: string;
  port?: number;
  /** HTTP instead of TCP: the HTTP port's base URL, e.g. `http://127.0.0.1:7421`. */
  url?: string;
  /** A key's secret, for a server run with `--keys` (sent on every new connection, or as a Bearer header). */
  secret?: string;
  /** Milliseconds a call may wait for its answer (default 30,000); a call's own `timeout` or `signal` overrides it. */
  timeout?: number;
  /** How many times a request safe to repeat is sent again (default 8), waiting `backoff` ms
   * (default 50) doubling up to `maxBackoff` (default 2,000), and never less than a
   * `rate_limited` answer's `retry_after_ms`. */
  retries?: number;
  backoff?: number;
  maxBackoff?: number;
  /** TCP: speak TLS to a server started with `--tls-cert` (`ca`: a self-signed server's certificate, PEM). */
  tls?: boolean | { ca?: string | Uint8Array; servername?: string };
}

/** The most users whose last write sequence is kept (the least recently written go first). */
const maximumSequences = 65_536;

export class Client extends Operations {
  readonly settings: Required<Pick<ClientSettings, "host" | "port" | "timeout" | "retries" | "backoff" | "maxBackoff">> & ClientSettings;
  /** The key the connection authenticated as (null without a secret). */
  key: string | null = null;
  /**
   * From a cluster: the last sequence a write of each user was answered with. A later request
   * about that user carries it as `min_seq`, so it sees the write whichever node answers it.
   */
  readonly sequences = new Map<string, number>();
  private rid = 0;
  private connection: Promise<Connection> | null = null;

  constructor(settings: ClientSettings = {}) {
    super();
    this.settings = {
      host: "127.0.0.1", port: 7420, timeout: 30_000, retries: 8, backoff: 50, maxBackoff: 2_000, ...settings,
    };
  }

  /** Opens the connection now (else the first call does) and authenticates. */
  async connect(): Promise<void> {
    if (this.settings.url === undefined) await this.open();
  }

  /** Closes the connection; calls waiting on it fail with `ConnectionLost`. */
  close(): void {
    const connection = this.connection;
    this.connection = null;
    connection?.then((open) => open.close(), () => undefined);
  }

  protected async call<T>(request: Request<T>, options: CallOptions = {}): Promise<T> {
    const settings = this.settings;
    let delay = settings.backoff;
    for (let left = settings.retries; ; left--) {
      let sent = false;
      try {
        const timeout = options.timeout ?? settings.timeout;
        let answer: JSONObject;
        if (settings.url !== undefined) {
          sent = true;
          answer = await this.overHTTP(request.fields, timeout, options.signal);
        } else {
          const connection = await this.open();
          const rid = ++this.rid;
          const line = this.line(request.fields, rid);
          sent = true;
          answer = await connection.send(line, rid, timeout, options.signal);
        }
        this.noted(answer);
        if (answer.ok === true) return request.parse(answer);
        throw serverError((answer.error ?? {}) as JSONObject);
      } catch (error) {
        if (error instanceof ConnectionLost || error instanceof ProtocolMismatch || error instanceof Overloaded || error instanceof ShuttingDown) {
          this.close();
        }
        const retry = mayRetry(error, request.safe, sent) && left > 0;
        if (!retry) throw error;
        let wait = delay;
        delay = Math.min(delay * 2, settings.maxBackoff);
        const after = error instanceof RateLimited ? error.details.retry_after_ms : undefined;
        if (typeof after === "number") wait = Math.max(wait, after);
        await sleep(wait);
      }
    }
  }

  /** The connection, made and authenticated when there is none open. */
  private open(): Promise<Connection> {
    if (this.connection === null) {
      const made = Connection.open(this.settings).then(async (connection) => {
        if (this.settings.secret !== undefined) {
          const line = stringify({ op: "auth", secret: this.settings.secret, rid: 0 }) + "\n";
          const answer = await connection.send(line, 0, this.settings.timeout);
          if (answer.ok !== true) {
            connection.close();
            throw serverError((answer.error ?? {}) as JSONObject);
          }
          this.key = answer.key as string;
        }
        connection.onClose = () => {
          if (this.connection === made) this.connection = null;
        };
        return connection;
      });
      this.connection = made;
      made.catch(() => {
        if (this.connection === made) this.connection = null;
      });
    }
    return this.connection;
  }

  /** One request over HTTP: `POST /v1/ops/{op}` with the fields as the body. */
  private async overHTTP(fields: { [key: string]: unknown }, timeout: number, given?: AbortSignal): Promise<JSONObject> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new Timeout(`no answer within ${timeout} ms`)), timeout);
    const forward = () => controller.abort(new Timeout("the call was aborted"));
    if (given?.aborted) forward();
    given?.addEventListener("abort", forward, { once: true });
    try {
      return await this.fetched(fields, controller.signal);
    } finally {
      clearTimeout(timer);
      given?.removeEventListener("abort", forward);
    }
  }

  private async fetched(fields: { [key: string]: unknown }, signal: AbortSignal): Promise<JSONObject> {
    const { op, ...body } = this.withSequence(fields);
    const headers: Record<string, string> = { "Content-Type": "application/json" };
    if (this.settings.secret !== undefined) headers.Authorization = `Bearer ${this.settings.secret}`;
    let text: string;
    try {
      const response = await fetch(`${this.settings.url}/v1/ops/${encodeURIComponent(String(op))}`, {
        method: "POST", headers, body: stringify(body), signal,
      });
      text = await response.text();
    } catch (error) {
      if (signal.aborted) throw signal.reason;
      throw new ConnectionLost(`the HTTP request failed: ${error}`);
    }
    return answerObject(text);
  }

  /** The fields with `min_seq` when a write of their user was answered with a sequence. */
  private withSequence(fields: { [key: string]: unknown }): { [key: string]: unknown } {
    const user = fields.user;
    if (typeof user !== "string" || !this.sequences.has(user) || "min_seq" in fields) return fields;
    return { ...fields, min_seq: this.sequences.get(user) };
  }

  private line(fields: { [key: string]: unknown }, rid: number): string {
    return stringify({ ...this.withSequence(fields), rid }) + "\n";
  }

  /** Keeps the sequences a write's answer carries (`seqs`, from a cluster). */
  private noted(answer: JSONObject): void {
    const seqs = answer.seqs;
    if (typeof seqs !== "object" || seqs === null || Array.isArray(seqs)) return;
    for (const [user, seq] of Object.entries(seqs)) {
      if (typeof seq !== "number" || seq <= (this.sequences.get(user) ?? -1)) continue;
      this.sequences.delete(user);
      this.sequences.set(user, seq);
    }
    while (this.sequences.size > maximumSequences) this.sequences.delete(this.sequences.keys().next().value as string);
  }
}

/** Whether a request may be sent again after `error`: when it never left, or when it is safe to
 * repeat and the server did nothing (`busy`, `rate_limited`, `shutting_down`) or the answer was
 * lost with the connection. */
function mayRetry(error: unknown, safe: boolean, sent: boolean): boolean {
  if (!(error instanceof Busy || error instanceof RateLimited || error instanceof ShuttingDown || error instanceof ConnectionLost)) {
    return false;
  }
  return safe || !sent;
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

function answerObject(text: string): JSONObject {
  let answer;
  try {
    answer = parse(text);
  } catch {
    throw new ProtocolMismatch(`the server's answer is not JSON: ${text.slice(0, 200)}`);
  }
  if (typeof answer !== "object" || answer === null || Array.isArray(answer) || !("ok" in answer)) {
    throw new ProtocolMismatch(`the server's answer is not a response object: ${text.slice(0, 200)}`);
  }
  return answer as JSONObject;
}

/** One TCP connection: lines out, lines in, each answer handed to the call with its `rid`. */
class Connection {
  private readonly waiting = new Map<number, { resolve: (answer: JSONObject) => void; reject: (error: Error) => void }>();
  private chunks: Uint8Array[] = [];
  private closed: Error | null = null;
  onClose: () => void = () => undefined;

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true);
    socket.on("data", (chunk) => this.received(chunk));
    socket.on("error", (error) => this.fail(new ConnectionLost(`the connection failed: ${error.message}`)));
    socket.on("close", () => this.fail(new ConnectionLost("the server closed the connection")));
  }

  static open(settings: ClientSettings & { host: string; port: number; timeout: number }): Promise<Connection> {
    return new Promise((resolve, reject) => {
      const options = { host: settings.host, port: settings.port };
      const secure = settings.tls;
      const socket = secure
        ? tls.connect({ ...options, servername: settings.host, ...(typeof secure === "object" ? secure : {}) })
        : net.connect(options);
      const failed = (error: Error & { code?: string }) => {
        clearTimeout(timer);
        const what = `cannot connect to ${settings.host}:${settings.port}: ${error.message}`;
        const untrusted = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY/.test(error.code ?? "");
        reject(untrusted ? new CertificateRejected(what) : new ConnectionLost(what));
      };
      const timer = setTimeout(() => socket.destroy(new Error(`no connection within ${settings.timeout} ms`)), settings.timeout);
      socket.once("error", failed);
      socket.once(secure ? "secureConnect" : "connect", () => {
        clearTimeout(timer);
        socket.removeListener("error", failed);
        resolve(new Connection(socket));
      });
    });
  }

  /** Sends `line` and answers the answer with `rid`; rejects with `Timeout` after `timeout` ms or when `signal` fires. */
  send(line: string, rid: number, timeout: number, signal?: AbortSignal): Promise<JSONObject> {
    if (this.closed) return Promise.reject(this.closed);
    if (signal?.aborted) return Promise.reject(new Timeout("the call was aborted"));
    return new Promise((resolve, reject) => {
      // A late answer to an abandoned call finds no one waiting and is dropped.
      const abandon = (error: Error) => {
        this.waiting.delete(rid);
        finish();
        reject(error);
      };
      const timer = setTimeout(() => abandon(new Timeout(`no answer within ${timeout} ms`)), timeout);
      const aborted = signal && (() => abandon(new Timeout("the call was aborted")));
      if (aborted) signal.addEventListener("abort", aborted, { once: true });
      const finish = () => {
        clearTimeout(timer);
        if (aborted) signal.removeEventListener("abort", aborted);
      };
      this.waiting.set(rid, {
        resolve: (answer) => {
          finish();
          resolve(answer);
        },
        reject: (error) => {
          finish();
          reject(error);
        },
      });
      this.socket.write(Buffer.from(line, "utf8"));
    });
  }

  close(): void {
    this.fail(new ConnectionLost("the client closed the connection"));
  }

  private received(chunk: Uint8Array): void {
    let newline = chunk.indexOf(0x0a);
    if (newline < 0) {
      this.chunks.push(chunk);
      return;
    }
    let start = 0;
    while (newline >= 0) {
      this.chunks.push(chunk.subarray(start, newline));
      const line = Buffer.concat(this.chunks).toString("utf8");
      this.chunks = [];
      this.answered(line);
      start = newline + 1;
      newline = chunk.indexOf(0x0a, start);
    }
    if (start < chunk.length) this.chunks.push(chunk.subarray(start));
  }

  private answered(line: string): void {
    let answer: JSONObject;
    try {
      answer = answerObject(line);
    } catch (error) {
      return this.fail(error as Error);
    }
    const rid = answer.rid;
    if (typeof rid !== "number") {
      // An error about the connection itself (overloaded, shutting down): every call on it fails.
      if (answer.ok === false) return this.fail(serverError((answer.error ?? {}) as JSONObject));
      return this.fail(new ProtocolMismatch("an answer without a rid"));
    }
    const waiting = this.waiting.get(rid);
    this.waiting.delete(rid);
    waiting?.resolve(answer);
  }

  private fail(error: Error): void {
    if (this.closed) return;
    this.closed = error instanceof ContextStoreError ? error : new ConnectionLost(error.message);
    for (const waiting of this.waiting.values()) waiting.reject(this.closed);
    this.waiting.clear();
    this.socket.destroy();
    this.onClose();
  }
}
