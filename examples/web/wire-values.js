// Decoding pgsift's wire form into exact JavaScript values (docs/wire-values.md).
//
// The wire form of a value depends on its column's type, which a client learns from
// the bootstrap header (`columns`, `types`) or the first `sync` message (`types`).
// Decoded values are exact: int8 becomes a BigInt, json / jsonb their parsed value
// (the JSON value `null` as JSON_NULL, SQL NULL as null), floats a Number (NaN and
// the infinities included), bytea a Uint8Array. JavaScript has no exact type for
// numeric, times or intervals: those stay the strings they arrive as (ISO 8601 with
// microseconds; numeric in Postgres's notation), which lose nothing.

/** A json / jsonb value that is the JSON `null` (SQL NULL decodes to `null`). */
export const JSON_NULL = Object.freeze({ toJSON: () => null, toString: () => "null" });

const FLOATS = new Set(["float4", "float8", "real", "double precision"]);
const INT8 = new Set(["int8", "bigint"]);
const JSON_TYPES = new Set(["json", "jsonb"]);

function element(type) {
  return type.endsWith("[]") ? type.slice(0, -2) : null;
}

function scalar(type, value) {
  if (INT8.has(type)) return BigInt(value);
  if (FLOATS.has(type)) return typeof value === "string" ? Number(value) : value;
  if (JSON_TYPES.has(type)) return value === "null" ? JSON_NULL : JSON.parse(value);
  if (type === "bytea") {
    const hex = value.slice(2);
    return Uint8Array.from({ length: hex.length / 2 }, (_, i) => parseInt(hex.substr(2 * i, 2), 16));
  }
  return value;
}

/** One value of a column of `type` (a Postgres type name such as "int8" or "jsonb[]"). */
export function decodeValue(type, value) {
  if (value === null || value === undefined) return null;
  const inner = element(type);
  if (inner === null) return scalar(type, value);
  if (JSON_TYPES.has(inner)) return value.map((item) => decodeValue(inner, item));
  return value.map((item) => (Array.isArray(item) ? decodeValue(type, item) : decodeValue(inner, item)));
}

/** A wire row (or key) -> exact values; `types` maps column -> type name. */
export function decodeRow(row, types) {
  return Object.fromEntries(
    Object.entries(row).map(([column, value]) => [column, decodeValue(types[column] ?? "text", value)]),
  );
}
