// One `sync` subscription through the official graphql-ws client that survives its gateway:
// when the socket closes it connects to the next gateway of "urls" and subscribes again with
// the last cursor it received (from scratch when it has none, or after mustRefetch).
// Usage: node resuming_client.mjs '{"urls": [...], "authorization": ..., "query": ...,
//                                   "params": [...]}'
// Prints one JSON line per event: {"type": "subscribed", "url": ..., "cursor": ...} before each
// subscription ({"cursor": null}: the caller starts its copy again), {"type": "next",
// "payload": {...}}, {"type": "error", "errors": [...]}, {"type": "closed", "code": N}.
// Runs until killed.
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

// Between two attempts to connect, so that a gateway that is down is not hammered.
const RETRY_MS = 100;

const options = JSON.parse(process.argv[2]);
const print = (event) => process.stdout.write(JSON.stringify(event) + "\n");

let cursor = null;
let attempt = 0;
let gateway = 0;

function subscribe() {
  const mine = ++attempt;
  const url = options.urls[gateway % options.urls.length];
  // Once per attempt: the socket's `closed` and the subscription's `error` both report one loss.
  const again = (startOver) => {
    if (mine !== attempt) return;
    attempt++;
    if (startOver) cursor = null;
    client.dispose();
    gateway++;
    setTimeout(subscribe, RETRY_MS);
  };
  const client = createClient({
    url,
    webSocketImpl: WebSocket,
    connectionParams: { authorization: options.authorization },
    retryAttempts: 0,
    lazy: true,
    on: {
      closed: (event) => {
        if (mine !== attempt) return;
        print({ type: "closed", code: event.code });
        again(false);
      },
    },
  });
  print({ type: "subscribed", url, cursor });
  client.subscribe(
    { query: SYNC, variables: { query: options.query, params: options.params ?? null, cursor } },
    {
      next: (payload) => {
        if (mine !== attempt) return;
        print({ type: "next", payload });
        const sync = payload.data && payload.data.sync;
        if (!sync) return;
        if (sync.mustRefetch) again(true);
        else if (sync.cursor !== null) cursor = sync.cursor;
      },
      error: (error) => {
        if (mine !== attempt) return;
        if (Array.isArray(error)) print({ type: "error", errors: error });
        again(false);
      },
      complete: () => again(false),
    },
  );
}

subscribe();
