// The few Node.js APIs this client uses, declared here because no npm registry (and so no
// @types/node) is needed to build it.
declare module "node:net" {
  export interface Socket {
    write(data: Uint8Array): boolean;
    end(): void;
    destroy(error?: Error): void;
    setNoDelay(noDelay?: boolean): this;
    on(event: "data", listener: (chunk: Uint8Array) => void): this;
    on(event: "close", listener: (hadError: boolean) => void): this;
    on(event: "error", listener: (error: Error) => void): this;
    once(event: "connect" | "secureConnect", listener: () => void): this;
    once(event: "error", listener: (error: Error) => void): this;
    removeListener(event: string, listener: (...args: never[]) => void): this;
  }
  export function connect(options: { host: string; port: number }): Socket;
}

declare module "node:tls" {
  import type { Socket } from "node:net";
  export function connect(options: { host: string; port: number; servername?: string; ca?: string | Uint8Array; rejectUnauthorized?: boolean }): Socket;
}

interface Buffer extends Uint8Array {
  toString(encoding?: string, start?: number, end?: number): string;
}
declare var Buffer: {
  from(data: ArrayBuffer | Uint8Array | string, encoding?: string): Buffer;
  concat(chunks: Uint8Array[]): Buffer;
};
