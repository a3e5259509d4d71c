import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { CLIENT_ONLY_KEYS, SERVER_OPTION_KEYS, changedKeys, reactionTo, serverOptions } from "../../src/config";

const manifest = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "..", "..", "package.json"), "utf8"),
);
const properties: Record<string, { default?: unknown }> = manifest.contributes.configuration.properties;

function reader(values: Record<string, unknown>) {
  return { get: <T>(key: string) => values[key] as T | undefined };
}

test("every contributed setting is either sent to the server or used by the extension", () => {
  const contributed = Object.keys(properties).map((k) => k.replace(/^infill\./, "")).sort();
  const known = [...SERVER_OPTION_KEYS, ...CLIENT_ONLY_KEYS].sort();
  assert.deepEqual(contributed, known);
});

test("default settings give the server every option except an empty model", () => {
  const defaults = Object.fromEntries(
    Object.entries(properties).map(([k, v]) => [k.replace(/^infill\./, ""), v.default]),
  );
  const options = serverOptions(reader(defaults));
  assert.equal("model" in options, false, "empty model must be left out so the server uses its shipped one");
  assert.equal(options.maxNewTokensSingleLine, 32);
  assert.equal(options.temperature, 0);
  for (const key of CLIENT_ONLY_KEYS) assert.equal(key in options, false, `${key} is client-only`);
});

test("set values are sent with their camelCase names and unset ones left out", () => {
  const options = serverOptions(
    reader({ model: "/models/tiny", device: "cpu", maxNewTokensSingleLine: 16, temperature: null, enable: false }),
  );
  assert.deepEqual(options, { model: "/models/tiny", device: "cpu", maxNewTokensSingleLine: 16 });
});

test("changing the server path restarts, changing an option resends, enable only toggles", () => {
  const affects = (changed: string[]) => (section: string) => changed.includes(section);
  assert.equal(reactionTo(changedKeys(affects(["infill.serverPath"]))), "restart");
  assert.equal(reactionTo(changedKeys(affects(["infill.serverArgs", "infill.model"]))), "restart");
  assert.equal(reactionTo(changedKeys(affects(["infill.maxNewTokensMultiLine"]))), "resend");
  assert.equal(reactionTo(changedKeys(affects(["infill.enable"]))), "toggle");
  assert.equal(reactionTo(changedKeys(affects(["editor.fontSize"]))), "none");
});
