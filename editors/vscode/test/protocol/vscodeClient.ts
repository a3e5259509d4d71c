/**
 * What VS Code's client sends, without VS Code: vscode-languageclient 11 is loaded with a
 * stand-in `vscode` module just far enough to construct a LanguageClient and ask it for the
 * client capabilities it would send in `initialize`.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import type { ClientCapabilities } from "vscode-languageserver-protocol";
import { serverOptions } from "../../src/config";
import { installFakeVscode, unimplemented } from "../fakeVscode";

export function vscodeClientCapabilities(): ClientCapabilities {
  const fake = installFakeVscode({}, []);
  try {
    const { LanguageClient } = require("vscode-languageclient/node");
    const client = new LanguageClient("infill", "infill-ls", { command: "infill-ls" }, {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
    });
    const capabilities = client.computeClientCapabilities();
    if (unimplemented.length) throw new Error(`vscode-languageclient used ${unimplemented.join(", ")}`);
    return capabilities;
  } finally {
    fake.uninstall();
  }
}

/** The initializationOptions the extension sends when every setting has its default value. */
export function defaultInitializationOptions(): Record<string, unknown> {
  const manifest = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "..", "..", "package.json"), "utf8"));
  const props: Record<string, { default?: unknown }> = manifest.contributes.configuration.properties;
  const defaults = new Map(Object.entries(props).map(([k, v]) => [k.replace(/^infill\./, ""), v.default]));
  return serverOptions({ get: <T>(key: string) => defaults.get(key) as T | undefined });
}
