/**
 * Finding the `infill-ls` executable. Pure apart from the injected `exists`,
 * so node can test it without VS Code.
 *
 * Order: the `infill.serverPath` setting; `infill-ls` on PATH; the active
 * virtual environment ($VIRTUAL_ENV); `.venv/` or `venv/` in a workspace folder.
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
}

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

  const venvs = [
    ...(input.env.VIRTUAL_ENV ? [input.env.VIRTUAL_ENV] : []),
    ...input.workspaceFolders.flatMap((f) => [p.join(f, ".venv"), p.join(f, "venv")]),
  ];
  for (const venv of venvs) {
    for (const exe of executableNames("infill-ls", input.platform)) {
      const candidate = p.join(venvBin(venv, input.platform), exe);
      if (input.exists(candidate)) return commandFor(candidate, input.serverArgs, input.platform);
    }
  }
  throw new ServerNotFound(
    "infill-ls was not found on PATH or in a .venv of the workspace; " +
      "install it (pip install infill-ls) or set infill.serverPath",
  );
}
