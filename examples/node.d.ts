// The Node.js APIs the TypeScript example uses (no @types/node is needed to build it).
declare module "node:fs" {
  export function readFileSync(path: string | number, encoding: "utf8"): string;
}
declare const process: { argv: string[]; exitCode?: number };
