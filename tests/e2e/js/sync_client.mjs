// One `sync` subscription through the official graphql-ws client, for tests/e2e.
// Usage: node sync_client.mjs '{"url": ..., "authorization": ..., "query": ..., "params": [...],
//                               "cursor": null, "raw": false}'
// or, for any other subscription (a typed one), '{"url": ..., "authorization": ...,
//                               "document": "subscription ...", "variables": {...}}'
// Prints one JSON line per event: {"type": "next", "payload": {...}}, {"type": "error",
// "errors": [...]}, {"type": "complete"}, {"type": "closed", "code": N, "reason": "..."}.
// With "raw": also {"type": "raw", "data": "<frame text as received>"} per websocket frame,
// and {"type": "decoded", "changes": [...]} per `next`: each key and row decoded by the
// web page's wire-values.js, every value as {"js": typeof, "text": String(value)}.
// Exits when the subscription ends or the socket closes.
import { createClient } from "graphql-ws";
import WebSocket from "ws";
import { JSON_NULL, decodeRow } from "../../../examples/web/wire-values.js";

const SYNC = `
subscription Sync($query: String!, $params: JSON, $cursor: String) {
  sync(query: $query, params: $params, cursor: $cursor) {
    changes { op key row }
    cursor
    upToDate
    mustRefetch
    types
  }
}`;

const options = JSON.parse(process.argv[2]);
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");

class RawWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    if (options.raw) this.addEventListener("message", (event) => print({ type: "raw", data: String(event.data) }));
  }
}

let types = {};
const described = (value) =>
  value === JSON_NULL ? { js: "JSON_NULL", text: "null" } : { js: typeof value, text: String(value) };
const describedRow = (row) =>
  row && Object.fromEntries(Object.entries(decodeRow(row, types)).map(([c, v]) => [c, described(v)]));

function decoded(payload) {
  const sync = payload.data && payload.data.sync;
  if (!sync) return;
  if (sync.types) types = sync.types;
  const changes = sync.changes.map((c) => ({ op: c.op, key: describedRow(c.key), row: describedRow(c.row) }));
  print({ type: "decoded", changes });
}

const client = createClient({
  url: options.url,
  webSocketImpl: RawWebSocket,
  connectionParams: options.authorization ? { authorization: options.authorization } : {},
  retryAttempts: 0,
  lazy: true,
  on: {
    closed: (event) => {
      print({ type: "closed", code: event.code, reason: event.reason });
      process.exit(0);
    },
  },
});

const request = options.document
  ? { query: options.document, variables: options.variables ?? {} }
  : {
      query: SYNC,
      variables: { query: options.query, params: options.params ?? null, cursor: options.cursor ?? null },
    };

client.subscribe(
  request,
  {
    next: (payload) => {
      print({ type: "next", payload });
      if (options.raw) decoded(payload);
    },
    error: (error) => {
      if (Array.isArray(error)) print({ type: "error", errors: error });
      else if (error && typeof error.code === "number") print({ type: "closed", code: error.code, reason: error.reason });
      else print({ type: "error", errors: [{ message: String(error && error.message || error) }] });
      client.dispose();
      process.exit(0);
    },
    complete: () => {
      print({ type: "complete" });
      client.dispose();
      process.exit(0);
    },
  },
);
