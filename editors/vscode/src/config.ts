/**
 * Settings -> server options. Pure (no `vscode` import) so node can test it.
 *
 * The server's options are the `infill.*` settings minus the ones only the
 * extension reads (CLIENT_ONLY_KEYS). They travel as `initializationOptions`
 * at start and as `workspace/didChangeConfiguration {settings: {infill: ...}}`
 * when the user changes them.
 */

/** Setting keys (under `infill.`) passed to the server, camelCase as on the wire. */
export const SERVER_OPTION_KEYS = [
  "model",
  "device",
  "dtype",
  "prefillDtype",
  "maxNewTokensSingleLine",
  "maxNewTokensMultiLine",
  "temperature",
  "topP",
  "numCandidates",
  "debounceMs",
  "rateLimit",
  "contextTokens",
  "suffixFraction",
  "kvBudgetMb",
  "requestTimeoutMs",
  "prefetch",
  "languages",
  "logLevel",
  "logFile",
  "backend",
  "endpoint",
  "servedModel",
  "apiKeyEnv",
  "caBundle",
  "fimFormat",
] as const;

/** Setting keys the extension itself uses and never sends. */
export const CLIENT_ONLY_KEYS = ["enable", "serverPath", "serverArgs"] as const;

/** Restarting the server is needed when one of these changes. */
export const RESTART_KEYS = ["serverPath", "serverArgs"] as const;

export interface ConfigReader {
  get<T>(key: string): T | undefined;
}

/**
 * The options object for the server. Unset values (undefined, null, "") are
 * left out so the server applies its own defaults (e.g. the shipped model when
 * `model` is empty).
 */
export function serverOptions(cfg: ConfigReader): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const key of SERVER_OPTION_KEYS) {
    const value = cfg.get<unknown>(key);
    if (value === undefined || value === null || value === "") continue;
    options[key] = value;
  }
  return options;
}

/** Which of our setting keys a configuration change touched. */
export function changedKeys(affects: (section: string) => boolean): string[] {
  return [...SERVER_OPTION_KEYS, ...CLIENT_ONLY_KEYS].filter((k) => affects(`infill.${k}`));
}

/** What a configuration change requires: restart the server, resend options, or only re-read `enable`. */
export function reactionTo(keys: string[]): "restart" | "resend" | "toggle" | "none" {
  if (keys.some((k) => (RESTART_KEYS as readonly string[]).includes(k))) return "restart";
  if (keys.some((k) => (SERVER_OPTION_KEYS as readonly string[]).includes(k))) return "resend";
  if (keys.includes("enable")) return "toggle";
  return "none";
}
