// JSON that keeps integers exact: an integer beyond Number.MAX_SAFE_INTEGER is read as a
// bigint and a bigint is written as an integer, so metadata holding 2^63 - 1 round-trips (the
// built-in JSON rounds it). Objects are made without a prototype of their own keys' say: a key
// "__proto__" is a key like any other.

/** A JSON value as this client reads and writes it. */
export type JSONValue = null | boolean | number | bigint | string | JSONValue[] | JSONObject;
export type JSONObject = { [key: string]: JSONValue };

const numberPattern = /-?(?:0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/y;
const whitespace = /[ \t\n\r]*/y;

/** Parses one JSON text. Throws `SyntaxError` for what is not JSON. */
export function parse(text: string): JSONValue {
  // No run of 16 digits: no integer the built-in parser would round (it keeps "__proto__" a key too).
  if (!/\d{16}/.test(text)) return JSON.parse(text) as JSONValue;
  let at = 0;
  function skip(): void {
    whitespace.lastIndex = at;
    whitespace.test(text);
    at = whitespace.lastIndex;
  }
  function fail(what: string): never {
    throw new SyntaxError(`${what} at offset ${at} of the JSON text`);
  }
  function value(): JSONValue {
    skip();
    const c = text[at];
    if (c === "{") {
      at++;
      const object: JSONObject = {};
      skip();
      if (text[at] === "}") {
        at++;
        return object;
      }
      for (;;) {
        skip();
        if (text[at] !== '"') fail("expected a key");
        const key = string();
        skip();
        if (text[at++] !== ":") fail("expected ':'");
        Object.defineProperty(object, key, { value: value(), enumerable: true, writable: true, configurable: true });
        skip();
        const next = text[at++];
        if (next === "}") return object;
        if (next !== ",") fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      at++;
      const array: JSONValue[] = [];
      skip();
      if (text[at] === "]") {
        at++;
        return array;
      }
      for (;;) {
        array.push(value());
        skip();
        const next = text[at++];
        if (next === "]") return array;
        if (next !== ",") fail("expected ',' or ']'");
      }
    }
    if (c === '"') return string();
    for (const [word, result] of [["true", true], ["false", false], ["null", null]] as const) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return result;
      }
    }
    numberPattern.lastIndex = at;
    const match = numberPattern.exec(text);
    if (!match) fail("expected a value");
    at = numberPattern.lastIndex;
    const number = Number(match[0]);
    if (match[1] === undefined && match[2] === undefined && !Number.isSafeInteger(number)) return BigInt(match[0]);
    return number;
  }
  function string(): string {
    const start = at;
    at++;
    for (;;) {
      const c = text.charCodeAt(at);
      if (Number.isNaN(c)) fail("unterminated string");
      if (c === 0x5c) at += 2;
      else if (c === 0x22) break;
      else at++;
    }
    at++;
    return JSON.parse(text.slice(start, at)) as string;
  }
  const result = value();
  skip();
  if (at !== text.length) fail("unexpected text after the value");
  return result;
}

/** Writes `value` as compact JSON: bigints as integers, `undefined` fields left out. */
export function stringify(value: unknown): string {
  switch (typeof value) {
    case "bigint":
      return value.toString();
    case "number":
      if (!Number.isFinite(value)) throw new TypeError(`${value} cannot be written as JSON`);
      return JSON.stringify(value);
    case "string":
    case "boolean":
      return JSON.stringify(value);
    case "object": {
      if (value === null) return "null";
      if (Array.isArray(value)) return "[" + value.map((item) => stringify(item ?? null)).join(",") + "]";
      const fields: string[] = [];
      for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
        if (field !== undefined) fields.push(JSON.stringify(key) + ":" + stringify(field));
      }
      return "{" + fields.join(",") + "}";
    }
    default:
      throw new TypeError(`a ${typeof value} cannot be written as JSON`);
  }
}
