/**
 * VS Code entry point: starts `infill-ls serve` over stdio with
 * vscode-languageclient 11 (whose built-in InlineCompletionItemFeature turns
 * the server's textDocument/inlineCompletion into ghost text), keeps a status
 * bar item, registers the restart / toggle / stats commands, and sends
 * `infill/prefetch` where the cursor comes to rest (./prefetch decides when).
 */
import * as fs from "fs";
import * as os from "os";
import * as vscode from "vscode";
import {
  DidChangeConfigurationNotification,
  LanguageClient,
  LanguageClientOptions,
  ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";
import { changedKeys, reactionTo, serverOptions } from "./config";
import { CursorEvent, CursorPlace, PREFETCH_METHOD, PrefetchScheduler } from "./prefetch";
import { findServer, ServerNotFound } from "./serverPath";
import { CompletionStats, ServerState, stateFromServerStats, statusText } from "./stats";

const SECTION = "infill";
const DOCUMENT_SCHEMES = ["file", "untitled"]; // the documents the server is sent (documentSelector)
const STATS_COMMAND = "infill.stats"; // the server's command: counters, model status, config
const OPEN_SETTING = "Open the infill.serverPath setting";

let client: LanguageClient | undefined;
let statusItem: vscode.StatusBarItem;
let output: vscode.LogOutputChannel;
let state: ServerState = "stopped";
let lastError = "";
let stopping = false;
let pollTimer: NodeJS.Timeout | undefined;
const REQUEST_FAILED = "last request failed";
const stats = new CompletionStats();
const prefetcher = new PrefetchScheduler({
  isOn: () => enabled() && settings().get<boolean>("prefetch", true) && client?.state === State.Running,
  versionOf: (uri) => openDocument(uri)?.version,
  send: sendPrefetch,
});

function settings(): vscode.WorkspaceConfiguration {
  return vscode.workspace.getConfiguration(SECTION);
}

function enabled(): boolean {
  return settings().get<boolean>("enable", true);
}

function openDocument(uri: string): vscode.TextDocument | undefined {
  return vscode.workspace.textDocuments.find((doc) => doc.uri.toString() === uri);
}

/** The active editor's cursor, for a document the server has; undefined for others (output, git, ...). */
function cursorOf(editor: vscode.TextEditor | undefined, kind?: number): CursorEvent | undefined {
  if (!editor || !DOCUMENT_SCHEMES.includes(editor.document.uri.scheme)) return undefined;
  const { active, isEmpty } = editor.selection;
  const { uri, version } = editor.document;
  const empty = isEmpty && editor.selections.length === 1; // several cursors count as a selection
  return { uri: uri.toString(), version, line: active.line, character: active.character, empty, kind };
}

function sendPrefetch(place: CursorPlace): void {
  const doc = openDocument(place.uri);
  if (!doc || !client) return;
  const c2p = client.code2ProtocolConverter;
  client
    .sendNotification(PREFETCH_METHOD, {
      textDocument: c2p.asTextDocumentIdentifier(doc),
      position: c2p.asPosition(new vscode.Position(place.line, place.character)),
    })
    .catch((err) => output.warn(`${PREFETCH_METHOD}: ${String(err)}`));
}

function watchCursor(): vscode.Disposable[] {
  return [
    vscode.window.onDidChangeTextEditorSelection((event) => {
      if (event.textEditor !== vscode.window.activeTextEditor) return;
      const cursor = cursorOf(event.textEditor, event.kind);
      if (cursor) prefetcher.onSelectionChanged(cursor);
    }),
    vscode.window.onDidChangeActiveTextEditor((editor) => {
      const cursor = cursorOf(editor);
      if (cursor) prefetcher.onEditorActivated(cursor);
      else prefetcher.cancel();
    }),
    vscode.workspace.onDidChangeTextDocument((event) => {
      if (event.contentChanges.length > 0) prefetcher.onTextChanged(event.document.uri.toString());
    }),
    vscode.workspace.onDidCloseTextDocument((doc) => prefetcher.onDocumentClosed(doc.uri.toString())),
    { dispose: () => prefetcher.cancel() },
  ];
}

function updateStatus(next?: ServerState, error?: string): void {
  if (next) state = next;
  if (error !== undefined) lastError = error;
  statusItem.text = statusText(state, enabled(), stats.lastLatencyMs);
  const lines = [`infill-ls: ${state}${enabled() ? "" : " (suggestions off)"}`];
  if (state === "error" && lastError) lines.push(lastError);
  lines.push(stats.summary(), "Click to toggle suggestions.");
  statusItem.tooltip = lines.join("\n");
  statusItem.backgroundColor =
    state === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
}

function serverCommand(): ServerOptions {
  const cfg = settings();
  const found = findServer({
    serverPath: cfg.get<string>("serverPath", ""),
    serverArgs: cfg.get<string[]>("serverArgs", []),
    workspaceFolders: (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath),
    env: process.env,
    platform: process.platform,
    exists: (file) => fs.existsSync(file),
    home: os.homedir(),
  });
  output.info(`starting ${found.command} ${found.args.join(" ")}`);
  return { command: found.command, args: found.args, transport: TransportKind.stdio };
}

function clientOptions(): LanguageClientOptions {
  return {
    documentSelector: DOCUMENT_SCHEMES.map((scheme) => ({ scheme })),
    outputChannel: output,
    initializationOptions: () => serverOptions(settings()),
    middleware: {
      async provideInlineCompletionItems(document, position, context, token, next) {
        if (!enabled()) return null;
        const started = Date.now();
        try {
          const result = await next(document, position, context, token);
          const items = Array.isArray(result) ? result : result?.items ?? [];
          if (!token.isCancellationRequested) stats.record(Date.now() - started, items.length);
          // A request that works again clears an error that a request caused.
          if (state === "error" && lastError.startsWith(REQUEST_FAILED)) updateStatus("ready", "");
          else updateStatus();
          return result;
        } catch (err) {
          if (token.isCancellationRequested) return null; // superseded by the next keystroke
          stats.recordError();
          updateStatus("error", `${REQUEST_FAILED}: ${String(err)}`);
          return null;
        }
      },
    },
  };
}

async function startClient(): Promise<void> {
  let server: ServerOptions;
  try {
    server = serverCommand();
  } catch (err) {
    const message = err instanceof ServerNotFound ? err.message : String(err);
    updateStatus("error", message);
    void vscode.window.showErrorMessage(`infill-ls: ${message}`, OPEN_SETTING).then((choice) => {
      if (choice === OPEN_SETTING) void vscode.commands.executeCommand("workbench.action.openSettings", "infill.serverPath");
    });
    return;
  }
  client = new LanguageClient("infill", "infill-ls", server, clientOptions());
  client.onDidChangeState((event) => {
    if (event.newState === State.Starting) updateStatus("starting");
    else if (event.newState === State.Running) watchModel();
    else if (event.newState === State.Stopped && !stopping) updateStatus("error", "the server stopped");
  });
  updateStatus("starting");
  try {
    await client.start();
  } catch (err) {
    updateStatus("error", `could not start: ${String(err)}`);
  }
}

function serverHasStats(): boolean {
  const commands = client?.initializeResult?.capabilities.executeCommandProvider?.commands ?? [];
  return commands.includes(STATS_COMMAND);
}

async function serverStats(): Promise<unknown> {
  return client!.sendRequest("workspace/executeCommand", { command: STATS_COMMAND });
}

/** Show "loading model" until the server says its model is ready (or failed). */
function watchModel(): void {
  if (pollTimer) clearTimeout(pollTimer);
  if (!client || !serverHasStats()) {
    updateStatus("ready");
    return;
  }
  const poll = async () => {
    pollTimer = undefined;
    if (!client || client.state !== State.Running) return;
    try {
      const { state: next, error } = stateFromServerStats(await serverStats());
      updateStatus(next, error ?? "");
      if (next === "loading") pollTimer = setTimeout(poll, 500);
    } catch (err) {
      updateStatus("error", `could not ask the server for its status: ${String(err)}`);
    }
  };
  updateStatus("loading");
  void poll();
}

async function stopClient(): Promise<void> {
  if (pollTimer) clearTimeout(pollTimer);
  if (!client) return;
  stopping = true;
  try {
    await client.stop(5000);
  } catch (err) {
    output.warn(`stopping the server: ${String(err)}`);
  } finally {
    stopping = false;
    client = undefined;
    updateStatus("stopped");
  }
}

async function restart(): Promise<void> {
  await stopClient();
  await startClient();
}

async function toggle(): Promise<void> {
  await settings().update("enable", !enabled(), vscode.ConfigurationTarget.Global);
}

async function showStats(): Promise<void> {
  const lines = [`Client: ${stats.summary()}`];
  if (client && client.state === State.Running && serverHasStats()) {
    try {
      lines.push(`Server: ${JSON.stringify(await serverStats(), null, 2)}`);
    } catch (err) {
      lines.push(`Server stats unavailable: ${String(err)}`);
    }
  }
  output.info(lines.join("\n"));
  output.show(true);
  void vscode.window.showInformationMessage(`infill-ls: ${stats.summary()} (details in the output panel)`);
}

async function onConfigurationChanged(event: vscode.ConfigurationChangeEvent): Promise<void> {
  const keys = changedKeys((section) => event.affectsConfiguration(section));
  switch (reactionTo(keys)) {
    case "restart":
      await restart();
      return;
    case "resend":
      if (client && client.state === State.Running) {
        await client.sendNotification(DidChangeConfigurationNotification.type, {
          settings: { [SECTION]: serverOptions(settings()) },
        });
        watchModel(); // a new model, device or dtype reloads it
      }
      updateStatus();
      return;
    case "toggle":
      updateStatus();
      return;
    case "none":
      return;
  }
}

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  output = vscode.window.createOutputChannel("infill-ls", { log: true });
  statusItem = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
  statusItem.command = "infill.toggle";
  statusItem.show();
  context.subscriptions.push(
    output,
    statusItem,
    vscode.commands.registerCommand("infill.restart", restart),
    vscode.commands.registerCommand("infill.toggle", toggle),
    vscode.commands.registerCommand("infill.showStats", showStats),
    vscode.workspace.onDidChangeConfiguration(onConfigurationChanged),
    ...watchCursor(),
  );
  await startClient();
}

export async function deactivate(): Promise<void> {
  await stopClient();
}
