// Opens the dashboard in headless Chromium and prints what it shows as JSON: console
// errors, each card's number and text, each chart's data points and size. Saves a
// full-page screenshot. Usage: node dashboard.mjs URL SCREENSHOT [TOKEN]
// With TOKEN (a service with auth.protect_reads) the page must first ask for the token;
// the 401s before it is given are expected and not counted as errors.
import { chromium } from 'playwright-core';

const [url, screenshot, token] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') errors.push(`${m.type()}: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()}`));
  page.on('response', (r) => { if (r.status() >= 400) errors.push(`HTTP ${r.status()}: ${r.url()}`); });
  await page.goto(url, { waitUntil: 'load' });
  await page.waitForFunction(() => document.body.dataset.loaded, null, { timeout: 20000 });
  let askedForToken = null;
  if (token) {
    askedForToken = await page.evaluate(() => document.body.dataset.loaded === 'error'
      && !document.getElementById('token-form').hidden);
    errors.length = 0;
    await page.evaluate(() => { delete document.body.dataset.loaded; });
    await page.fill('#token', token);
    await page.click('#token-form button');
    await page.waitForFunction(() => document.body.dataset.loaded, null, { timeout: 20000 });
  }
  await page.evaluate(() => window.frontierShown);
  const shown = await page.evaluate(() => ({
    loaded: document.body.dataset.loaded,
    status: document.getElementById('status').textContent,
    cards: Object.fromEntries([...document.querySelectorAll('.card')].map((c) => {
      const v = c.querySelector('.value');
      return [c.id, { value: v.dataset.value, text: v.textContent, trend: c.querySelector('.trend').textContent }];
    })),
    charts: Object.fromEntries(Object.entries(window.autopilotCharts).map(([id, chart]) => [id, {
      points: chart.data.datasets.reduce((n, d) => n + d.data.length, 0),
      width: chart.width,
      height: chart.height,
    }])),
    alerts: [...document.querySelectorAll('.alert')].map((a) => a.textContent),
    recommendations: [...document.querySelectorAll('#recommendations li')].map((li) => li.textContent),
    pools: [...document.querySelectorAll('#pool option')].map((o) => o.value),
    poolWarm: document.getElementById('pool-warm').hidden ? null : document.getElementById('pool-warm').textContent,
    poolSize: document.getElementById('pool-size').textContent,
    replica: document.getElementById('replica').textContent,
    history: document.getElementById('history').hidden ? null : document.getElementById('history').textContent,
    poolProblem: document.getElementById('pool-problem').hidden ? null : document.getElementById('pool-problem').textContent,
    frontierNote: document.getElementById('frontier-note').textContent,
    frontierCurrent: (() => {
      const c = window.autopilotCharts['chart-frontier'];
      if (!c) return null;
      const d = c.data.datasets[c.data.datasets.length - 1];
      return { label: d.label, x: d.data[0].x, y: d.data[0].y };
    })(),
  }));
  // "Plan 20 % savings" shows the optimizer's plan.
  await page.click('button.plan[data-target="20"]');
  await page.waitForFunction(() => {
    const m = document.getElementById('plan-message');
    return m.dataset.reached !== undefined || m.textContent.startsWith('could not');
  }, null, { timeout: 30000 });
  shown.plan = await page.evaluate(() => ({
    message: document.getElementById('plan-message').textContent,
    reached: document.getElementById('plan-message').dataset.reached,
    changes: [...document.querySelectorAll('#plan-changes li')].map((li) => li.textContent),
  }));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ errors, askedForToken, ...shown }));
} finally {
  await browser.close();
}
