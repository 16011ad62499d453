// Errors: one class per error code of docs/PROTOCOL.md, and the transport's own.

import type { JSONObject, JSONValue } from "./json.js";

/** The base of every error this client throws. */
export class ContextStoreError extends Error {
  override name = "ContextStoreError";
}

/** The connection closed or failed before the answer came: the request may or may not have run. */
export class ConnectionLost extends ContextStoreError {
  override name = "ConnectionLost";
}

/** TLS: the server's certificate is not trusted (not sent again: trying again will not make it trusted). */
export class CertificateRejected extends ContextStoreError {
  override name = "CertificateRejected";
}

/** The server answered something this client cannot read. */
export class ProtocolMismatch extends ContextStoreError {
  override name = "ProtocolMismatch";
}

/** No answer within the call's timeout, or its `AbortSignal` fired. */
export class Timeout extends ContextStoreError {
  override name = "Timeout";
}

/**
 * The server answered `{"ok":false,"error":{...}}`: `code` and `message` are the error's;
 * `details` holds its further fields (`needed` of `budget_too_small`, `retry_after_ms` of
 * `rate_limited`).
 */
export class ServerError extends ContextStoreError {
  static readonly code: string = "error";
  override name = "ServerError";
  readonly code: string;
  readonly details: { [key: string]: JSONValue };

  constructor(code: string, message: string, details: { [key: string]: JSONValue } = {}) {
    super(`${code}: ${message}`);
    this.code = code;
    this.details = details;
  }
}

function coded(code: string, name: string): typeof ServerError {
  const made = class extends ServerError {
    static override readonly code = code;
    override name = name;
  };
  Object.defineProperty(made, "name", { value: name });
  return made;
}

export const InvalidJSON = coded("invalid_json", "InvalidJSON");
export const NotObject = coded("not_object", "NotObject");
export const UnknownOp = coded("unknown_op", "UnknownOp");
export const UnknownField = coded("unknown_field", "UnknownField");
export const MissingField = coded("missing_field", "MissingField");
export const WrongType = coded("wrong_type", "WrongType");
export const InvalidValue = coded("invalid_value", "InvalidValue");
export const WrongDimension = coded("wrong_dimension", "WrongDimension");
export const NonFinite = coded("non_finite", "NonFinite");
export const KOutOfRange = coded("k_out_of_range", "KOutOfRange");
export const NotFound = coded("not_found", "NotFound");
export const LineTooLong = coded("line_too_long", "LineTooLong");
export const Busy = coded("busy", "Busy");
export const Overloaded = coded("overloaded", "Overloaded");
export const ShuttingDown = coded("shutting_down", "ShuttingDown");
export const StorageError = coded("storage_error", "StorageError");
export const NoEmbedder = coded("no_embedder", "NoEmbedder");
export const ModelMismatch = coded("model_mismatch", "ModelMismatch");
export const BudgetTooSmall = coded("budget_too_small", "BudgetTooSmall");
export const UnknownTemplate = coded("unknown_template", "UnknownTemplate");
export const Unauthorized = coded("unauthorized", "Unauthorized");
export const Forbidden = coded("forbidden", "Forbidden");
export const RateLimited = coded("rate_limited", "RateLimited");
export const TooLarge = coded("too_large", "TooLarge");
export const Unavailable = coded("unavailable", "Unavailable");

const byCode = new Map<string, typeof ServerError>(
  [
    InvalidJSON, NotObject, UnknownOp, UnknownField, MissingField, WrongType, InvalidValue, WrongDimension, NonFinite,
    KOutOfRange, NotFound, LineTooLong, Busy, Overloaded, ShuttingDown, StorageError, NoEmbedder, ModelMismatch,
    BudgetTooSmall, UnknownTemplate, Unauthorized, Forbidden, RateLimited, TooLarge, Unavailable,
  ].map((kind) => [kind.code, kind]),
);

/** The error of an error answer's `error` object: its code's class (`ServerError` for a code this client does not know). */
export function serverError(error: JSONObject): ServerError {
  const code = typeof error.code === "string" ? error.code : "error";
  const message = typeof error.message === "string" ? error.message : "";
  const details: { [key: string]: JSONValue } = {};
  for (const [key, value] of Object.entries(error)) if (key !== "code" && key !== "message") details[key] = value;
  return new (byCode.get(code) ?? ServerError)(code, message, details);
}

/** `addMessages`: some turns' ids hold other turns, which were kept; the rest were stored. */
export class TurnsExist extends ContextStoreError {
  override name = "TurnsExist";
  constructor(readonly ids: string[]) {
    super(`turns ${ids.join(", ")} exist with other content; pass replace: true to overwrite them`);
  }
}
