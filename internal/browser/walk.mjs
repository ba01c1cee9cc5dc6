// walk.mjs drives Debian's chromium (headless, through playwright-core)
// through the steps of a browser test and reports what it saw.
//
//   node walk.mjs '<json spec>'
//
// The spec: {"url": "...", "out": "dir for screenshots", "timeout_ms": 60000,
//   "steps": [{"click": "visible text", "expect": ["text", ...],
//              "screenshot": "name.png", "goto": "url"}]}
// Each step optionally goes to a URL, clicks the element with that exact
// text, then waits until every expected text is on the page (polling the
// page's text, so a page that updates itself is given time), and takes a
// screenshot. The result on stdout is JSON: {"ok": bool, "step": n,
// "missing": [...], "error": "..."}; the page's text is never printed
// (it may be long), the screenshots show it.
import { chromium } from 'playwright-core';
import path from 'node:path';

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
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  await page.goto(spec.url, { waitUntil: 'load', timeout });
  for (const [i, step] of spec.steps.entries()) {
    result.step = i;
    if (step.goto) await page.goto(step.goto, { waitUntil: 'load', timeout });
    if (step.click) await page.getByText(step.click, { exact: true }).first().click({ timeout });
    const deadline = Date.now() + timeout;
    for (;;) {
      const text = await pageText(page);
      result.missing = (step.expect ?? []).filter((want) => !text.includes(want));
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
  await browser.close();
}
console.log(JSON.stringify(result));
