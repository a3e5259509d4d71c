import * as assert from "node:assert/strict";
import { test } from "node:test";
import { installFakeVscode, unimplemented } from "../fakeVscode";

test("a server path that does not exist shows an error naming it and an error status", async () => {
  const fake = installFakeVscode({ serverPath: "/nonexistent/bin/infill-ls", enable: true }, []);
  try {
    const extension = require("../../src/extension");
    await extension.activate({ subscriptions: [] });
    assert.match(fake.statusItem.text ?? "", /error/);
    assert.ok(
      fake.messages.some((m) => m.kind === "showErrorMessage" && m.text.includes("/nonexistent/bin/infill-ls")),
      JSON.stringify(fake.messages),
    );
    assert.ok(fake.commands.has("infill.restart"), "commands are registered even without a server");
    await extension.deactivate();
    assert.deepEqual(unimplemented, [], "members of vscode that the stand-in does not have were read");
  } finally {
    fake.uninstall();
  }
});
