/**
 * Finding the `infill-ls` executable. Pure apart from the injected `exists`,
 * so node can test it without VS Code.
 *
 * Order: the `infill.serverPath` setting; `infill-ls` on PATH; the active
 * virtual environment ($VIRTUAL_ENV); `.venv/` or `venv/` in a workspace folder;
 * the user's own install places (`~/.local/bin`, where `pip install --user` and
 * pipx put it, pipx's own venv, `$PIPX_BIN_DIR`). The extension host's PATH is
 * often not the PATH of the user's shell (VS Code started from a desktop menu, a
 * remote or web host), hence the fixed places after it.
 * A setting that names a Python interpreter runs `python -m lsp_server.cli serve`.
 */
import * as path from "path";

export interface ServerCommand {
  command: string;
  args: string[];
}

export interface FindServerInput {
  serverPath: string;
  serverArgs: string[];
  workspaceFolders: string[];
  env: Record<string, string | undefined>;
  platform: string;
  exists: (file: string) => boolean;
  /** The user's home folder ("" when unknown). */
  home?: string;
}

/** What a new user runs to get the server: the README's set-up command, in a checkout. */
export const INSTALL_HINT =
  "python3 -m venv .venv && .venv/bin/pip install torch==2.13.0 -e /path/to/infill-ls";

export class ServerNotFound extends Error {}

/** Path functions for the target platform (so the logic is testable for Windows on Linux). */
function pathsFor(platform: string): typeof path.posix {
  return platform === "win32" ? path.win32 : path.posix;
}

function executableNames(base: string, platform: string): string[] {
  return platform === "win32" ? [`${base}.exe`, `${base}.cmd`, base] : [base];
}

function venvBin(venv: string, platform: string): string {
  return pathsFor(platform).join(venv, platform === "win32" ? "Scripts" : "bin");
}

function commandFor(executable: string, extraArgs: string[], platform: string): ServerCommand {
  const base = pathsFor(platform).basename(executable).toLowerCase();
  if (/^python(\d+(\.\d+)?)?(\.exe)?$/.test(base)) {
    return { command: executable, args: ["-m", "lsp_server.cli", "serve", ...extraArgs] };
  }
  return { command: executable, args: ["serve", ...extraArgs] };
}

function searchPath(name: string, input: FindServerInput): string | undefined {
  const pathVar = input.env.PATH ?? input.env.Path ?? "";
  const sep = input.platform === "win32" ? ";" : ":";
  for (const dir of pathVar.split(sep)) {
    if (!dir) continue;
    for (const exe of executableNames(name, input.platform)) {
      const candidate = pathsFor(input.platform).join(dir, exe);
      if (input.exists(candidate)) return candidate;
    }
  }
  return undefined;
}

export function findServer(input: FindServerInput): ServerCommand {
  const p = pathsFor(input.platform);
  const configured = input.serverPath.trim();
  if (configured) {
    const hasDir = configured.includes("/") || configured.includes("\\");
    if (!hasDir) {
      const onPath = searchPath(configured, input);
      if (!onPath) {
        throw new ServerNotFound(`infill.serverPath is "${configured}", which is not on PATH`);
      }
      return commandFor(onPath, input.serverArgs, input.platform);
    }
    const resolved = p.isAbsolute(configured) ? configured : p.resolve(input.workspaceFolders[0] ?? ".", configured);
    if (!input.exists(resolved)) {
      throw new ServerNotFound(`infill.serverPath is "${configured}", but ${resolved} does not exist`);
    }
    return commandFor(resolved, input.serverArgs, input.platform);
  }

  const onPath = searchPath("infill-ls", input);
  if (onPath) return commandFor(onPath, input.serverArgs, input.platform);

  for (const dir of fallbackDirs(input)) {
    for (const exe of executableNames("infill-ls", input.platform)) {
      const candidate = p.join(dir, exe);
      if (input.exists(candidate)) return commandFor(candidate, input.serverArgs, input.platform);
    }
  }
  throw new ServerNotFound(
    "infill-ls was not found on the extension host's PATH, in $VIRTUAL_ENV, in a .venv or venv of the " +
      `workspace, or in ~/.local/bin or pipx's folders. Install it (\`${INSTALL_HINT}\`, see the README) ` +
      "and set infill.serverPath to the infill-ls it made (e.g. /path/to/infill-ls/.venv/bin/infill-ls)",
  );
}

/** The bin folders searched after PATH, in order. */
function fallbackDirs(input: FindServerInput): string[] {
  const p = pathsFor(input.platform);
  const venvs = [
    ...(input.env.VIRTUAL_ENV ? [input.env.VIRTUAL_ENV] : []),
    ...input.workspaceFolders.flatMap((f) => [p.join(f, ".venv"), p.join(f, "venv")]),
  ];
  const dirs = venvs.map((v) => venvBin(v, input.platform));
  if (input.env.PIPX_BIN_DIR) dirs.push(input.env.PIPX_BIN_DIR);
  const home = input.home ?? input.env.HOME ?? input.env.USERPROFILE ?? "";
  if (home) {
    const pipxHome = input.env.PIPX_HOME ?? p.join(home, ".local", "pipx");
    dirs.push(p.join(home, ".local", "bin"), venvBin(p.join(pipxHome, "venvs", "infill-ls"), input.platform));
  }
  return dirs;
}
