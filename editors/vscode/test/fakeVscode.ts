/**
 * A stand-in for the `vscode` module, so that the compiled extension and the real
 * vscode-languageclient 11 run under plain node (VS Code itself cannot be downloaded here).
 *
 * The parts the extension and the client library actually use are small fakes that record
 * what happens (commands, status bar, messages, settings, registered inline completion
 * providers, document and editor events); everything else is a permissive stand-in value.
 */
import Module = require("module");

/** A value that is every property, callable and constructible. */
export function standIn(name: string): any {
  const target: any = function () {};
  return new Proxy(target, {
    get(t, prop) {
      if (prop === "then") return undefined; // not a promise
      if (prop === Symbol.toPrimitive) return () => name;
      if (!(prop in t)) t[prop] = standIn(`${name}.${String(prop)}`);
      return t[prop];
    },
    construct: () => standIn(`new ${name}`),
    apply: () => standIn(`${name}()`),
  });
}

const disposable = () => ({ dispose() {} });

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
  const vscode = standIn("vscode");
  const fake: FakeVscode = {
    module: vscode,
    settings,
    commands: new Map(),
    statusItem: { show() {}, hide() {}, dispose() {} },
    statusHistory: [],
    messages: [],
    output: [],
    inlineProviders: [],
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
    InlineCompletionTriggerKind: { Invoke: 0, Automatic: 1 },
    StatusBarAlignment: { Left: 1, Right: 2 },
    ConfigurationTarget: { Global: 1, Workspace: 2, WorkspaceFolder: 3 },
  });
  vscode.env = { appName: "Visual Studio Code", language: "en", machineId: "test", sessionId: "test", uiKind: 1 };
  const log = (line: string) => fake.output.push(String(line));
  const channel = {
    name: "infill-ls", logLevel: 2, onDidChangeLogLevel: disposable,
    info: log, warn: log, error: log, debug() {}, trace() {}, append: log, appendLine: log,
    show() {}, hide() {}, clear() {}, replace() {}, dispose() {},
  };
  vscode.window = standIn("vscode.window");
  Object.assign(vscode.window, {
    createOutputChannel: () => channel,
    createStatusBarItem: () => fake.statusItem,
    visibleTextEditors: [],
    activeTextEditor: undefined,
    tabGroups: { all: [], onDidChangeTabs: disposable },
    onDidChangeTextEditorSelection: (listener: any, thisArg?: unknown) => {
      fake.selectionListeners.push(listener.bind(thisArg));
      return disposable();
    },
    onDidChangeActiveTextEditor: (listener: any, thisArg?: unknown) => {
      fake.activeEditorListeners.push(listener.bind(thisArg));
      return disposable();
    },
  });
  for (const kind of ["showErrorMessage", "showWarningMessage", "showInformationMessage"]) {
    vscode.window[kind] = async (message: string) => {
      fake.messages.push({ kind, text: message });
      return undefined;
    };
  }
  vscode.workspace = standIn("vscode.workspace");
  Object.assign(vscode.workspace, {
    workspaceFolders: [],
    textDocuments: documents,
    notebookDocuments: [],
    getConfiguration: () => ({
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
    onDidCloseTextDocument: () => disposable(),
  });
  vscode.languages = standIn("vscode.languages");
  Object.assign(vscode.languages, {
    match: () => 10,
    registerInlineCompletionItemProvider: (_selector: unknown, provider: unknown) => {
      fake.inlineProviders.push(provider);
      return disposable();
    },
  });
  vscode.commands = standIn("vscode.commands");
  vscode.commands.registerCommand = (id: string, fn: (...args: unknown[]) => unknown) => {
    fake.commands.set(id, fn);
    return { dispose: () => fake.commands.delete(id) };
  };

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
