// Drives the writing page (/write) of a running server in headless Chromium, as a writer would:
//   node write_page.mjs http://127.0.0.1:PORT screenshot.png
// Exits non-zero with the failed check on stderr. CHROMIUM overrides the browser (default /usr/bin/chromium).
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const [base, screenshot] = process.argv.slice(2);
assert.ok(base && screenshot, "usage: node write_page.mjs BASE_URL SCREENSHOT.png");

const profile = mkdtempSync(join(tmpdir(), "charrnn-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1000, height: 720 },
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});

try {
  const page = context.pages()[0] ?? await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  const asked = [];
  page.on("request", (r) => { if (r.url().includes("/generate?")) asked.push(new URL(r.url())); });

  await page.goto(`${base}/write`);
  const box = page.locator("#text");
  const status = page.locator("#status");
  await box.focus();
  const typed = "The rain in Spain stays mainly in the plain, and First Citizen: before we ";
  await page.keyboard.type(typed);
  const state = () => box.evaluate((t) => ({ value: t.value, start: t.selectionStart, end: t.selectionEnd }));

  // Tab asks for completions of the last 48 characters; the first is inserted after the cursor, selected.
  await page.keyboard.press("Tab");
  await assert.doesNotReject(status.filter({ hasText: /^suggestion 1 of 5$/ }).waitFor({ timeout: 20000 }));
  assert.equal(asked.length, 1);
  assert.equal(asked[0].searchParams.get("start_text"), typed.slice(-48));
  assert.equal(asked[0].searchParams.get("n"), "5");
  let s = await state();
  assert.ok(s.value.startsWith(typed) && s.value.length > typed.length, "a completion is inserted");
  assert.deepEqual([s.start, s.end], [typed.length, s.value.length], "the completion is selected");
  await page.locator("#model").filter({ hasText: /LSTM 1×64/ }).waitFor({ timeout: 5000 });
  await page.screenshot({ path: screenshot });

  // Up and down cycle through the five; each replaces the last, still selected.
  await page.keyboard.press("ArrowDown");
  await status.filter({ hasText: /^suggestion 2 of 5$/ }).waitFor();
  s = await state();
  assert.ok(s.value.startsWith(typed) && s.start === typed.length && s.end === s.value.length);
  await page.keyboard.press("ArrowUp");
  await page.keyboard.press("ArrowUp");
  await status.filter({ hasText: /^suggestion 5 of 5$/ }).waitFor();

  // Esc takes it away.
  await page.keyboard.press("Escape");
  s = await state();
  assert.deepEqual(s, { value: typed, start: typed.length, end: typed.length });

  // Enter accepts (followed by a space), and so does the right arrow.
  await page.keyboard.press("Tab");
  await status.filter({ hasText: /^suggestion 1 of 5$/ }).waitFor({ timeout: 20000 });
  const first = (await state()).value.slice(typed.length);
  await page.keyboard.press("Enter");
  s = await state();
  assert.equal(s.value, typed + first + " ");
  assert.deepEqual([s.start, s.end], [s.value.length, s.value.length]);
  const accepted = s.value;
  await page.keyboard.press("Tab");
  await status.filter({ hasText: /^suggestion 1 of 5$/ }).waitFor({ timeout: 20000 });
  const second = (await state()).value.slice(accepted.length);
  await page.keyboard.press("ArrowRight");
  assert.equal((await state()).value, accepted + second + " ");

  // Whatever precedes the cursor, Tab gets an answer: the window is 48 characters (code points), so it
  // never splits an emoji (a half of one made encodeURIComponent throw), and a lone surrogate is sent as U+FFFD.
  const lone = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;
  for (const text of ["x".repeat(10) + "\u{1F600}" + "a".repeat(47), "all: " + "\u{1F600}".repeat(60),
                      "first citizen:\uD800 before we \uDC00", "\u{1F600}"]) {
    await box.evaluate((t, v) => { t.value = v; t.focus(); t.setSelectionRange(v.length, v.length); }, text);
    const n = asked.length;
    await page.keyboard.press("Tab");
    await status.filter({ hasText: /^(suggestion 1 of \d|no suggestion this time|the server did not answer)/ })
      .waitFor({ timeout: 20000 });
    assert.equal(await page.locator("#status.error").count(), 0, await status.textContent());
    assert.equal(asked.length, n + 1);
    assert.equal(asked[n].searchParams.get("start_text"), Array.from(text).slice(-48).join("").replace(lone, "\uFFFD"));
    await page.keyboard.press("Escape");
  }
  await box.evaluate((t, v) => { t.value = v; t.setSelectionRange(v.length, v.length); }, accepted + second + " ");

  // Typing goes on as usual; a server's message is shown as an error and changes nothing.
  await page.keyboard.type("Yes.");
  const before = (await state()).value;
  await page.route("**/generate?*", (route) => route.fulfill({ json: { message: "the model is resting" } }));
  await page.keyboard.press("Tab");
  await page.locator("#status.error").filter({ hasText: "the model is resting" }).waitFor({ timeout: 5000 });
  assert.equal((await state()).value, before);
  assert.deepEqual(pageErrors, []);
  console.log(JSON.stringify({ ok: true, requests: asked.length + 1, text: before }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
