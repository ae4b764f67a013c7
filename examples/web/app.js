// The issue tracker, live through pgsift: sign in as a demo user, pick a team (or all
// of them), watch its open issues change as the writer works; open one to read its
// comments.
//
//   the user's teams      sync of their own rows of team_members: a membership added or
//                         removed in Postgres adds or removes the team here, live
//   list of open issues   sync subscription (first load: GET /v1/bootstrap); which
//                         teams' issues the user may read is the policy's subquery on
//                         team_members, so in "All my teams" a new membership moves
//                         the team's issues in, live, and a removed one moves them out
//   team and user names   POST /v1/rows (the batch loader), cached here
//   an opened issue       POST /v1/rows for its full row (the description is not synced)
//   its comments          sync of `SELECT id FROM comments WHERE issue_id = $1` says which
//                         comments exist, live; their bodies load by key through the
//                         batch loader: lazy hydration, as a big app would do it.
//   a new issue, a status the app's mutators through POST /v1/mutate (writes.js): the
//                         change shows at once, marked "saving…", and gives way to the
//                         real rows at the `sync` message that confirms it ("saved").

import { GraphQLSocket } from "./graphql-ws.js";
import { RecentChanges } from "./highlight.js";
import { LiveQuery } from "./live-query.js";
import { PendingWrites, STATUS_LABELS as WRITE_LABELS, clientIdFor } from "./writes.js";

const OPEN_ISSUES =
  "SELECT id, team_id, number, title, status, priority, assignee_id, updated_at " +
  "FROM issues WHERE team_id = $1 AND status NOT IN ('done', 'canceled')";
// No team filter: the policy (team_id IN (SELECT team_id FROM team_members WHERE
// user_id = auth.user_id)) keeps it to the user's teams, as they are at each commit.
const ALL_OPEN_ISSUES =
  "SELECT id, team_id, number, title, status, priority, assignee_id, updated_at " +
  "FROM issues WHERE status NOT IN ('done', 'canceled')";
const ALL_TEAMS = "all"; // the team picker's value for ALL_OPEN_ISSUES
// The policy lets a user read only their own memberships.
const MY_TEAMS = "SELECT team_id, user_id, role FROM team_members";
const ISSUE_COMMENTS = "SELECT id FROM comments WHERE issue_id = $1";
const PRIORITIES = ["No priority", "Urgent", "High", "Medium", "Low"];
const STATUS_LABELS = {
  backlog: "Backlog", todo: "Todo", in_progress: "In progress", in_review: "In review",
  done: "Done", canceled: "Canceled",
};
const CLOSED = ["done", "canceled"]; // statuses that take an issue out of the open list

const $ = (selector) => document.querySelector(selector);
const state = {
  user: null,        // {id, name, team_ids, token}
  socket: null,
  teams: new Map(),  // id -> {id, key, name}, the user's teams (wire-form ids)
  memberships: null, // LiveQuery of the user's rows of team_members
  teamsUpdate: Promise.resolve(), // team list updates, one after the other
  view: null,        // what the list shows: a team id, or ALL_TEAMS
  teamIds: null,     // the team ids the picker lists, joined (to skip unchanged updates)
  users: new Map(),  // id -> {id, name} | null, loaded on demand
  issues: null,      // LiveQuery of the team's open issues
  openIssueId: null,
  comments: null,    // LiveQuery of the opened issue's comment ids
  commentRows: new Map(), // comment id -> row
  recent: new RecentChanges(), // issues changed live, highlighted for a moment
  writes: null,      // PendingWrites of this user in this browser
};

// ---- talking to pgsift --------------------------------------------------------

async function loadRows(table, keys, columns) {
  if (keys.length === 0) return [];
  const response = await fetch("/v1/rows", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${state.user.token}` },
    body: JSON.stringify({ table, keys, columns }),
  });
  if (!response.ok) throw new Error(`POST /v1/rows: ${response.status} ${await response.text()}`);
  return (await response.json()).rows;
}

async function loadUsers(ids) {
  const missing = [...new Set(ids)].filter((id) => id != null && !state.users.has(id));
  if (missing.length === 0) return;
  missing.forEach((id) => state.users.set(id, null)); // one request per id, ever
  const rows = await loadRows("users", missing, ["id", "name"]);
  rows.forEach((row, index) => state.users.set(missing[index], row));
}

async function connect() {
  const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
  const socket = new GraphQLSocket(
    url, { authorization: `Bearer ${state.user.token}`, clientId: state.writes.clientId },
    () => reconnectSoon(socket),
  );
  await socket.connect();
  state.writes.acknowledged(socket.ackPayload.lastMutationId ?? 0);
  state.socket = socket;
  setStatus("connected");
}

function reconnectSoon(closed) {
  if (state.socket !== closed) return; // signed out or switched user meanwhile
  setStatus("reconnecting…");
  setTimeout(async () => {
    if (state.socket !== closed) return;
    try {
      await connect();
      state.memberships?.resume();
      state.issues?.resume();
      state.comments?.resume();
    } catch (error) {
      reconnectSoon(closed);
    }
  }, 1000);
}

// ---- signing in and picking a team ---------------------------------------------

async function signIn(user) {
  state.issues?.close();
  state.issues = null;
  state.memberships?.close();
  state.view = null;
  state.teamIds = null;
  closeIssue();
  const old = state.socket;
  state.socket = null;
  old?.close();
  state.user = user;
  state.users.clear();
  localStorage.setItem("pgsift-demo-user", String(user.id));
  state.writes = new PendingWrites({
    token: user.token, clientId: clientIdFor(user.id), onUpdate: mutationChanged,
  });
  renderWrites();
  await connect();
  state.teams = new Map();
  state.memberships = new LiveQuery({
    socket: () => state.socket,
    token: user.token,
    query: MY_TEAMS,
    params: [],
    primaryKey: ["team_id", "user_id"],
    onChange: (changes, query) => {
      if (!query.upToDate || state.user !== user) return;
      state.teamsUpdate = state.teamsUpdate.then(() => teamsChanged(user, query));
    },
    onError: (error) => setStatus(`error: ${error.message}`),
  });
  await state.memberships.start();
}

/** The user's memberships changed (or loaded): the team picker follows, and a list of a
 * team the user has left gives way to all of their teams. */
async function teamsChanged(user, memberships) {
  const ids = [...new Set([...memberships.rows.values()].map((row) => row.team_id))]
    .sort((a, b) => Number(a) - Number(b));
  if (ids.join() === state.teamIds) return;
  const missing = ids.filter((id) => !state.teams.has(id));
  const loaded = await loadRows("teams", missing, ["id", "key", "name"]);
  if (state.user !== user) return;
  loaded.filter(Boolean).forEach((team) => state.teams.set(team.id, team));
  state.teamIds = ids.join();
  const teams = ids.map((id) => state.teams.get(id)).filter(Boolean);
  const select = $("#team");
  select.replaceChildren(
    ...teams.map((team) => option(team.id, team.name)), option(ALL_TEAMS, "All my teams"),
  );
  select.disabled = false;
  const view = state.view;
  if (view === null) {
    await showTeam(teams.length ? teams[0].id : ALL_TEAMS);
  } else if (view !== ALL_TEAMS && !ids.includes(view)) {
    await showTeam(ALL_TEAMS); // left that team: its issues are no longer readable
  } else {
    select.value = view;
    scheduleRender(); // identifiers of teams that just arrived
  }
}

function showTeam(view) {
  state.issues?.close();
  closeIssue();
  state.recent.clear();
  setStatus("loading…");
  state.view = String(view);
  $("#team").value = state.view;
  const all = state.view === ALL_TEAMS;
  state.issues = new LiveQuery({
    socket: () => state.socket,
    token: state.user.token,
    query: all ? ALL_OPEN_ISSUES : OPEN_ISSUES,
    params: all ? [] : [Number(state.view)],
    onChange: (changes, query) => {
      // Only what changes once the list is loaded: not the first load's rows.
      if (query.upToDate) state.recent.note(changes);
      loadUsers([...query.rows.values()].map((row) => row.assignee_id)).then(scheduleRender);
      if (query.upToDate) setStatus("live");
      document.body.dataset.loadedBy = query.loadedBy;
      if (state.openIssueId !== null) refreshOpenIssue(changes);
      scheduleRender();
    },
    onError: (error) => setStatus(`error: ${error.message}`),
    onConfirmed: (confirmed) => state.writes.confirmed(confirmed),
  });
  return state.issues.start();
}

// ---- writing: a new issue, a status ------------------------------------------------

function createIssue(title) {
  // In "All my teams", a new issue goes to the first of them.
  const teamId = Number(state.view === ALL_TEAMS ? $("#team option").value : state.view);
  const id = `tmp-${state.writes.nextId}`; // matches no real id: gives way to the real row
  const row = {
    id, team_id: teamId, number: null, title, status: "backlog", priority: 0,
    assignee_id: null, updated_at: new Date().toISOString(),
  };
  state.writes.mutate("create_issue", { team_id: teamId, title },
    [{ op: "put", key: { id }, row }]);
}

function changeStatus(issueId, status) {
  const key = { id: issueId };
  const write = CLOSED.includes(status)
    ? { op: "delete", key } // it leaves the list of open issues
    : { op: "patch", key, fields: { status } };
  state.writes.mutate("set_status", { issue_id: issueId, status }, [write]);
}

function mutationChanged(mutation) {
  renderIssues(); // at once, not at the next frame: the change shows as it is made
  renderWrites();
  if (mutation.status === "refused" || mutation.status === "error") {
    console.warn(`mutation ${mutation.id} ${mutation.status}: ${mutation.message}`);
  }
}

function renderWrites() {
  const recent = state.writes.mutations.slice(-5).reverse();
  $("#writes").replaceChildren(...recent.map((mutation) => {
    const what = mutation.name === "create_issue"
      ? `New issue “${mutation.args.title}”`
      : `${STATUS_LABELS[mutation.args.status] ?? mutation.args.status} for issue ${mutation.args.issue_id}`;
    const li = element("li", `${what}: ${WRITE_LABELS[mutation.status]}` +
      (mutation.message ? ` (${mutation.message})` : ""));
    li.dataset.mutationId = mutation.id;
    li.dataset.status = mutation.status;
    return li;
  }));
}

// ---- the list ------------------------------------------------------------------

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => {
    renderPending = false;
    renderIssues();
  });
}

function renderIssues() {
  const { rows: visible, pendingKeys } = state.issues
    ? state.writes.overlay(state.issues) : { rows: new Map(), pendingKeys: new Set() };
  const rows = [...visible.values()].sort(
    (a, b) => (a.priority || 9) - (b.priority || 9) || b.updated_at.localeCompare(a.updated_at),
  );
  $("#issues tbody").replaceChildren(...rows.map((issue) => {
    const tr = document.createElement("tr");
    tr.dataset.issueId = issue.id;
    tr.className = issue.id === state.openIssueId ? "selected" : "";
    const pending = pendingKeys.has(JSON.stringify({ id: issue.id }));
    if (pending) tr.classList.add("pending"); // an optimistic change, not confirmed yet
    state.recent.mark(tr, issue.id);
    const team = state.teams.get(String(issue.team_id));
    tr.dataset.teamId = issue.team_id;
    tr.append(
      cell(`${team ? team.key : ""}-${issue.number ?? "…"}`, "identifier"),
      cell(issue.title, "title"),
      statusCell(issue),
      cell(PRIORITIES[issue.priority] ?? "", "priority"),
      cell(state.users.get(issue.assignee_id)?.name ?? (issue.assignee_id ? "…" : "—"), "assignee"),
    );
    if (!String(issue.id).startsWith("tmp-")) {
      tr.addEventListener("click", () => openIssue(issue.id));
    }
    return tr;
  }));
  $("#count").textContent = `${rows.length} open issues`;
}

function statusCell(issue) {
  const td = cell("", `status ${issue.status}`);
  const select = document.createElement("select");
  select.replaceChildren(
    ...Object.entries(STATUS_LABELS).map(([value, label]) => option(value, label)),
  );
  select.value = issue.status;
  select.disabled = String(issue.id).startsWith("tmp-"); // no id to name until it exists
  select.addEventListener("click", (event) => event.stopPropagation());
  select.addEventListener("change", () => changeStatus(issue.id, select.value));
  td.append(select);
  return td;
}

// ---- one issue and its comments --------------------------------------------------

async function openIssue(id) {
  closeIssue();
  state.openIssueId = id;
  scheduleRender();
  $("#detail").hidden = false;
  $("#detail-title").textContent = "…";
  const [issue] = await loadRows("issues", [id]);
  if (state.openIssueId !== id) return;
  renderIssueHeader(issue);
  state.comments = new LiveQuery({
    socket: () => state.socket,
    token: state.user.token,
    query: ISSUE_COMMENTS,
    params: [id],
    bootstrap: false,
    onChange: (changes, query) => hydrateComments(changes, query, id),
    onError: (error) => setStatus(`error: ${error.message}`),
  });
  state.comments.start();
}

function renderIssueHeader(issue) {
  if (!issue) {
    $("#detail-title").textContent = "This issue is gone or no longer visible to you.";
    $("#detail-meta").textContent = "";
    $("#detail-description").textContent = "";
    return;
  }
  $("#detail-title").textContent = issue.title;
  $("#detail-meta").textContent =
    `${STATUS_LABELS[issue.status]} · ${PRIORITIES[issue.priority]}` +
    (issue.estimate ? ` · ${issue.estimate} points` : "") + (issue.due ? ` · due ${issue.due}` : "");
  $("#detail-description").textContent = issue.description ?? "No description.";
}

async function refreshOpenIssue(changes) {
  const id = state.openIssueId;
  if (!changes.some((change) => change.key.id === id)) return;
  const [issue] = await loadRows("issues", [id]);
  if (state.openIssueId === id) renderIssueHeader(issue);
}

async function hydrateComments(changes, query, issueId) {
  const wanted = changes.filter((c) => c.op !== "DELETE").map((c) => c.key.id);
  for (const change of changes) {
    if (change.op === "DELETE") state.commentRows.delete(change.key.id);
  }
  if (wanted.length) {
    const rows = await loadRows(
      "comments", wanted, ["id", "author_id", "body", "created_at", "edited_at"],
    );
    if (state.openIssueId !== issueId) return;
    rows.forEach((row, index) => {
      if (row && query.rows.has(JSON.stringify({ id: wanted[index] }))) {
        state.commentRows.set(row.id, row);
      }
    });
    await loadUsers(rows.filter(Boolean).map((row) => row.author_id));
  }
  if (state.openIssueId !== issueId) return;
  const comments = [...state.commentRows.values()].sort((a, b) => a.id - b.id);
  $("#comments").replaceChildren(...comments.map((comment) => {
    const li = document.createElement("li");
    li.dataset.commentId = comment.id;
    const author = state.users.get(comment.author_id)?.name ?? "someone";
    const when = new Date(comment.created_at).toLocaleString();
    li.append(
      element("div", `${author} · ${when}${comment.edited_at ? " (edited)" : ""}`, "meta"),
      element("p", comment.body),
    );
    return li;
  }));
  $("#comments-count").textContent = query.upToDate ? `${comments.length}` : "…";
}

function closeIssue() {
  state.comments?.close();
  state.comments = null;
  state.commentRows.clear();
  state.openIssueId = null;
  $("#detail").hidden = true;
  $("#comments").replaceChildren();
}

// ---- small DOM helpers -----------------------------------------------------------

function element(tag, text, className) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (className) node.className = className;
  return node;
}
const cell = (text, className) => element("td", text, className);
const option = (value, text) => Object.assign(document.createElement("option"), { value, text });
function setStatus(text) {
  $("#status").textContent = text;
  $("#status").dataset.state = text;
}

// ---- start -----------------------------------------------------------------------

async function main() {
  const users = await (await fetch("/demo/users")).json();
  const select = $("#user");
  select.replaceChildren(
    ...users.map((user) => option(user.id, `${user.name} (${user.team_ids.length} teams)`)),
  );
  const remembered = Number(localStorage.getItem("pgsift-demo-user"));
  if (users.some((user) => user.id === remembered)) select.value = String(remembered);
  const byId = new Map(users.map((user) => [user.id, user]));
  select.addEventListener("change", () => signIn(byId.get(Number(select.value))));
  $("#team").addEventListener("change", (event) => showTeam(event.target.value));
  $("#new-issue").addEventListener("submit", (event) => {
    event.preventDefault();
    createIssue($("#new-title").value);
    $("#new-title").value = "";
  });
  $("#close").addEventListener("click", () => {
    closeIssue();
    scheduleRender();
  });
  await signIn(byId.get(Number(select.value)));
}

main().catch((error) => setStatus(`error: ${error.message}`));
