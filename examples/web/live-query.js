// A live copy of one SQL query's rows in the browser, kept by pgsift.
//
// First load: the streaming bootstrap (GET /v1/bootstrap, NDJSON: header, rows,
// end with a cursor), then the `sync` subscription from that cursor. Without the
// bootstrap endpoint the subscription's own snapshot is used. `mustRefetch`
// drops the copy and loads it again.
//
// Rows are kept in their wire form, which is exact (int8 and numeric as strings, json
// as its text: docs/wire-values.md); `values(row)` decodes one into exact JavaScript
// values (BigInt, parsed JSON with JSON_NULL, ...) by the column types that the
// bootstrap header or the first `sync` message gave (`this.types`).
//
// On a socket whose connection_init named a `clientId`, a message of a transaction
// that ran one of that client's mutations carries `confirmed` (docs/writes.md):
// `this.confirmedId` is the highest id this query's own stream confirmed, so the
// page knows its rows now hold that mutation's effects (`writes.js`).

import { decodeRow } from "./wire-values.js";

export const SYNC = `subscription Sync($query: String!, $params: JSON, $cursor: String) {
  sync(query: $query, params: $params, cursor: $cursor) {
    changes { op key row }
    cursor
    upToDate
    mustRefetch
    types
    confirmed { lastMutationId status message failed { id status message } }
  }
}`;

export class LiveQuery {
  /**
   * @param {object} options
   * @param {() => import("./graphql-ws.js").GraphQLSocket} options.socket the current socket
   * @param {string} options.token the caller's JWT
   * @param {string} options.query SQL with $1, $2... parameters
   * @param {Array} options.params
   * @param {string[]} [options.primaryKey] the table's primary key columns (default ["id"])
   * @param {boolean} [options.bootstrap] first load through GET /v1/bootstrap (default true)
   * @param {(changes: Array, query: LiveQuery) => void} options.onChange after each applied message
   * @param {(error: Error) => void} [options.onError]
   * @param {(confirmed: object) => void} [options.onConfirmed] a message's `confirmed`
   */
  constructor({
    socket, token, query, params, primaryKey = ["id"], bootstrap = true, onChange, onError,
    onConfirmed = () => {},
  }) {
    Object.assign(this, { socket, token, query, params, primaryKey, onChange, onConfirmed });
    this.confirmedId = 0; // the client's mutations this query's stream has confirmed
    this.useBootstrap = bootstrap;
    this.onError = onError || ((error) => console.error(error));
    this.rows = new Map(); // JSON text of the key (wire form) -> row (wire form)
    this.types = {}; // column -> Postgres type name
    this.cursor = null;
    this.upToDate = false;
    this.bootstrapped = false;
    this.stopSubscription = null;
    this.closed = false;
  }

  /** Load (bootstrap or snapshot) and follow; resolves once subscribed. */
  async start({ bootstrap = this.useBootstrap } = {}) {
    this.rows.clear();
    this.cursor = null;
    this.upToDate = false;
    this.bootstrapped = false;
    let cursor = null;
    if (bootstrap) {
      try {
        cursor = await this.bootstrap();
        this.bootstrapped = cursor !== null;
      } catch (error) {
        console.warn("bootstrap failed; using the subscription's snapshot", error);
        this.rows.clear();
      }
    }
    // How this copy was first loaded, for the curious (and the browser test).
    this.loadedBy = cursor === null ? "snapshot" : "bootstrap";
    if (!this.closed) this.follow(cursor);
  }

  /** Stream the rows through GET /v1/bootstrap; returns the cursor to follow from, or null. */
  async bootstrap() {
    const url = `/v1/bootstrap?query=${encodeURIComponent(this.query)}` +
      `&params=${encodeURIComponent(JSON.stringify(this.params))}`;
    const response = await fetch(url, { headers: { authorization: `Bearer ${this.token}` } });
    if (response.status === 404) return null; // no bootstrap endpoint on this gateway
    if (!response.ok) throw new Error(`bootstrap: ${response.status} ${await response.text()}`);
    let end = null;
    let pending = [];
    const flush = () => {
      if (pending.length) this.onChange(pending, this);
      pending = [];
    };
    for await (const line of ndjsonLines(response.body)) {
      if (line.type === "row") {
        const key = keyOf(line.row, this.primaryKey);
        this.rows.set(key, line.row);
        pending.push({ op: "INSERT", key: JSON.parse(key), row: line.row });
        if (pending.length >= 500) flush();
      } else if (line.type === "header") {
        this.types = Object.fromEntries(line.columns.map((column, i) => [column, line.types[i]]));
      } else if (line.type === "end") end = line;
    }
    flush();
    if (!end || end.count !== this.rows.size) throw new Error("bootstrap ended early");
    return end.cursor;
  }

  /** Subscribe from `cursor` (null: with the server's snapshot). */
  follow(cursor) {
    this.stopSubscription = this.socket().subscribe(
      SYNC,
      { query: this.query, params: this.params, cursor },
      {
        next: (data) => this.apply(data.sync),
        error: (error) => {
          this.upToDate = false;
          if (cursor && cursor.includes("@")) {
            // A bootstrap cursor carries its snapshot ("<feed id>@xmin:xmax:xip") so the
            // gateway can skip transactions the rows already hold; a gateway that does
            // not take it gets the plain feed position: replaying those is harmless.
            this.follow(cursor.split("@")[0]);
            return;
          }
          this.onError(error);
        },
      },
    );
  }

  /** After a reconnect: continue from the last cursor, or start over without one. */
  resume() {
    if (this.closed) return;
    if (this.cursor && this.upToDate) this.follow(this.cursor);
    else this.start();
  }

  apply(message) {
    if (message.mustRefetch) {
      this.stopSubscription();
      this.rows.clear();
      this.upToDate = false; // nothing held until the copy is loaded again
      this.onChange([], this);
      // Refused the very cursor a bootstrap just gave (its feed position is not
      // retained, e.g. an empty feed): load through the subscription's own snapshot.
      this.start({ bootstrap: this.useBootstrap && !(this.bootstrapped && !this.upToDate) });
      return;
    }
    if (message.types) this.types = message.types;
    for (const change of message.changes) {
      const key = JSON.stringify(change.key);
      if (change.op === "DELETE") this.rows.delete(key);
      else this.rows.set(key, change.row);
    }
    if (message.cursor) this.cursor = message.cursor;
    if (message.upToDate) this.upToDate = true;
    if (message.confirmed) {
      this.confirmedId = Math.max(this.confirmedId, message.confirmed.lastMutationId);
      this.onConfirmed(message.confirmed);
    }
    this.onChange(message.changes, this);
  }

  /** A row (or key) of this query as exact JavaScript values. */
  values(row) {
    return decodeRow(row, this.types);
  }

  close() {
    this.closed = true;
    if (this.stopSubscription) this.stopSubscription();
  }
}

function keyOf(row, primaryKey) {
  return JSON.stringify(Object.fromEntries(primaryKey.map((column) => [column, row[column]])));
}

async function* ndjsonLines(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line) yield JSON.parse(line);
    }
  }
  if (buffer.trim()) yield JSON.parse(buffer);
}
