import * as assert from "node:assert/strict";
import { test } from "node:test";
import { Clock, CursorEvent, CursorPlace, EDIT_WINDOW_MS, PrefetchScheduler } from "../../src/prefetch";

const KEYBOARD = 1; // vscode.TextEditorSelectionChangeKind
const MOUSE = 2;
const DELAY = 200;
const URI = "file:///w/a.py";

/** A clock whose time only moves when the test says so. */
class ManualClock implements Clock {
  time = 1000;
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 0;
  now() {
    return this.time;
  }
  setTimeout(fn: () => void, ms: number) {
    this.timers.set(++this.next, { at: this.time + ms, fn });
    return this.next;
  }
  clearTimeout(handle: unknown) {
    this.timers.delete(handle as number);
  }
  advance(ms: number) {
    const until = this.time + ms;
    for (;;) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= until).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
    }
    this.time = until;
  }
}

function setUp(options: { on?: boolean } = {}) {
  const clock = new ManualClock();
  const sent: CursorPlace[] = [];
  const versions = new Map<string, number>([[URI, 1], ["file:///w/b.py", 1]]);
  const state = { on: options.on ?? true };
  const scheduler = new PrefetchScheduler(
    { isOn: () => state.on, versionOf: (uri) => versions.get(uri), send: (place) => sent.push(place) },
    DELAY,
    clock,
  );
  return { clock, sent, versions, state, scheduler };
}

function cursor(line: number, character: number, extra: Partial<CursorEvent> = {}): CursorEvent {
  return { uri: URI, version: 1, line, character, empty: true, kind: KEYBOARD, ...extra };
}

test("a cursor that comes to rest after navigation is sent once, after the delay", () => {
  const { clock, sent, scheduler } = setUp();
  scheduler.onSelectionChanged(cursor(10, 0, { kind: MOUSE }));
  clock.advance(DELAY - 1);
  assert.equal(sent.length, 0);
  clock.advance(1);
  assert.deepEqual(sent, [{ uri: URI, version: 1, line: 10, character: 0 }]);
  clock.advance(10 * DELAY);
  assert.equal(sent.length, 1);
});

test("only the place where the cursor stops is sent, not the ones it passed", () => {
  const { clock, sent, scheduler } = setUp();
  for (let line = 0; line < 5; line++) {
    scheduler.onSelectionChanged(cursor(line, 0));
    clock.advance(50);
  }
  clock.advance(DELAY);
  assert.deepEqual(sent.map((p) => p.line), [4]);
});

test("moves made by typing send nothing", () => {
  const { clock, sent, versions, scheduler } = setUp();
  for (let i = 1; i <= 5; i++) {
    // VS Code: the change event, then the cursor moved by the same key (kind Keyboard)
    versions.set(URI, 1 + i);
    scheduler.onTextChanged(URI);
    scheduler.onSelectionChanged(cursor(3, i, { version: 1 + i }));
    clock.advance(60);
  }
  clock.advance(5 * DELAY);
  assert.equal(sent.length, 0);
});

test("a move just before an edit of the same document is dropped; a later motion is sent", () => {
  const { clock, sent, versions, scheduler } = setUp();
  scheduler.onSelectionChanged(cursor(3, 4));
  clock.advance(20);
  versions.set(URI, 2);
  scheduler.onTextChanged(URI); // the cursor event came first, the change right after
  clock.advance(5 * DELAY);
  assert.equal(sent.length, 0);
  scheduler.onSelectionChanged(cursor(7, 0, { version: 2 })); // well after the edit: navigation
  clock.advance(DELAY);
  assert.deepEqual(sent, [{ uri: URI, version: 2, line: 7, character: 0 }]);
});

test("a motion right after typing is ignored only within the edit window", () => {
  const { clock, sent, scheduler } = setUp();
  scheduler.onTextChanged(URI);
  clock.advance(EDIT_WINDOW_MS - 1);
  scheduler.onSelectionChanged(cursor(1, 0));
  clock.advance(DELAY);
  assert.equal(sent.length, 0);
  scheduler.onSelectionChanged(cursor(2, 0));
  clock.advance(DELAY);
  assert.deepEqual(sent.map((p) => p.line), [2]);
});

test("a change of another document does not make a move here look like typing", () => {
  const { clock, sent, scheduler } = setUp();
  scheduler.onTextChanged("file:///w/b.py");
  scheduler.onSelectionChanged(cursor(1, 0));
  clock.advance(DELAY);
  assert.equal(sent.length, 1);
});

test("an edit after the move, before the delay is over, cancels it (the version check too)", () => {
  const { clock, sent, versions, scheduler } = setUp();
  scheduler.onSelectionChanged(cursor(1, 0));
  clock.advance(DELAY / 2);
  versions.set(URI, 2); // changed without an event reaching us yet
  clock.advance(DELAY);
  assert.equal(sent.length, 0);
});

test("the same place (document, version, position) is not sent twice in a row", () => {
  const { clock, sent, versions, scheduler } = setUp();
  scheduler.onSelectionChanged(cursor(5, 2));
  clock.advance(DELAY);
  scheduler.onSelectionChanged(cursor(6, 2));
  scheduler.onSelectionChanged(cursor(5, 2)); // down and back within the delay
  clock.advance(DELAY);
  scheduler.onEditorActivated(cursor(5, 2, { kind: undefined }));
  clock.advance(DELAY);
  assert.equal(sent.length, 1);
  versions.set(URI, 2); // the same position in a newer text is a new place
  scheduler.onSelectionChanged(cursor(5, 2, { version: 2 }));
  clock.advance(DELAY);
  assert.equal(sent.length, 2);
});

test("selection changes with no kind (API, edits) and non-empty selections send nothing", () => {
  const { clock, sent, scheduler } = setUp();
  scheduler.onSelectionChanged(cursor(1, 0, { kind: undefined }));
  clock.advance(DELAY);
  scheduler.onSelectionChanged(cursor(2, 0, { empty: false }));
  clock.advance(DELAY);
  assert.equal(sent.length, 0);
  scheduler.onSelectionChanged(cursor(3, 0));
  scheduler.onSelectionChanged(cursor(3, 5, { empty: false })); // selecting after the move cancels it
  clock.advance(DELAY);
  assert.equal(sent.length, 0);
});

test("a selection event with no kind at the pending place keeps it; one elsewhere drops it", () => {
  const { clock, sent, scheduler } = setUp();
  scheduler.onEditorActivated(cursor(8, 1, { kind: undefined }));
  scheduler.onSelectionChanged(cursor(8, 1, { kind: undefined })); // VS Code restoring the editor's cursor
  clock.advance(DELAY);
  assert.deepEqual(sent.map((p) => p.line), [8]);
  scheduler.onSelectionChanged(cursor(9, 0));
  scheduler.onSelectionChanged(cursor(20, 0, { kind: undefined })); // an extension moved it
  clock.advance(DELAY);
  assert.equal(sent.length, 1);
});

test("switching to an editor sends its cursor, even with no selection kind", () => {
  const { clock, sent, scheduler } = setUp();
  scheduler.onEditorActivated({ uri: "file:///w/b.py", version: 1, line: 40, character: 3, empty: true });
  clock.advance(DELAY);
  assert.deepEqual(sent, [{ uri: "file:///w/b.py", version: 1, line: 40, character: 3 }]);
});

test("with prefetch (or suggestions, or the server) off nothing is sent", () => {
  const { clock, sent, state, scheduler } = setUp({ on: false });
  scheduler.onSelectionChanged(cursor(1, 0));
  scheduler.onEditorActivated(cursor(2, 0));
  clock.advance(DELAY);
  assert.equal(sent.length, 0);
  state.on = true;
  scheduler.onSelectionChanged(cursor(3, 0));
  state.on = false; // turned off before the delay is over
  clock.advance(DELAY);
  assert.equal(sent.length, 0);
});

test("closing the document drops what is pending for it", () => {
  const { clock, sent, scheduler } = setUp();
  scheduler.onSelectionChanged(cursor(1, 0));
  scheduler.onDocumentClosed(URI);
  clock.advance(DELAY);
  assert.equal(sent.length, 0);
});
