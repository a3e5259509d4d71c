import * as assert from "node:assert/strict";
import * as path from "node:path";
import { test } from "node:test";
import { FindServerInput, INSTALL_HINT, ServerNotFound, findServer } from "../../src/serverPath";

function input(files: string[], overrides: Partial<FindServerInput> = {}): FindServerInput {
  const present = new Set(files.map((f) => path.normalize(f)));
  return {
    serverPath: "",
    serverArgs: [],
    workspaceFolders: ["/ws"],
    env: { PATH: "/usr/local/bin:/usr/bin" },
    platform: "linux",
    exists: (file) => present.has(path.normalize(file)),
    ...overrides,
  };
}

test("infill-ls on PATH is run with 'serve' and the extra arguments", () => {
  const found = findServer(input(["/usr/bin/infill-ls"], { serverArgs: ["--log-level", "debug"] }));
  assert.deepEqual(found, { command: "/usr/bin/infill-ls", args: ["serve", "--log-level", "debug"] });
});

test("the first PATH entry wins over later ones and over the workspace venv", () => {
  const found = findServer(input(["/usr/local/bin/infill-ls", "/usr/bin/infill-ls", "/ws/.venv/bin/infill-ls"]));
  assert.equal(found.command, "/usr/local/bin/infill-ls");
});

test("without it on PATH, the workspace .venv is used", () => {
  assert.equal(findServer(input(["/ws/.venv/bin/infill-ls"])).command, "/ws/.venv/bin/infill-ls");
  assert.equal(findServer(input(["/ws/venv/bin/infill-ls"])).command, "/ws/venv/bin/infill-ls");
});

test("an active VIRTUAL_ENV is searched before workspace venvs", () => {
  const found = findServer(
    input(["/envs/a/bin/infill-ls", "/ws/.venv/bin/infill-ls"], { env: { PATH: "", VIRTUAL_ENV: "/envs/a" } }),
  );
  assert.equal(found.command, "/envs/a/bin/infill-ls");
});

test("Windows looks for infill-ls.exe in Scripts", () => {
  const found = findServer(
    input(["C:\\ws\\.venv\\Scripts\\infill-ls.exe"], { platform: "win32", env: {}, workspaceFolders: ["C:\\ws"] }),
  );
  assert.match(found.command, /infill-ls\.exe$/);
});

test("a configured path wins and a relative one is resolved against the workspace", () => {
  const found = findServer(input(["/ws/tools/infill-ls", "/usr/bin/infill-ls"], { serverPath: "tools/infill-ls" }));
  assert.equal(found.command, path.resolve("/ws", "tools/infill-ls"));
});

test("a configured Python interpreter runs the server module", () => {
  const found = findServer(input(["/opt/py/bin/python3"], { serverPath: "/opt/py/bin/python3" }));
  assert.deepEqual(found.args, ["-m", "lsp_server.cli", "serve"]);
});

test("a configured path that does not exist is an error naming it", () => {
  assert.throws(
    () => findServer(input(["/usr/bin/infill-ls"], { serverPath: "/nowhere/infill-ls" })),
    (err: Error) => err instanceof ServerNotFound && err.message.includes("/nowhere/infill-ls"),
  );
});

test("nothing found is an error telling the user what to set", () => {
  assert.throws(() => findServer(input([])), /infill\.serverPath/);
});

test("the user's ~/.local/bin and pipx's venv are searched after PATH and the venvs", () => {
  const home = { env: { PATH: "/usr/bin" }, home: "/home/u" };
  assert.equal(findServer(input(["/home/u/.local/bin/infill-ls"], home)).command, "/home/u/.local/bin/infill-ls");
  assert.equal(
    findServer(input(["/home/u/.local/pipx/venvs/infill-ls/bin/infill-ls"], home)).command,
    "/home/u/.local/pipx/venvs/infill-ls/bin/infill-ls",
  );
  assert.equal(
    findServer(input(["/opt/pipx/bin/infill-ls"], { env: { PATH: "", PIPX_BIN_DIR: "/opt/pipx/bin" } })).command,
    "/opt/pipx/bin/infill-ls",
  );
  // a workspace venv still wins over the user's own installs
  assert.equal(
    findServer(input(["/home/u/.local/bin/infill-ls", "/ws/.venv/bin/infill-ls"], home)).command,
    "/ws/.venv/bin/infill-ls",
  );
});

test("nothing found names every place searched and the README's install command, not a PyPI package", () => {
  assert.throws(
    () => findServer(input([], { home: "/home/u" })),
    (err: Error) =>
      err instanceof ServerNotFound &&
      err.message.includes(INSTALL_HINT) &&
      err.message.includes("~/.local/bin") &&
      err.message.includes("infill.serverPath") &&
      !err.message.includes("pip install infill-ls"),
  );
});
