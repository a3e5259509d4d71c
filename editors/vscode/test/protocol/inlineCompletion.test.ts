/**
 * The real server, spoken to over the protocol stack VS Code's client uses
 * (vscode-jsonrpc + vscode-languageserver-protocol), with the capabilities and
 * initializationOptions the extension sends: open a document, type, get ghost text; tell it
 * where the cursor came to rest (infill/prefetch).
 *
 * Needs INFILL_SERVER_CMD (JSON array: the command that runs `infill-ls serve`) and
 * INFILL_TEST_MODEL (a checkpoint folder); tests/editors/test_vscode_protocol.py sets both.
 */
import * as assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { after, before, test } from "node:test";
import {
  CancellationTokenSource,
  createProtocolConnection,
  DidChangeConfigurationNotification,
  DidChangeTextDocumentNotification,
  DidOpenTextDocumentNotification,
  ExecuteCommandRequest,
  ExitNotification,
  InitializedNotification,
  InitializeRequest,
  InitializeResult,
  InlineCompletionItem,
  InlineCompletionList,
  InlineCompletionRequest,
  InlineCompletionTriggerKind,
  LogMessageNotification,
  ProtocolConnection,
  ShowMessageNotification,
  ShutdownRequest,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-languageserver-protocol/node";
import { PREFETCH_METHOD } from "../../src/prefetch";
import { defaultInitializationOptions, vscodeClientCapabilities } from "./vscodeClient";

const serverCmd: string[] | undefined = process.env.INFILL_SERVER_CMD && JSON.parse(process.env.INFILL_SERVER_CMD);
const model = process.env.INFILL_TEST_MODEL;
const skip = !serverCmd || !model ? "INFILL_SERVER_CMD and INFILL_TEST_MODEL not set (run through pytest)" : false;

const URI = "file:///tmp/infill-protocol-test/add.py";
let server: ChildProcess;
let connection: ProtocolConnection;
let initializeResult: InitializeResult;
let settings: Record<string, unknown>;
const shownMessages: { type: number; message: string }[] = [];
const stderr: string[] = [];

function items(result: InlineCompletionList | InlineCompletionItem[] | null): InlineCompletionItem[] {
  if (!result) return [];
  return Array.isArray(result) ? result : result.items;
}

function insertText(item: InlineCompletionItem): string {
  return typeof item.insertText === "string" ? item.insertText : item.insertText.value;
}

function withTimeout<T>(promise: Thenable<T>, ms: number, what: string): Promise<T> {
  return Promise.race([
    Promise.resolve(promise),
    new Promise<T>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms).unref()),
  ]);
}

before(async () => {
  if (skip) return;
  server = spawn(serverCmd![0], serverCmd!.slice(1), { stdio: ["pipe", "pipe", "pipe"] });
  server.stderr!.on("data", (chunk) => stderr.push(String(chunk)));
  connection = createProtocolConnection(new StreamMessageReader(server.stdout!), new StreamMessageWriter(server.stdin!));
  connection.onNotification(ShowMessageNotification.type, (p) => {
    shownMessages.push(p);
  });
  connection.onNotification(LogMessageNotification.type, () => undefined);
  // What VS Code answers to the server's own requests.
  connection.onRequest("workspace/configuration", (p: { items: { section?: string }[] }) =>
    p.items.map((item) => (item.section === "infill" || item.section === undefined ? settings : null)),
  );
  connection.onRequest("window/workDoneProgress/create", () => null);
  connection.onRequest("client/registerCapability", () => null);
  connection.onRequest("client/unregisterCapability", () => null);
  connection.listen();

  // Short suggestions keep the test fast on a CPU; everything else is the extension's defaults.
  settings = { ...defaultInitializationOptions(), model, device: "cpu", maxNewTokensSingleLine: 16, maxNewTokensMultiLine: 16 };
  initializeResult = await withTimeout(
    connection.sendRequest(InitializeRequest.type, {
      processId: process.pid,
      clientInfo: { name: "Visual Studio Code", version: "1.95.0" },
      rootUri: "file:///tmp/infill-protocol-test",
      workspaceFolders: [{ uri: "file:///tmp/infill-protocol-test", name: "infill-protocol-test" }],
      capabilities: vscodeClientCapabilities(),
      initializationOptions: settings,
    }),
    60_000,
    "initialize",
  );
  await connection.sendNotification(InitializedNotification.type, {});
  await waitForModel();
});

function serverStats(): Promise<any> {
  return withTimeout(connection.sendRequest(ExecuteCommandRequest.type, { command: "infill.stats" }), 10_000, "infill.stats");
}

/** The model loads in the background after `initialized`; ask the server's stats until it is ready. */
async function waitForModel(limitMs = 60_000) {
  const commands = initializeResult.capabilities.executeCommandProvider?.commands ?? [];
  assert.ok(commands.includes("infill.stats"), `server commands: ${commands}`);
  const deadline = Date.now() + limitMs;
  for (;;) {
    const stats: any = await withTimeout(
      connection.sendRequest(ExecuteCommandRequest.type, { command: "infill.stats" }), 10_000, "infill.stats");
    if (stats?.model?.status === "ready") return;
    if (stats?.model?.status === "failed") throw new Error(`model failed to load: ${stats.model.error}`);
    if (Date.now() > deadline) throw new Error(`model not ready after ${limitMs} ms: ${JSON.stringify(stats?.model)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

after(async () => {
  if (skip || !connection) return;
  try {
    await withTimeout(connection.sendRequest(ShutdownRequest.type), 10_000, "shutdown");
    await connection.sendNotification(ExitNotification.type);
  } finally {
    connection.dispose();
    const exited = new Promise((resolve) => server.once("exit", resolve));
    const timer = setTimeout(() => server.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timer);
  }
});

/** Type `text` character by character at `line`:`character`, sending what VS Code sends per key. */
async function typeAt(version: { n: number }, line: number, character: number, text: string) {
  let pending: CancellationTokenSource | undefined;
  let last: Promise<InlineCompletionList | InlineCompletionItem[] | null> | undefined;
  for (const ch of text) {
    pending?.cancel(); // VS Code cancels the previous inline request on the next key
    version.n += 1;
    await connection.sendNotification(DidChangeTextDocumentNotification.type, {
      textDocument: { uri: URI, version: version.n },
      contentChanges: [{ range: { start: { line, character }, end: { line, character } }, rangeLength: 0, text: ch }],
    });
    character += ch.length;
    pending = new CancellationTokenSource();
    last = connection.sendRequest(
      InlineCompletionRequest.type,
      {
        textDocument: { uri: URI },
        position: { line, character },
        context: { triggerKind: InlineCompletionTriggerKind.Automatic },
      },
      pending.token,
    );
    last.catch(() => undefined); // cancelled ones may fail with RequestCancelled
  }
  return { result: await withTimeout(last!, 30_000, "inline completion"), character };
}

test("the server offers inline completion in the position encoding VS Code speaks", { skip }, () => {
  const caps = initializeResult.capabilities;
  assert.ok(caps.inlineCompletionProvider, "inlineCompletionProvider missing from the server's capabilities");
  assert.ok(caps.positionEncoding === undefined || caps.positionEncoding === "utf-16", `got ${caps.positionEncoding}`);
  assert.ok(caps.textDocumentSync, "no textDocumentSync");
});

test("typing in an open document gets a ghost-text suggestion at the cursor", { skip }, async () => {
  await connection.sendNotification(DidOpenTextDocumentNotification.type, {
    textDocument: { uri: URI, languageId: "python", version: 1, text: "import os\n\n\n" },
  });
  const version = { n: 1 };
  const { result, character } = await typeAt(version, 2, 0, "def add(a, b):");
  const got = items(result);
  assert.ok(got.length >= 1, `no suggestion; server stats: ${JSON.stringify(await serverStats())}`);
  for (const item of got) {
    assert.ok(insertText(item).length > 0, "empty insertText");
    if (item.range) {
      assert.equal(item.range.start.line, 2, "range must be on the cursor's line");
      assert.equal(item.range.end.line, 2, "range must be on the cursor's line");
      assert.ok(item.range.start.character <= character && item.range.end.character >= character);
    }
  }
  assert.deepEqual(shownMessages.filter((m) => m.type === 1), [], "the server showed an error");
});

test("an explicit request (Invoked) also gets suggestions", { skip }, async () => {
  const result = await withTimeout(
    connection.sendRequest(InlineCompletionRequest.type, {
      textDocument: { uri: URI },
      position: { line: 2, character: "def add(a, b):".length },
      context: { triggerKind: InlineCompletionTriggerKind.Invoked },
    }),
    30_000,
    "invoked inline completion",
  );
  const got = items(result);
  assert.ok(got.length >= 1 && got.length <= 3, `expected 1..numCandidates(3) items, got ${got.length}`);
});

test("changed settings reach the server: a language left out gets no suggestion, then again one", { skip }, async () => {
  const request = () =>
    withTimeout(
      connection.sendRequest(InlineCompletionRequest.type, {
        textDocument: { uri: URI },
        position: { line: 2, character: "def add(a, b):".length },
        context: { triggerKind: InlineCompletionTriggerKind.Automatic },
      }),
      30_000,
      "inline completion after a settings change",
    );
  settings = { ...settings, languages: ["rust"] };
  await connection.sendNotification(DidChangeConfigurationNotification.type, { settings: { infill: settings } });
  assert.equal(items(await request()).length, 0, "python is no longer enabled, yet a suggestion came");
  settings = { ...settings, languages: ["*"] };
  await connection.sendNotification(DidChangeConfigurationNotification.type, { settings: { infill: settings } });
  assert.ok(items(await request()).length >= 1, "suggestions did not come back after re-enabling python");
});

test("infill/prefetch, sent as the extension sends it, is received; with prefetch off it is ignored", { skip }, async () => {
  const received = async () => (await serverStats()).prefetch.received as number;
  const prefetch = () =>
    connection.sendNotification(PREFETCH_METHOD, { textDocument: { uri: URI }, position: { line: 0, character: 3 } });
  const before = await received();
  await prefetch();
  const deadline = Date.now() + 5_000;
  while ((await received()) === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(await received(), before + 1);

  settings = { ...settings, prefetch: false };
  await connection.sendNotification(DidChangeConfigurationNotification.type, { settings: { infill: settings } });
  await prefetch();
  await new Promise((r) => setTimeout(r, 300));
  settings = { ...settings, prefetch: true };
  await connection.sendNotification(DidChangeConfigurationNotification.type, { settings: { infill: settings } });
  assert.equal(await received(), before + 1, "the server counted a prefetch with prefetch off");
});
