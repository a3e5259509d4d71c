// Drives real VS Code (code-server, in headless Chromium through puppeteer-core) with the infill-ls
// extension installed, as a user would: open a file, type, see the ghost text, Tab, Escape, read the
// status bar, change a setting. Run by test_vscode_real.py with node 24:
//   node code_server_drive.js
// Environment: INFILL_PUPPETEER (path of the puppeteer-core package), INFILL_CHROMIUM, INFILL_URL (the
// workbench page with ?folder=), INFILL_SETTINGS (the user settings.json the test may rewrite),
// INFILL_RESULT (JSON report), INFILL_SHOT (screenshot of the ghost text). Every wait is bounded.
"use strict";
const fs = require("fs");
const puppeteer = require(process.env.INFILL_PUPPETEER);

const report = { steps: {} };
let page; // for a screenshot when a step fails
const TYPED = "def add(a, b):";

function step(name, value) {
  report.steps[name] = value;
}

async function waitFor(page, what, fn, timeoutMs, ...args) {
  try {
    return await page.waitForFunction(fn, { timeout: timeoutMs, polling: 100 }, ...args);
  } catch (err) {
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
  }
}

// Wait until the infill status bar item shows the codicon `icon` (e.g. codicon-check).
function waitForStatusIcon(page, what, icon, timeoutMs) {
  return waitFor(page, what, (cls) => {
    for (const item of document.querySelectorAll(".statusbar-item")) {
      if (/\binfill\b/.test(item.textContent) && item.querySelector("." + cls)) return true;
    }
    return false;
  }, timeoutMs, icon);
}

// The infill status bar item as the user sees it: its text, its icon, its tooltip (aria-label).
function statusItem() {
  for (const item of document.querySelectorAll(".statusbar-item")) {
    const text = item.textContent.trim();
    if (/\binfill\b/.test(text)) {
      const icon = item.querySelector(".codicon");
      const label = item.querySelector("a")?.getAttribute("aria-label") ?? item.getAttribute("aria-label") ?? "";
      return { text, icon: icon ? [...icon.classList].find((c) => c.startsWith("codicon-") && c !== "codicon") : null, label };
    }
  }
  return null;
}

// The inline suggestion as drawn: its first line in the cursor's line (.ghost-text-decoration), the
// lines below in a view zone (.ghost-text). Not the "-preview" parts: VS Code's preview of what would
// follow, which accepting does not insert.
// The notification toasts' messages (a server's window/showMessage shows as one).
function notifications() {
  return [...document.querySelectorAll(".notification-list-item-message")].map((m) => m.textContent);
}

function ghostText() {
  const parts = [...document.querySelectorAll(".ghost-text-decoration, .ghost-text")];
  const text = parts.map((p) => p.textContent).join("");
  return text.length ? text : null;
}

// The editor's lines as rendered, without ghost text drawn inside them (non-breaking spaces as
// spaces), top to bottom.
function editorLines() {
  const rows = [...document.querySelectorAll(".editor-instance .view-lines .view-line")];
  rows.sort((a, b) => parseFloat(a.style.top) - parseFloat(b.style.top));
  return rows.map((r) => {
    const copy = r.cloneNode(true);
    copy.querySelectorAll("[class*=ghost-text]").forEach((g) => g.remove());
    return copy.textContent.replace(/\u00a0/g, " ");
  });
}

async function main() {
  const browser = await puppeteer.launch({
    executablePath: process.env.INFILL_CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--window-size=1280,800"],
    defaultViewport: { width: 1280, height: 800 },
  });
  try {
    page = await browser.newPage();
    await page.goto(process.env.INFILL_URL, { waitUntil: "domcontentloaded", timeout: 60000 });
    await page.waitForSelector(".monaco-workbench", { timeout: 60000 });
    // No settings: the extension finds infill-ls by itself and the shipped model loads.
    await waitFor(page, "the infill status bar item", () => {
      for (const item of document.querySelectorAll(".statusbar-item")) if (/\binfill\b/.test(item.textContent)) return true;
      return false;
    }, 60000);
    step("first_status", await page.evaluate(statusItem));

    await page.keyboard.down("Control");
    await page.keyboard.press("KeyP");
    await page.keyboard.up("Control");
    await page.waitForSelector(".quick-input-widget input", { visible: true, timeout: 20000 });
    await page.keyboard.type("add.py", { delay: 30 });
    await waitFor(page, "add.py in the quick open list", () =>
      [...document.querySelectorAll(".quick-input-list .monaco-list-row")].some((r) => r.textContent.includes("add.py")), 20000);
    await page.keyboard.press("Enter");
    await page.waitForSelector(".editor-instance .view-lines", { timeout: 20000 });
    await waitFor(page, "the file's text", () => (document.querySelector(".editor-instance .view-lines")?.textContent ?? "").replace(/\u00a0/g, " ").includes("import os"), 20000);
    await page.click(".editor-instance .view-lines");
    await page.keyboard.down("Control");
    await page.keyboard.press("End");
    await page.keyboard.up("Control");

    await waitForStatusIcon(page, "the status bar to say ready", "codicon-check", 90000);
    step("ready_status", await page.evaluate(statusItem));

    // 1. Typing: the ghost text appears after the cursor.
    await page.keyboard.type(TYPED, { delay: 60 });
    await waitFor(page, "ghost text while typing", ghostText, 60000);
    await new Promise((r) => setTimeout(r, 300)); // let the rest of a multi-line suggestion render
    const ghost = await page.evaluate(ghostText);
    step("notifications_at_typing", await page.evaluate(notifications));
    step("typed", { ghost, lines: await page.evaluate(editorLines), status: await page.evaluate(statusItem) });
    await page.screenshot({ path: process.env.INFILL_SHOT });

    // 2. Escape dismisses it and leaves the text alone.
    await page.keyboard.press("Escape");
    // (the wait fails the run if it stays; VS Code may suggest again on its own afterwards)
    await waitFor(page, "the ghost text to go", () => !document.querySelector(".ghost-text-decoration, .ghost-text-decoration-preview"), 10000);
    step("after_escape", { dismissed: true, lines: await page.evaluate(editorLines) });

    // 3. Retype the last character: it comes back, and Tab inserts it.
    await page.keyboard.press("Backspace");
    await page.keyboard.type(":", { delay: 60 });
    await waitFor(page, "ghost text again", ghostText, 60000);
    await new Promise((r) => setTimeout(r, 300));
    const again = await page.evaluate(ghostText);
    const linesBefore = await page.evaluate(editorLines);
    await page.keyboard.press("Tab");
    // the shown text is now in the line (a new suggestion may follow at once, so ghost text can stay)
    await waitFor(page, "the ghost text to be inserted", (before) => {
      const rows = [...document.querySelectorAll(".editor-instance .view-lines .view-line")];
      return rows.map((r) => r.textContent.replace(/\u00a0/g, " ")).sort().join("\n") !== [...before].sort().join("\n");
    }, 10000, linesBefore);
    await new Promise((r) => setTimeout(r, 200));
    step("after_tab", { ghost: again, lines: await page.evaluate(editorLines), status: await page.evaluate(statusItem) });

    // 4. A settings change reaches the server: in the Settings editor, a model folder that does not
    //    exist; the status bar shows an error, with the server's reason in its tooltip.
    await page.keyboard.down("Control");
    await page.keyboard.press("Comma");
    await page.keyboard.up("Control");
    await page.waitForSelector(".settings-editor .suggest-input-container textarea, .settings-editor .search-container textarea, .settings-editor .search-container input", { visible: true, timeout: 20000 });
    await page.keyboard.type("infill.model", { delay: 20 });
    const input = await page.waitForSelector('.setting-item-contents[data-key="infill.model"] input, .setting-item[data-key="infill.model"] input', { visible: true, timeout: 20000 })
      .catch(() => page.waitForSelector(".settings-editor .setting-item-text input", { visible: true, timeout: 10000 }));
    await input.click();
    await page.keyboard.type("/nonexistent/model-folder", { delay: 10 });
    await page.keyboard.press("Tab");
    await waitForStatusIcon(page, "an error in the status bar", "codicon-error", 60000);
    step("settings_file", fs.readFileSync(process.env.INFILL_SETTINGS, "utf8"));
    step("wrong_model", await page.evaluate(statusItem));
    await waitFor(page, "the server's error as a notification", () =>
      [...document.querySelectorAll(".notification-list-item-message")].some((m) => m.textContent.includes("/nonexistent/model-folder")), 20000);
    step("notifications_at_the_end", await page.evaluate(notifications));
  } catch (err) {
    if (page) await page.screenshot({ path: process.env.INFILL_SHOT.replace(/\.png$/, "-failed.png") }).catch(() => {});
    throw err;
  } finally {
    await browser.close();
  }
}

main()
  .then(() => {
    fs.writeFileSync(process.env.INFILL_RESULT, JSON.stringify(report));
  })
  .catch((err) => {
    report.error = String(err && err.stack ? err.stack : err);
    fs.writeFileSync(process.env.INFILL_RESULT, JSON.stringify(report));
    process.exitCode = 1;
  });
