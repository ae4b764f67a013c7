// One `sync` subscription through the official graphql-ws client, for tests/e2e.
// Usage: node sync_client.mjs '{"url": ..., "authorization": ..., "query": ..., "params": [...],
//                               "cursor": null}'
// Prints one JSON line per event: {"type": "next", "payload": {...}}, {"type": "error",
// "errors": [...]}, {"type": "complete"}, {"type": "closed", "code": N, "reason": "..."}.
// Exits when the subscription ends or the socket closes.
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const SYNC = `
subscription Sync($query: String!, $params: JSON, $cursor: String) {
  sync(query: $query, params: $params, cursor: $cursor) {
    changes { op key row }
    cursor
    upToDate
    mustRefetch
  }
}`;

const options = JSON.parse(process.argv[2]);
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const client = createClient({
  url: options.url,
  webSocketImpl: WebSocket,
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

client.subscribe(
  {
    query: SYNC,
    variables: { query: options.query, params: options.params ?? null, cursor: options.cursor ?? null },
  },
  {
    next: (payload) => print({ type: "next", payload }),
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
