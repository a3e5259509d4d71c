/**
 * The compiled extension with the real vscode-languageclient 11 and the real server; only
 * VS Code is replaced by the recording stand-in of ../fakeVscode. This is what a user sees:
 * status bar, ghost text from the inline completion provider, toggle, stats, errors, and
 * infill/prefetch where the cursor comes to rest.
 *
 * Needs INFILL_TEST_PYTHON (an interpreter with infill-ls installed, used as infill.serverPath)
 * and INFILL_TEST_MODEL; tests/editors/test_vscode.py sets both.
 */
import * as assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CancellationTokenSource } from "vscode-languageserver-protocol";
import { PREFETCH_DELAY_MS } from "../../src/prefetch";
import { FakeDocument, FakeEditor, FakeVscode, installFakeVscode, Position, unimplemented } from "../fakeVscode";

const python = process.env.INFILL_TEST_PYTHON;
const model = process.env.INFILL_TEST_MODEL;
const skip = !python || !model ? "INFILL_TEST_PYTHON and INFILL_TEST_MODEL not set (run through pytest)" : false;

let fake: FakeVscode;
let extension: typeof import("../../src/extension");
const doc = new FakeDocument("/tmp/infill-extension-test/add.py", "python", "import os\n\n\n");
const token = { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) };
const AUTOMATIC = { triggerKind: 1, selectedCompletionInfo: undefined }; // vscode.InlineCompletionTriggerKind
const MOUSE = 2; // vscode.TextEditorSelectionChangeKind
const PAUSE_MS = 3 * PREFETCH_DELAY_MS; // long enough for a prefetch to be sent and counted

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(what: string, condition: () => boolean, limitMs = 60_000) {
  const deadline = Date.now() + limitMs;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error(`${what}: not after ${limitMs} ms; status ${JSON.stringify(fake.statusHistory)}; ` +
        `messages ${JSON.stringify(fake.messages)}; output:\n${fake.output.slice(-20).join("\n")}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function itemsOf(result: any): any[] {
  if (!result) return [];
  return Array.isArray(result) ? result : result.items;
}

/**
 * Type text at the end of `line` as VS Code does: a change event per key (and the cursor moved
 * by it, kind Keyboard, when an editor shows the document), each followed by an inline
 * completion request that the next key cancels; the last one is answered.
 */
async function type(line: number, text: string) {
  const provider = fake.inlineProviders[0];
  let previous: CancellationTokenSource | undefined;
  let last: Promise<unknown> | undefined;
  for (const ch of text) {
    previous?.cancel();
    const lineText = doc.getText().split("\n")[line];
    const event = doc.insert(new Position(line, lineText.length), ch);
    for (const listener of fake.changeListeners) listener(event);
    if (fake.module.window.activeTextEditor?.document === doc) fake.moveCursor(line, lineText.length + 1, 1);
    previous = new CancellationTokenSource();
    last = Promise.resolve(
      provider.provideInlineCompletionItems(doc, new Position(line, lineText.length + 1), AUTOMATIC, previous.token),
    );
    last.catch(() => undefined);
  }
  return await last;
}

before(async () => {
  if (skip) return;
  fake = installFakeVscode({
    serverPath: python, model, device: "cpu", enable: true,
    maxNewTokensSingleLine: 16, maxNewTokensMultiLine: 16,
  }, [doc]);
  extension = require("../../src/extension");
  await extension.activate({ subscriptions: [] } as any);
});

after(async () => {
  if (skip) return;
  await extension.deactivate();
  fake.uninstall();
  assert.deepEqual(unimplemented, [], "deactivating read members of vscode that the stand-in does not have");
});

test("activation starts the server; the status bar shows loading, then ready", { skip }, async () => {
  for (const id of ["infill.restart", "infill.toggle", "infill.showStats"]) assert.ok(fake.commands.has(id), id);
  await until("status ready", () => /\$\(check\) infill/.test(fake.statusItem.text ?? ""));
  const loading = fake.statusHistory.findIndex((t) => /loading/.test(t));
  const ready = fake.statusHistory.findIndex((t) => /check/.test(t));
  assert.ok(loading >= 0 && loading < ready, `status went ${JSON.stringify(fake.statusHistory)}`);
  assert.equal(fake.inlineProviders.length, 1, "vscode-languageclient registered no inline completion provider");
});

test("typing gets a suggestion through the registered provider; the status bar shows its latency", { skip }, async () => {
  const result = await type(2, "def add(a, b):");
  const items = itemsOf(result);
  assert.ok(items.length >= 1, `no suggestion; output:\n${fake.output.slice(-10).join("\n")}`);
  const first = items[0];
  const text = typeof first.insertText === "string" ? first.insertText : first.insertText.value;
  assert.ok(text.length > 0);
  assert.equal(first.range.start.line, 2);
  assert.match(fake.statusItem.text ?? "", /infill \d+ ms$/);
});

test("toggle turns suggestions off (no request) and on again", { skip }, async () => {
  await fake.commands.get("infill.toggle")!();
  assert.equal(fake.settings.enable, false);
  assert.match(fake.statusItem.text ?? "", /off/);
  const provider = fake.inlineProviders[0];
  const off = await provider.provideInlineCompletionItems(doc, new Position(2, 14), AUTOMATIC, token);
  assert.equal(itemsOf(off).length, 0);
  await fake.commands.get("infill.toggle")!();
  assert.equal(fake.settings.enable, true);
  const on = await provider.provideInlineCompletionItems(doc, new Position(2, 14), AUTOMATIC, token);
  assert.ok(itemsOf(on).length >= 1);
});

test("show stats puts the client's and the server's figures in the output", { skip }, async () => {
  await fake.commands.get("infill.showStats")!();
  const text = fake.output.join("\n");
  assert.match(text, /Client: requests \d+/);
  assert.match(text, /"status": "ready"/);
  assert.ok(fake.messages.some((m) => /infill-ls: requests/.test(m.text)));
});

test("a model that cannot load shows the server's error; fixing the setting recovers", { skip }, async () => {
  await fake.changeSettings({ model: "/nonexistent/model-folder" });
  await until("status error", () => /error/.test(fake.statusItem.text ?? ""));
  assert.ok(fake.messages.some((m) => m.kind === "showErrorMessage" && m.text.includes("/nonexistent/model-folder")),
    JSON.stringify(fake.messages));
  assert.match(fake.statusItem.tooltip ?? "", /nonexistent/);
  await fake.changeSettings({ model });
  await until("status ready again", () => /\$\(check\)/.test(fake.statusItem.text ?? ""));
});

test("restart starts a fresh server that comes back ready and answers", { skip }, async () => {
  const history = fake.statusHistory.length;
  await fake.commands.get("infill.restart")!();
  await until("status ready after restart", () =>
    fake.statusHistory.slice(history).some((t) => /loading/.test(t)) && /\$\(check\)/.test(fake.statusItem.text ?? ""));
  assert.ok(fake.statusHistory.slice(history).some((t) => /circle-slash/.test(t)), "no stopped state in between");
  assert.equal(fake.inlineProviders.length >= 1, true);
  const provider = fake.inlineProviders[fake.inlineProviders.length - 1];
  const result = await provider.provideInlineCompletionItems(doc, new Position(2, 14), AUTOMATIC, token);
  assert.ok(itemsOf(result).length >= 1, "the restarted server gave no suggestion");
});

/** The server's count of infill/prefetch notifications, from what "Show Stats" writes. */
async function serverPrefetches(): Promise<number> {
  const before = fake.output.length;
  await fake.commands.get("infill.showStats")!();
  const text = fake.output.slice(before).join("\n");
  return JSON.parse(text.slice(text.indexOf("Server: ") + "Server: ".length)).prefetch.received;
}

test("the cursor coming to rest after a switch or a click sends infill/prefetch; typing does not", { skip }, async () => {
  const start = await serverPrefetches();
  fake.activateEditor(new FakeEditor(doc, 0, 0)); // switching to the file: one
  await sleep(PAUSE_MS);
  assert.equal(await serverPrefetches(), start + 1, "switching to an editor");
  fake.moveCursor(1, 0, MOUSE); // a click on the empty line 1: one
  fake.moveCursor(1, 0, MOUSE); // the same place again: not twice
  await sleep(PAUSE_MS);
  assert.equal(await serverPrefetches(), start + 2, "a click");
  await type(1, "x = 1"); // typing there, the cursor moving with each key: none
  await sleep(PAUSE_MS);
  assert.equal(await serverPrefetches(), start + 2, "typing");
  await fake.changeSettings({ prefetch: false });
  fake.moveCursor(0, 3, MOUSE);
  await sleep(PAUSE_MS);
  await fake.changeSettings({ prefetch: true });
  fake.moveCursor(0, 5, MOUSE);
  await sleep(PAUSE_MS);
  assert.equal(await serverPrefetches(), start + 3, "off: none; on again: one");
});

// Last: node:test runs a file's tests in order.
test("the extension and the client library use only what the stand-in implements", { skip }, () => {
  assert.deepEqual(unimplemented, [], "members of vscode that the stand-in does not have were read");
});
