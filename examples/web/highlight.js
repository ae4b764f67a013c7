// Rows that just changed live, briefly highlighted so the updates catch the eye.
//
// The list is drawn anew on every change, so the highlight cannot be a transition
// on a long-lived element: a row that changed gets the `changed` class, whose CSS
// animation fades a background out, and its animation is started back in time by
// the age of the change, so a redraw mid-fade goes on where it was.

export const HIGHLIGHT_MS = 2000;

export class RecentChanges {
  constructor(durationMs = HIGHLIGHT_MS) {
    this.durationMs = durationMs;
    this.changedAt = new Map(); // row id -> performance.now() of its last change
  }

  /** Note the inserted and updated rows of one message (deletes leave the list). */
  note(changes, idOf = (change) => change.key.id) {
    const now = performance.now();
    for (const change of changes) {
      if (change.op !== "DELETE") this.changedAt.set(idOf(change), now);
    }
  }

  /** Mark a freshly drawn row that changed within the last `durationMs`. */
  mark(element, id) {
    const at = this.changedAt.get(id);
    if (at === undefined) return;
    const age = performance.now() - at;
    if (age >= this.durationMs) {
      this.changedAt.delete(id);
      return;
    }
    element.classList.add("changed");
    element.style.animationDuration = `${this.durationMs}ms`;
    element.style.animationDelay = `${-age}ms`;
  }

  clear() {
    this.changedAt.clear();
  }
}
