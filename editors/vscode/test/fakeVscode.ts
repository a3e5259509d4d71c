/**
 * A stand-in for the `vscode` module, so that the compiled extension and the real
 * vscode-languageclient 11 run under plain node (VS Code itself cannot be downloaded here).
 *
 * Only what the extension and the client library use is there: small fakes that record what
 * happens (commands, status bar, messages, settings, registered providers, document and editor
 * events), and events these tests never fire. Reading any other member of the module or of its
 * namespaces throws, naming it, and is listed in `unimplemented`: a client that calls an API this
 * stand-in does not have (a misspelt or a wrong one) fails its test instead of getting a silent
 * stand-in value. (Errors the client library catches itself are caught through that list: the
 * tests check it is empty.)
 */
import Module = require("module");

/** Members read that the stand-in does not implement ("vscode.window.showQuickPick", ...). */
export const unimplemented: string[] = [];

/** `members`, where reading a member that is not there throws (and is recorded in `unimplemented`). */
export function strict<T extends object>(name: string, members: T): T {
  return new Proxy(members, {
    get(target, prop, receiver) {
      if (typeof prop === "symbol" || prop in target) return Reflect.get(target, prop, receiver);
      if (prop === "then") return undefined; // checked by `await` and promise detection: not a promise
      const member = `${name}.${prop}`;
      unimplemented.push(member);
      throw new Error(`fakeVscode: ${member} is not implemented (test/fakeVscode.ts has only what the extension uses)`);
    },
  });
}

const disposable = () => ({ dispose() {} });

/** vscode.Event registration for an event these tests never fire. */
const neverFires = () => disposable();

/** vscode.EventEmitter: `event` registers a listener, `fire` calls the listeners. */
export class EventEmitter<T> {
  private listeners = new Set<(value: T) => unknown>();
  event = (listener: (value: T) => unknown, thisArg?: unknown) => {
    const bound = thisArg === undefined ? listener : listener.bind(thisArg);
    this.listeners.add(bound);
    return { dispose: () => this.listeners.delete(bound) };
  };
  fire(value: T) {
    for (const listener of [...this.listeners]) listener(value);
  }
  dispose() {
    this.listeners.clear();
  }
}

/** Classes that vscode-languageclient subclasses when it loads; these tests never build one. */
class Subclassed {
  args: unknown[];
  constructor(...args: unknown[]) {
    this.args = args;
  }
}
const subclassed = Object.fromEntries(
  ["CallHierarchyItem", "CodeAction", "CodeLens", "CompletionItem", "Diagnostic", "DocumentLink", "InlayHint",
    "SymbolInformation", "TypeHierarchyItem"].map((name) => [name, class extends Subclassed {}]),
);

class CancellationError extends Error {
  constructor() {
    super("Canceled");
    this.name = "Canceled";
  }
}

class CodeActionKind {
  constructor(public readonly value: string) {}
  append(part: string) {
    return new CodeActionKind(this.value ? `${this.value}.${part}` : part);
  }
  static Empty = new CodeActionKind("");
  static QuickFix = new CodeActionKind("quickfix");
  static Refactor = new CodeActionKind("refactor");
  static RefactorExtract = new CodeActionKind("refactor.extract");
  static RefactorInline = new CodeActionKind("refactor.inline");
  static RefactorRewrite = new CodeActionKind("refactor.rewrite");
  static Source = new CodeActionKind("source");
  static SourceOrganizeImports = new CodeActionKind("source.organizeImports");
}

export class Position {
  constructor(public line: number, public character: number) {}
  translate(lineDelta = 0, characterDelta = 0) {
    return new Position(this.line + lineDelta, this.character + characterDelta);
  }
}

export class Range {
  start: Position;
  end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    if (typeof a === "number") {
      this.start = new Position(a, b as number);
      this.end = new Position(c!, d!);
    } else {
      this.start = a;
      this.end = b as Position;
    }
  }
}

export class Selection extends Range {
  constructor(public anchor: Position, public active: Position) {
    super(anchor, active);
  }
  get isEmpty() {
    return this.anchor.line === this.active.line && this.anchor.character === this.active.character;
  }
}

export class Uri {
  constructor(public scheme: string, public fsPath: string) {}
  static file(path: string) {
    return new Uri("file", path);
  }
  static parse(value: string) {
    return new Uri(value.split(":")[0], value.replace(/^file:\/\//, ""));
  }
  toString() {
    return `${this.scheme}://${this.fsPath}`;
  }
}

export class InlineCompletionItem {
  constructor(public insertText: string | { value: string }, public range?: Range, public command?: unknown) {}
}

export class InlineCompletionList {
  constructor(public items: InlineCompletionItem[]) {}
}

export class SnippetString {
  constructor(public value = "") {}
}

export class ThemeColor {
  constructor(public id: string) {}
}

/** A text document kept as lines, with VS Code's change event shape. */
export class FakeDocument {
  version = 1;
  readonly uri: Uri;
  constructor(path: string, public languageId: string, public text: string) {
    this.uri = Uri.file(path);
  }
  getText() {
    return this.text;
  }
  get lineCount() {
    return this.text.split("\n").length;
  }
  offsetAt(p: Position) {
    const lines = this.text.split("\n");
    let offset = 0;
    for (let i = 0; i < p.line; i++) offset += lines[i].length + 1;
    return offset + p.character;
  }
  /** Insert `text` at `at`; returns the change event VS Code would fire. */
  insert(at: Position, text: string) {
    const offset = this.offsetAt(at);
    this.text = this.text.slice(0, offset) + text + this.text.slice(offset);
    this.version += 1;
    return {
      document: this,
      contentChanges: [{ range: new Range(at, at), rangeOffset: offset, rangeLength: 0, text }],
      reason: undefined,
    };
  }
  get isClosed() {
    return false;
  }
  get isUntitled() {
    return false;
  }
  get fileName() {
    return this.uri.fsPath;
  }
}

/** A text editor showing a FakeDocument, with one cursor (or selection). */
export class FakeEditor {
  selections: Selection[];
  constructor(public document: FakeDocument, line = 0, character = 0) {
    this.selections = [new Selection(new Position(line, character), new Position(line, character))];
  }
  get selection() {
    return this.selections[0];
  }
}

export interface FakeVscode {
  module: any;
  settings: Record<string, unknown>;
  commands: Map<string, (...args: unknown[]) => unknown>;
  statusItem: { text?: string; tooltip?: string; show(): void; hide(): void; dispose(): void };
  statusHistory: string[];
  messages: { kind: string; text: string }[];
  output: string[];
  inlineProviders: any[];
  completionProviders: any[];
  /** vscode.commands.executeCommand calls: [command, ...args]. */
  executed: unknown[][];
  documents: FakeDocument[];
  changeListeners: ((event: unknown) => void)[];
  configListeners: ((event: { affectsConfiguration(section: string): boolean }) => void)[];
  selectionListeners: ((event: unknown) => void)[];
  activeEditorListeners: ((editor: unknown) => void)[];
  /** Put the cursor (or, with `anchor`, a selection) in the active editor, as a key (kind 1) or a click (2) does. */
  moveCursor(line: number, character: number, kind?: number, anchor?: Position): void;
  /** Make `editor` the active one and fire onDidChangeActiveTextEditor. */
  activateEditor(editor: FakeEditor): void;
  /** Change settings and fire onDidChangeConfiguration, as the Settings editor does. */
  changeSettings(values: Record<string, unknown>): Promise<void>;
  uninstall(): void;
}

/** Install the stand-in for `require("vscode")` until `uninstall()`. */
export function installFakeVscode(settings: Record<string, unknown>, documents: FakeDocument[]): FakeVscode {
  unimplemented.length = 0;
  const vscode: any = strict("vscode", { __esModule: undefined } as Record<string, any>);
  const fake: FakeVscode = {
    module: vscode,
    settings,
    commands: new Map(),
    statusItem: { show() {}, hide() {}, dispose() {} },
    statusHistory: [],
    messages: [],
    output: [],
    inlineProviders: [],
    completionProviders: [],
    executed: [],
    documents,
    changeListeners: [],
    configListeners: [],
    selectionListeners: [],
    activeEditorListeners: [],
    moveCursor(line, character, kind = 1, anchor) {
      const editor: FakeEditor = vscode.window.activeTextEditor;
      const active = new Position(line, character);
      editor.selections = [new Selection(anchor ?? active, active)];
      const event = { textEditor: editor, selections: editor.selections, kind };
      for (const listener of fake.selectionListeners) listener(event);
    },
    activateEditor(editor) {
      vscode.window.activeTextEditor = editor;
      for (const listener of fake.activeEditorListeners) listener(editor);
    },
    async changeSettings(values) {
      Object.assign(settings, values);
      const keys = Object.keys(values).map((k) => `infill.${k}`);
      const event = { affectsConfiguration: (section: string) => keys.some((k) => k === section || k.startsWith(`${section}.`)) };
      for (const listener of fake.configListeners) await listener(event);
    },
    uninstall() {},
  };

  // Record every status text the extension sets.
  let text: string | undefined;
  Object.defineProperty(fake.statusItem, "text", {
    get: () => text,
    set: (value: string) => {
      text = value;
      if (fake.statusHistory[fake.statusHistory.length - 1] !== value) fake.statusHistory.push(value);
    },
  });

  Object.assign(vscode, {
    version: "1.95.0",
    Position, Range, Selection, Uri, InlineCompletionItem, InlineCompletionList, SnippetString, ThemeColor,
    EventEmitter, CancellationError, CodeActionKind, ...subclassed,
    InlineCompletionTriggerKind: { Invoke: 0, Automatic: 1 },
    StatusBarAlignment: { Left: 1, Right: 2 },
    ConfigurationTarget: { Global: 1, Workspace: 2, WorkspaceFolder: 3 },
    LogLevel: { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 },
    ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
  });
  vscode.env = strict("vscode.env",
    { appName: "Visual Studio Code", language: "en", machineId: "test", sessionId: "test", uiKind: 1 });
  const log = (line: string) => fake.output.push(String(line));
  const channel = strict("vscode.LogOutputChannel", {
    name: "infill-ls", logLevel: 2, onDidChangeLogLevel: neverFires,
    info: log, warn: log, error: log, debug() {}, trace() {}, append: log, appendLine: log,
    show() {}, hide() {}, clear() {}, replace() {}, dispose() {},
  });
  const message = (kind: string) => async (text: string) => {
    fake.messages.push({ kind, text });
    return undefined;
  };
  vscode.window = strict("vscode.window", {
    createOutputChannel: () => channel,
    createStatusBarItem: () => fake.statusItem,
    visibleTextEditors: [],
    activeTextEditor: undefined,
    tabGroups: strict("vscode.window.tabGroups", { all: [], onDidChangeTabs: neverFires }),
    onDidChangeTextEditorSelection: (listener: any, thisArg?: unknown) => {
      fake.selectionListeners.push(listener.bind(thisArg));
      return disposable();
    },
    onDidChangeActiveTextEditor: (listener: any, thisArg?: unknown) => {
      fake.activeEditorListeners.push(listener.bind(thisArg));
      return disposable();
    },
    onDidChangeVisibleTextEditors: neverFires,
    // The server's work-done progress (model loading): the task runs, its reports go nowhere.
    withProgress: (_options: unknown, task: (progress: unknown, token: unknown) => unknown) =>
      Promise.resolve(task({ report() {} }, { isCancellationRequested: false, onCancellationRequested: neverFires })),
    showErrorMessage: message("showErrorMessage"),
    showWarningMessage: message("showWarningMessage"),
    showInformationMessage: message("showInformationMessage"),
  } as Record<string, any>);
  vscode.workspace = strict("vscode.workspace", {
    workspaceFolders: [],
    textDocuments: documents,
    notebookDocuments: [],
    getConfiguration: () => strict("vscode.WorkspaceConfiguration", {
      get: (key: string, fallback?: unknown) => (key in settings ? settings[key] : fallback),
      update: async (key: string, value: unknown) => fake.changeSettings({ [key]: value }),
    }),
    onDidChangeConfiguration: (listener: any) => {
      fake.configListeners.push(listener);
      return disposable();
    },
    onDidChangeTextDocument: (listener: any, thisArg?: unknown) => {
      fake.changeListeners.push(listener.bind(thisArg));
      return disposable();
    },
    // Documents are opened before the client starts (`textDocuments`) and never saved or renamed here.
    onDidOpenTextDocument: neverFires,
    onDidCloseTextDocument: neverFires,
    onDidSaveTextDocument: neverFires,
    onWillSaveTextDocument: neverFires,
    onDidCreateFiles: neverFires, onDidRenameFiles: neverFires, onDidDeleteFiles: neverFires,
    onWillCreateFiles: neverFires, onWillRenameFiles: neverFires, onWillDeleteFiles: neverFires,
    onDidChangeWorkspaceFolders: neverFires,
  });
  vscode.languages = strict("vscode.languages", {
    match: () => 10,
    registerInlineCompletionItemProvider: (_selector: unknown, provider: unknown) => {
      fake.inlineProviders.push(provider);
      return disposable();
    },
    // The server also answers textDocument/completion (eglot's completion-at-point uses it).
    registerCompletionItemProvider: (_selector: unknown, provider: unknown) => {
      fake.completionProviders.push(provider);
      return disposable();
    },
  });
  vscode.commands = strict("vscode.commands", {
    registerCommand: (id: string, fn: (...args: unknown[]) => unknown) => {
      fake.commands.set(id, fn);
      return { dispose: () => fake.commands.delete(id) };
    },
    executeCommand: async (...args: unknown[]) => {
      fake.executed.push(args);
      return undefined;
    },
  });

  const loader = Module as any;
  const original = loader._load;
  loader._load = function (request: string, ...rest: unknown[]) {
    return request === "vscode" ? vscode : original.call(this, request, ...rest);
  };
  fake.uninstall = () => {
    loader._load = original;
  };
  return fake;
}
