/**
 * When to send `infill/prefetch`: where the cursor comes to rest after navigation (a click, a
 * motion key, go to line, search, a jump) or after switching to an editor, so the server
 * prefills that place's prompt in the background before the user types there.
 *
 * Pure (no `vscode` import, clock injected) so node can test it. The extension feeds it
 * cursor events and text changes and gives it `send`; this decides:
 *  - a selection change with no kind (an API or an edit moved it) is not navigation (but if
 *    it moves the cursor away, what is pending is dropped: only where the cursor is is sent);
 *  - nor is one within EDIT_WINDOW_MS of a change of the same document: typing moves the
 *    cursor with kind Keyboard right after the change event;
 *  - a non-empty selection sends nothing;
 *  - the place is sent after `delayMs` of no further event, only if the document's version is
 *    still the one seen then (an edit in between cancels it) and it is not the place (document,
 *    version, position) sent last;
 *  - `isOn()` false (suggestions or the `infill.prefetch` setting off, no running server)
 *    sends nothing.
 */

export const PREFETCH_METHOD = "infill/prefetch";
export const PREFETCH_DELAY_MS = 200;
export const EDIT_WINDOW_MS = 100;

/** A cursor in a document: `uri` as a string, `version` the document's version then. */
export interface CursorPlace {
  uri: string;
  version: number;
  line: number;
  character: number;
}

export interface CursorEvent extends CursorPlace {
  /** Nothing selected (the cursor only). */
  empty: boolean;
  /** vscode.TextEditorSelectionChangeKind (1 keyboard, 2 mouse, 3 command); undefined: no user gesture. */
  kind?: number;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface PrefetchHooks {
  /** Suggestions on, `infill.prefetch` on, the server running. */
  isOn(): boolean;
  /** The document's current version, undefined if it is closed. */
  versionOf(uri: string): number | undefined;
  send(place: CursorPlace): void;
}

function samePosition(a: CursorPlace, b: CursorPlace): boolean {
  return a.uri === b.uri && a.line === b.line && a.character === b.character;
}

function sameSpot(a: CursorPlace, b: CursorPlace): boolean {
  return samePosition(a, b) && a.version === b.version;
}

export class PrefetchScheduler {
  private timer: unknown;
  private pending: CursorPlace | undefined;
  private lastSent: CursorPlace | undefined;
  private cursor: CursorEvent | undefined; // the latest cursor seen, from any event
  private readonly editedAt = new Map<string, number>();

  constructor(
    private readonly hooks: PrefetchHooks,
    private readonly delayMs = PREFETCH_DELAY_MS,
    private readonly clock: Clock = realClock,
  ) {}

  /** onDidChangeTextEditorSelection (of the active editor). */
  onSelectionChanged(event: CursorEvent): void {
    this.cursor = event;
    if (event.kind === undefined) return;
    const edited = this.editedAt.get(event.uri);
    if (edited !== undefined && this.clock.now() - edited < EDIT_WINDOW_MS) return this.cancel();
    this.consider(event);
  }

  /** onDidChangeActiveTextEditor: a document switched to is a new place. */
  onEditorActivated(event: CursorEvent): void {
    this.cursor = event;
    this.consider(event);
  }

  /** onDidChangeTextDocument: a move that comes with it is typing, and what is pending is stale. */
  onTextChanged(uri: string): void {
    this.editedAt.set(uri, this.clock.now());
    if (this.pending?.uri === uri) this.cancel();
  }

  onDocumentClosed(uri: string): void {
    this.editedAt.delete(uri);
    if (this.pending?.uri === uri) this.cancel();
  }

  cancel(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private consider(event: CursorEvent): void {
    this.cancel();
    if (!event.empty || !this.hooks.isOn()) return;
    const place: CursorPlace = { uri: event.uri, version: event.version, line: event.line, character: event.character };
    this.pending = place;
    this.timer = this.clock.setTimeout(() => this.fire(place), this.delayMs);
  }

  private fire(place: CursorPlace): void {
    this.timer = undefined;
    this.pending = undefined;
    if (!this.hooks.isOn() || this.hooks.versionOf(place.uri) !== place.version) return;
    if (!this.cursor?.empty || !samePosition(this.cursor, place)) return;
    if (this.lastSent && sameSpot(this.lastSent, place)) return;
    this.lastSent = place;
    this.hooks.send(place);
  }
}
