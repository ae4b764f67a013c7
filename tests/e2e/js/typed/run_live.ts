// Runs live.ts's urql + graphql-ws client against a gateway: node run_live.js URL TOKEN.
// Prints the client's copy as one JSON line after every message.
import WebSocket from "ws";

import { apply, follow, type IssueRow } from "./live.js";

declare const process: { argv: string[]; stdout: { write(text: string): void } };

const [url, authorization] = process.argv.slice(2);
const copy = new Map<string, IssueRow>();
follow(
  url,
  authorization,
  (message) => {
    apply(copy, message);
    const { cursor, upToDate, mustRefetch } = message.issues;
    process.stdout.write(JSON.stringify({ cursor, upToDate, mustRefetch, rows: [...copy.values()] }) + "\n");
  },
  WebSocket,
);
