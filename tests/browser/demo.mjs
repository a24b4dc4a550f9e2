// Watches the demo's pool in the dashboard, in headless Chromium: reloads the page's data
// every second for SECONDS and prints, as JSON, every pool size the page showed (agents
// before the reconcile, and what it set) and any console or page error.
// Usage: node demo.mjs URL SECONDS
import { chromium } from 'playwright-core';

const [url, seconds] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => document.body.dataset.loaded, null, { timeout: 20000 });
  const sizes = [];
  const deadline = Date.now() + Number(seconds) * 1000;
  while (Date.now() < deadline) {
    await page.evaluate(async () => { delete document.body.dataset.loaded; await load(); });
    const s = await page.evaluate(() => {
      const e = document.getElementById('pool-size');
      return { current: e.dataset.current, desired: e.dataset.desired, at: e.dataset.at, text: e.textContent };
    });
    if (s.current !== '' && (sizes.length === 0 || sizes[sizes.length - 1].at !== s.at)) {
      sizes.push({ current: Number(s.current), desired: Number(s.desired), at: s.at, text: s.text });
    }
    await page.waitForTimeout(1000);
  }
  console.log(JSON.stringify({ errors, sizes }));
} finally {
  await browser.close();
}
