// A typed live query of issues with urql and the official graphql-ws client: the
// selection under `row` is what pgsift syncs, `where` is a typed filter.
import { Client, subscriptionExchange } from "@urql/core";
import { createClient } from "graphql-ws";

import type {
  IssuesLiveSubscription,
  IssuesLiveSubscriptionVariables,
  IssueStatus,
} from "./generated.js";

export const ISSUES_LIVE = /* GraphQL */ `
  subscription IssuesLive($where: IssuesBoolExp, $cursor: String) {
    issues(where: $where, cursor: $cursor) {
      changes {
        op
        key { id }
        row { id teamId title status priority estimate createdAt }
      }
      cursor
      upToDate
      mustRefetch
    }
  }
`;

const open: IssueStatus[] = ["todo", "in_progress"];

export const variables: IssuesLiveSubscriptionVariables = {
  where: {
    teamId: { _eq: "1" },
    _or: [{ status: { _in: open } }, { priority: { _gt: 2 } }],
    _not: { title: { _ilike: "%wontfix%" } },
  },
};

export interface IssueRow {
  id: string;
  title: string;
  status: IssueStatus;
  estimate: string | null;
}

// The client's copy, by primary key: int8 keys arrive as strings, exact.
export function apply(copy: Map<string, IssueRow>, message: IssuesLiveSubscription): void {
  for (const change of message.issues.changes) {
    const id: string = change.key.id;
    if (change.row === null || change.row === undefined) {
      copy.delete(id);
    } else {
      const row = change.row;
      copy.set(id, { id: row.id, title: row.title, status: row.status, estimate: row.estimate ?? null });
    }
  }
}

// `authorization` goes in connection_init; `webSocketImpl` where there is no global
// WebSocket (node before 22: the `ws` package).
export function follow(
  url: string,
  authorization: string,
  onMessage: (message: IssuesLiveSubscription) => void,
  webSocketImpl?: unknown,
): () => void {
  const ws = createClient({
    url: url.replace(/^http/, "ws"),
    connectionParams: { authorization },
    webSocketImpl,
    retryAttempts: 0,
  });
  const client = new Client({
    url,
    exchanges: [
      subscriptionExchange({
        forwardSubscription(request) {
          const input = { ...request, query: request.query || "" };
          return {
            subscribe(sink) {
              return { unsubscribe: ws.subscribe(input, sink) };
            },
          };
        },
      }),
    ],
  });
  const { unsubscribe } = client
    .subscription<IssuesLiveSubscription, IssuesLiveSubscriptionVariables>(ISSUES_LIVE, variables)
    .subscribe((result) => {
      if (result.data) onMessage(result.data);
    });
  return unsubscribe;
}
