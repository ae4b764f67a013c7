// Writing through pgsift's mutators from the page, optimistically (docs/writes.md).
//
//   const writes = new PendingWrites({ token, clientId, onUpdate });
//   writes.mutate("set_status", { issue_id: "42", status: "todo" },
//                 [{ op: "patch", key: { id: "42" }, fields: { status: "todo" } }]);
//   writes.overlay(liveQuery)   // the query's rows with the pending writes on top
//
// A mutation gets the next id of this page's client, its predicted writes show at
// once (`overlay`), and it is posted to POST /v1/mutate, in id order. The server's
// answer settles a refusal (its writes go, its message is shown); a success waits
// for its confirmation in the `sync` stream: the message of the transaction that ran
// it carries `confirmed: {lastMutationId}`, in this query's stream, together with
// the real rows (or with none, if the server did something else than predicted).
// From that message on the query's rows hold its effects and its writes leave the
// overlay: the change never blinks out and never shows twice.
//
// The socket's connection_init names `clientId` (that is what makes the gateway
// attach the client's confirmations) and its connection_ack says how far the server
// has run this client's mutations: the next id follows it. Pending mutations live in
// the page only: a reload forgets those not yet sent.

export const STATUS_LABELS = { pending: "saving…", sent: "sent", confirmed: "saved", refused: "refused", error: "failed" };

export class PendingWrites {
  /**
   * @param {object} options
   * @param {string} options.token the caller's JWT
   * @param {string} options.clientId this page's client id (one per user and browser)
   * @param {(mutation: object) => void} options.onUpdate after a mutation changed state
   */
  constructor({ token, clientId, onUpdate }) {
    Object.assign(this, { token, clientId, onUpdate });
    this.nextId = 1;
    this.mutations = []; // {id, name, args, writes, status, message}, in id order
    this.sending = Promise.resolve();
  }

  /** The server has run this client's mutations up to `lastMutationId` (connection_ack). */
  acknowledged(lastMutationId) {
    const waiting = this.mutations.filter((m) => m.status === "pending").length;
    if (waiting === 0) this.nextId = Math.max(this.nextId, lastMutationId + 1);
  }

  /** Queue mutation `name(args)` with its predicted `writes`; returns it. */
  mutate(name, args, writes) {
    const mutation = { id: this.nextId++, name, args, writes, status: "pending", message: null };
    this.mutations.push(mutation);
    this.sending = this.sending.then(() => this.send(mutation));
    this.onUpdate(mutation);
    return mutation;
  }

  async send(mutation) {
    try {
      const response = await fetch("/v1/mutate", {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.token}` },
        body: JSON.stringify({
          clientId: this.clientId,
          mutations: [{ id: mutation.id, name: mutation.name, args: mutation.args }],
        }),
      });
      const body = await response.json();
      if (!response.ok) throw new Error(body.error || `${response.status}`);
      const [result] = body.results;
      if (result.status === "refused" || result.status === "error") {
        this.settle(mutation, result.status, result.message);
      } else if (mutation.status === "pending") {
        mutation.status = "sent";
        this.onUpdate(mutation);
      }
    } catch (error) {
      this.settle(mutation, "error", error.message);
    }
  }

  /**
   * A `sync` message's `confirmed`: every mutation up to its id has run; those that
   * changed nothing are the last one when not OK, and the ones `failed` lists.
   */
  confirmed(confirmed) {
    for (const mutation of this.mutations) {
      if (mutation.id > confirmed.lastMutationId || !["pending", "sent"].includes(mutation.status)) {
        continue;
      }
      const failure = mutation.id === confirmed.lastMutationId && confirmed.status !== "OK"
        ? confirmed : (confirmed.failed ?? []).find((failed) => failed.id === mutation.id);
      if (failure) this.settle(mutation, failure.status.toLowerCase(), failure.message);
      else this.settle(mutation, "confirmed", null);
    }
  }

  settle(mutation, status, message) {
    if (!["pending", "sent"].includes(mutation.status)) return; // the stream said it first
    mutation.status = status;
    mutation.message = message;
    this.onUpdate(mutation);
  }

  /**
   * `query.rows` (key text -> row) with the writes of every mutation its stream has
   * not confirmed yet (`query.confirmedId`), refused ones left out; the keys of the
   * rows those writes touch are in `pendingKeys`.
   */
  overlay(query) {
    const rows = new Map(query.rows);
    const pendingKeys = new Set();
    for (const mutation of this.mutations) {
      if (mutation.id <= query.confirmedId || ["refused", "error"].includes(mutation.status)) {
        continue;
      }
      for (const write of mutation.writes) {
        const key = JSON.stringify(write.key);
        if (write.op === "put") rows.set(key, write.row);
        else if (write.op === "delete") rows.delete(key);
        else if (rows.has(key)) rows.set(key, { ...rows.get(key), ...write.fields });
        pendingKeys.add(key);
      }
    }
    return { rows, pendingKeys };
  }
}

/** This browser's client id for `userId` (kept in localStorage). */
export function clientIdFor(userId) {
  const name = `pgsift-demo-client-${userId}`;
  let id = localStorage.getItem(name);
  if (!id) {
    id = crypto.randomUUID().replaceAll("-", "");
    localStorage.setItem(name, id);
  }
  return id;
}
