// A small client of graphql-transport-ws, the protocol of the `graphql-ws` library:
// connection_init -> connection_ack, then subscribe / next / error / complete per
// operation id, ping -> pong. Enough for pgsift's `sync` subscription; for more
// (lazy connections, retries with jitter) use `graphql-ws` itself.

export class GraphQLSocket {
  /**
   * @param {string} url ws:// or wss:// URL of the GraphQL endpoint
   * @param {object} connectionParams the connection_init payload, e.g. {authorization: "Bearer ..."}
   * @param {(event: CloseEvent) => void} [onClose] called when the socket closes
   */
  constructor(url, connectionParams, onClose = () => {}) {
    this.url = url;
    this.connectionParams = connectionParams;
    this.onClose = onClose;
    this.nextId = 1;
    this.sinks = new Map(); // operation id -> {next, error, complete}
    this.socket = null;
    this.ackPayload = {}; // what connection_ack said (pgsift: where a clientId's ledger is)
  }

  /** Open the socket and wait for connection_ack. */
  connect() {
    return new Promise((resolve, reject) => {
      const socket = new WebSocket(this.url, "graphql-transport-ws");
      let acknowledged = false;
      socket.onopen = () => {
        socket.send(JSON.stringify({ type: "connection_init", payload: this.connectionParams }));
      };
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.type === "connection_ack") {
          acknowledged = true;
          this.ackPayload = message.payload || {};
          resolve(this);
        } else if (message.type === "ping") {
          socket.send(JSON.stringify({ type: "pong" }));
        } else {
          this.dispatch(message);
        }
      };
      socket.onclose = (event) => {
        const reason = `connection closed (${event.code}${event.reason ? ": " + event.reason : ""})`;
        if (!acknowledged) reject(new Error(reason));
        for (const sink of this.sinks.values()) sink.error(new Error(reason));
        this.sinks.clear();
        this.onClose(event);
      };
      this.socket = socket;
    });
  }

  dispatch(message) {
    const sink = this.sinks.get(message.id);
    if (!sink) return; // an operation we stopped; its last messages cross ours
    if (message.type === "next") {
      if (message.payload.errors) sink.error(graphqlError(message.payload.errors));
      else sink.next(message.payload.data);
    } else if (message.type === "error") {
      this.sinks.delete(message.id);
      sink.error(graphqlError(message.payload));
    } else if (message.type === "complete") {
      this.sinks.delete(message.id);
      sink.complete();
    }
  }

  /**
   * Start an operation; returns a function that stops it.
   * @param {string} query
   * @param {object} variables
   * @param {{next: (data: object) => void, error?: (e: Error) => void, complete?: () => void}} sink
   */
  subscribe(query, variables, sink) {
    const id = String(this.nextId++);
    this.sinks.set(id, { complete() {}, error(e) { console.error(e); }, ...sink });
    this.socket.send(JSON.stringify({ id, type: "subscribe", payload: { query, variables } }));
    return () => {
      if (this.sinks.delete(id) && this.socket.readyState === WebSocket.OPEN) {
        this.socket.send(JSON.stringify({ id, type: "complete" }));
      }
    };
  }

  /** A single-result operation (a query) as a promise of its data. */
  request(query, variables) {
    return new Promise((resolve, reject) => {
      let result;
      this.subscribe(query, variables, {
        next: (data) => { result = data; },
        error: reject,
        complete: () => resolve(result),
      });
    });
  }

  close() {
    this.onClose = () => {};
    if (this.socket) this.socket.close(1000, "bye");
  }
}

function graphqlError(errors) {
  const error = new Error(errors.map((e) => e.message).join("; "));
  error.graphQLErrors = errors;
  return error;
}
