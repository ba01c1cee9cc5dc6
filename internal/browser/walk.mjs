// walk.mjs drives Debian's chromium (headless, through playwright-core)
// through the steps of a browser test and reports what it saw.
//
//   node walk.mjs '<json spec>'
//
// The spec: {"url": "...", "out": "dir for screenshots", "timeout_ms": 60000,
//   "steps": [{"goto": "url", "fill": {"label or name": "value"},
//              "click": "visible text", "expect": ["text", ...],
//              "expect_url": "part of the URL", "screenshot": "name.png"}]}
// Each step optionally goes to a URL, fills form fields (found by their
// label's exact text, else by name), clicks the button, else the link,
// else the element with that exact text, then waits until every expected text is on the page and the URL
// contains expect_url (polling, so a page that updates itself or is still
// redirecting is given time), and takes a screenshot. The result on
// stdout is JSON: {"ok": bool, "step": n, "missing": [...], "error":
// "...", "url": "..."}; the page's text is never printed (it may be long),
// the screenshots show it. Values filled in are never printed either.
import { chromium } from 'playwright-core';
import path from 'node:path';

// fieldFor is the form field labelled exactly so, else the one with that
// name attribute.
function fieldFor(page, field) {
  const byLabel = page.getByLabel(field, { exact: true });
  const name = field.replace(/["\\]/g, '\\$&');
  return byLabel.or(page.locator(`[name="${name}"]`)).first();
}

// clickable is the button named exactly so, else such a link, else any
// element with exactly that text: a page's heading often repeats its
// button's words ("Sign-in"), and the button is what a person clicks.
async function clickable(page, text) {
  for (const role of ['button', 'link']) {
    const el = page.getByRole(role, { name: text, exact: true });
    if (await el.count() > 0) return el.first();
  }
  return page.getByText(text, { exact: true }).first();
}

// pageText is the text of the page and of its frames: the Temporal UI
// renders markdown (a workflow's summary and details) in sandboxed iframes.
async function pageText(page) {
  const parts = [];
  for (const frame of page.frames()) {
    parts.push(await frame.innerText('body').catch(() => ''));
  }
  return parts.join('\n');
}

const spec = JSON.parse(process.argv[2]);
const timeout = spec.timeout_ms ?? 60000;
const result = { ok: false, step: -1, missing: [] };
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
let page;
try {
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(spec.url, { waitUntil: 'load', timeout });
  for (const [i, step] of spec.steps.entries()) {
    result.step = i;
    if (step.goto) await page.goto(step.goto, { waitUntil: 'load', timeout });
    for (const [field, value] of Object.entries(step.fill ?? {})) {
      await fieldFor(page, field).fill(value, { timeout });
    }
    if (step.click) await (await clickable(page, step.click)).click({ timeout });
    const deadline = Date.now() + timeout;
    for (;;) {
      const text = await pageText(page);
      result.missing = (step.expect ?? []).filter((want) => !text.includes(want));
      if (step.expect_url && !page.url().includes(step.expect_url)) result.missing.push(`url: ${step.expect_url}`);
      if (result.missing.length === 0 || Date.now() > deadline) break;
      await page.waitForTimeout(500);
    }
    if (step.screenshot) await page.screenshot({ path: path.join(spec.out, step.screenshot) });
    if (result.missing.length > 0) break;
  }
  result.ok = result.missing.length === 0;
} catch (err) {
  result.error = String(err.message ?? err).split('\n')[0];
} finally {
  result.url = page ? page.url() : '';
  await browser.close();
}
console.log(JSON.stringify(result));
