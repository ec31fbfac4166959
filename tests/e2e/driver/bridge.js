#!/usr/bin/env node
// JSON-lines bridge between the pytest e2e tier and a headless Chromium driven by playwright-core.
//
// stdin : one request per line   {"id": 1, "op": "goto", ...}
// stdout: one reply per request  {"id": 1, "ok": true, "value": ...} | {"id": 1, "ok": false, "error": "..."}
// All test logic lives in Python; this file only exposes a few page primitives.
// The browser is the system's Chromium (no browser download): CIL_CHROMIUM or /usr/bin/chromium.
"use strict";

const fs = require("fs");
const os = require("os");
const path = require("path");
const readline = require("readline");
const { chromium } = require("playwright-core");

// Flags for a sandboxed machine with a closed network (see tests/e2e/README.md).
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

let context = null;
let page = null;
let profileDir = null;
const pageLog = []; // console errors and uncaught page errors since the last "log" request

async function launch({ executable, width = 1600, height = 1000 }) {
  profileDir = fs.mkdtempSync(path.join(os.tmpdir(), "cil-e2e-chromium-"));
  context = await chromium.launchPersistentContext(profileDir, {
    executablePath: executable || process.env.CIL_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width, height },
  });
  page = context.pages()[0] || (await context.newPage());
  page.on("console", (msg) => {
    if (msg.type() === "error") pageLog.push(`console.error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => pageLog.push(`pageerror: ${err.message}`));
  return { version: context.browser() ? context.browser().version() : "persistent" };
}

const ops = {
  launch,
  async goto({ url, timeout_ms = 60000 }) {
    await page.goto(url, { waitUntil: "load", timeout: timeout_ms });
    return page.url();
  },
  // Evaluate an async function body in the page; `arg` is passed as the variable `arg`.
  async evaluate({ body, arg = null }) {
    return page.evaluate(`(async (arg) => { ${body} })(${JSON.stringify(arg)})`);
  },
  async wait_for({ body, arg = null, timeout_ms = 60000 }) {
    // Synchronous body: polled until it returns something truthy, which is returned.
    const handle = await page.waitForFunction(`((arg) => { ${body} })(${JSON.stringify(arg)})`, null, {
      timeout: timeout_ms,
      polling: 250,
    });
    return handle.jsonValue();
  },
  // Texts of the visible elements matching a Playwright selector (CSS, text=..., :has-text(...)).
  async visible_texts({ selector }) {
    const found = page.locator(selector);
    const texts = [];
    for (let i = 0; i < (await found.count()); i++) {
      const el = found.nth(i);
      if (await el.isVisible()) texts.push((await el.innerText()).trim());
    }
    return texts;
  },
  async click({ selector, timeout_ms = 10000 }) {
    await page.locator(selector).first().click({ timeout: timeout_ms });
    return true;
  },
  async press({ key }) {
    await page.keyboard.press(key);
    return true;
  },
  // PNG or JPEG by the file's extension; quality applies to JPEG only.
  async screenshot({ file, quality = null }) {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    await page.screenshot(quality === null ? { path: file } : { path: file, quality });
    return file;
  },
  async log() {
    return pageLog.splice(0, pageLog.length);
  },
  async close() {
    if (context) await context.close();
    context = null;
    if (profileDir) fs.rmSync(profileDir, { recursive: true, force: true });
    return true;
  },
};

async function handle(line) {
  let request;
  try {
    request = JSON.parse(line);
  } catch (err) {
    return { id: null, ok: false, error: `bad request line: ${err.message}` };
  }
  const op = ops[request.op];
  if (!op) return { id: request.id, ok: false, error: `unknown op ${request.op}` };
  try {
    return { id: request.id, ok: true, value: await op(request) };
  } catch (err) {
    return { id: request.id, ok: false, error: String(err && err.stack ? err.stack : err) };
  }
}

async function main() {
  const lines = readline.createInterface({ input: process.stdin, terminal: false });
  for await (const line of lines) {
    if (!line.trim()) continue;
    const reply = await handle(line);
    process.stdout.write(JSON.stringify(reply) + "\n");
  }
  await ops.close(); // stdin closed: the test session is over
}

main().catch((err) => {
  process.stderr.write(`bridge crashed: ${err.stack || err}\n`);
  process.exit(1);
});
