// jenkins-autopilot dashboard: reads the JSON API only and draws it.
'use strict';

const charts = {};
// Tests read the charts from here.
window.autopilotCharts = charts;
const byId = (id) => document.getElementById(id);

// With auth.protect_reads the API wants a reports:read token: kept for this tab only.
const TOKEN_KEY = 'autopilot-token';

function authHeaders() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: 'application/json', ...authHeaders() } });
  if (response.status === 401 || response.status === 403) {
    byId('token-form').hidden = false;
    throw new Error(`${path} needs an API token with reports:read (${response.status})`);
  }
  if (!response.ok) {
    throw new Error(`${path} answered ${response.status}`);
  }
  return response.json();
}

// Report and export links carry the token too: fetched, then opened or saved.
async function openWithToken(event, download) {
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  event.preventDefault();
  const link = event.currentTarget;
  const response = await fetch(link.href, { headers: authHeaders() });
  if (!response.ok) {
    byId('status').textContent = `could not open: ${response.status}`;
    return;
  }
  const url = URL.createObjectURL(await response.blob());
  if (download) {
    const a = document.createElement('a');
    a.href = url;
    a.download = download;
    a.click();
  } else {
    window.open(url, '_blank', 'noopener');
  }
}

function formatDuration(ms) {
  if (ms == null) return 'none';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function formatPercent(share) {
  return share == null ? 'n/a' : `${(share * 100).toFixed(1)} %`;
}

function formatTime(ms) {
  return new Date(ms).toISOString().slice(5, 16).replace('T', ' ');
}

// A card: the API's number in data-value, a formatted text, and its trend.
function setCard(id, raw, text, trend, lowerIsBetter) {
  const card = byId(id);
  const value = card.querySelector('.value');
  value.textContent = text;
  value.dataset.value = raw == null ? '' : String(raw);
  const t = card.querySelector('.trend');
  t.className = 'trend';
  if (typeof trend === 'number') {
    const sign = trend > 0 ? '+' : '';
    t.textContent = `${sign}${trend.toFixed(1)} % against the range before`;
    if (trend !== 0) t.classList.add((trend > 0) === lowerIsBetter ? 'up' : 'down');
  } else {
    t.textContent = trend || '';
  }
}

function draw(id, config) {
  if (charts[id]) charts[id].destroy();
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
  charts[id] = new Chart(byId(id), config);
}

const timeAxis = { type: 'linear', ticks: { callback: (v) => formatTime(v), maxTicksLimit: 6 } };

function showCards(cost, report) {
  const currency = cost.currency;
  setCard('card-hourly-cost', cost.hourly_rate, `${cost.hourly_rate.toFixed(2)} ${currency}/h`, cost.trend_percent, true);
  setCard('card-monthly-projection', cost.monthly_projection, `${cost.monthly_projection.toFixed(2)} ${currency}`, cost.trend_percent, true);
  const savings = cost.hours > 0 ? (cost.total.idle / cost.hours) * 730.5 : 0;
  const idleShare = cost.total.total > 0 ? cost.total.idle / cost.total.total : null;
  setCard('card-savings', savings, `${savings.toFixed(2)} ${currency}/month`, `idle agents: ${formatPercent(idleShare)} of the cost`, true);
  setCard('card-demand', report.demand_per_hour, `${report.demand_per_hour.toFixed(2)} builds/h`, report.trends.demand.change_percent, false);
  setCard('card-queue-wait', report.queue_wait.p95_ms, formatDuration(report.queue_wait.p95_ms), report.trends.queue_wait.change_percent, true);
  const failed = report.results.FAILURE || 0;
  setCard('card-error-rate', report.error_rate, formatPercent(report.error_rate), `${failed} of ${report.builds} builds failed`, true);
  setCard('card-efficiency', report.cost.efficiency, formatPercent(report.cost.efficiency), 'busy share of the agent time paid for', false);
}

// Where the range's builds came from: which days a backfill of Jenkins' history filled,
// and how many builds only the repair found (their webhooks were lost).
function showHistory(report) {
  const day = (ms) => new Date(ms).toISOString().slice(0, 10);
  const backfilled = report.daily.filter((d) => d.backfilled > 0);
  const repaired = report.daily.reduce((n, d) => n + d.repaired, 0);
  const fromBackfill = backfilled.reduce((n, d) => n + d.backfilled, 0);
  const parts = [];
  if (backfilled.length) {
    parts.push(`${fromBackfill} of these builds came from a backfill of Jenkins' history (${day(backfilled[0].start)} to ${day(backfilled[backfilled.length - 1].start)})`);
  }
  if (repaired) {
    parts.push(`${repaired} only the repair found: their webhooks were lost`);
  }
  const line = byId('history');
  line.hidden = parts.length === 0;
  line.textContent = parts.length ? `${parts.join('; ')}.` : '';
  line.dataset.backfilled = String(fromBackfill);
  line.dataset.repaired = String(repaired);
}

function showLists(cost, report) {
  const alerts = byId('alerts');
  alerts.replaceChildren(...cost.alerts.map((a) => {
    const p = document.createElement('p');
    p.className = 'alert';
    p.textContent = a.message;
    return p;
  }));
  const fill = (id, items, empty) => {
    const list = byId(id);
    const entries = items.length ? items : [empty];
    list.replaceChildren(...entries.map((text) => {
      const li = document.createElement('li');
      li.textContent = text;
      return li;
    }));
  };
  fill('recommendations', report.recommendations, 'Nothing to change.');
  fill('regressions', report.regressions.map((r) => `${r.job}: median ${formatDuration(r.median_ms)} against ${formatDuration(r.baseline_median_ms)} (${r.change_percent > 0 ? '+' : ''}${r.change_percent} %)${r.first_slow_build ? `, since #${r.first_slow_build.number}` : ''}`), 'No job got slower.');
}

function showCharts(cost, report) {
  draw('chart-trends', {
    type: 'line',
    data: {
      datasets: [
        { label: 'mean duration (s)', data: report.daily.filter((d) => d.mean_duration_ms != null).map((d) => ({ x: d.start, y: d.mean_duration_ms / 1000 })), borderColor: '#2a6fdb' },
        { label: 'mean queue wait (s)', data: report.daily.filter((d) => d.mean_wait_ms != null).map((d) => ({ x: d.start, y: d.mean_wait_ms / 1000 })), borderColor: '#e67e22' },
        { label: 'builds', data: report.daily.map((d) => ({ x: d.start, y: d.builds })), borderColor: '#7f8c8d', yAxisID: 'builds' },
      ],
    },
    options: { scales: { x: timeAxis, y: { beginAtZero: true }, builds: { position: 'right', beginAtZero: true } } },
  });
  const t = cost.total;
  draw('chart-cost', {
    type: 'bar',
    data: {
      labels: ['CPU', 'Memory', 'Storage', 'of which idle'],
      datasets: [{ label: cost.currency, data: [t.cpu, t.memory, t.storage, t.idle], backgroundColor: ['#2a6fdb', '#8e44ad', '#16a085', '#c0392b'] }],
    },
    options: { plugins: { legend: { display: false } } },
  });
}

async function showPool(name, since) {
  if (!name) return;
  const [decisions, forecast] = await Promise.all([
    getJson(`/api/v1/pools/${encodeURIComponent(name)}/decisions?since=${since}&limit=1000`),
    getJson(`/api/v1/pools/${encodeURIComponent(name)}/forecast`),
  ]);
  // Warm capacity: what the newest decision that planned it kept, and why (the guard's
  // verdict included); a decision held on a failed read plans nothing.
  const warm = decisions.decisions.find((d) => d.inputs && d.inputs.warm)?.inputs.warm;
  // The newest reconcile that saw the pool: its size then and what it was set to.
  const last = decisions.decisions.find((d) => d.current != null);
  const size = byId('pool-size');
  size.dataset.current = last ? String(last.current) : '';
  size.dataset.desired = last && last.desired != null ? String(last.desired) : '';
  size.dataset.at = last ? String(last.decided_at) : '';
  size.textContent = last
    ? `Agents: ${last.current} -> ${last.desired ?? last.current} (${last.rule}, ${last.outcome}) at ${new Date(last.decided_at).toISOString().slice(0, 16).replace('T', ' ')} UTC`
    : 'No reconcile yet.';
  // A problem the newest decision ran into (a failed read, a node left offline).
  const problem = byId('pool-problem');
  const newest = decisions.decisions[0];
  problem.hidden = !(newest && newest.error);
  problem.textContent = newest && newest.error ? `Problem: ${newest.error}` : '';
  const warmLine = byId('pool-warm');
  warmLine.hidden = !warm;
  warmLine.textContent = warm ? `Warm capacity: ${warm.agents} idle agent(s) kept. ${warm.reason}` : '';
  const ds = decisions.decisions.slice().reverse();
  const demand = ds.filter((d) => d.inputs && d.inputs.busy_executors != null)
    .map((d) => ({ x: d.decided_at, y: d.inputs.busy_executors + d.inputs.queued }));
  draw('chart-scaling', {
    type: 'line',
    data: {
      datasets: [
        { label: 'demand (busy + queued executors)', data: demand, borderColor: '#e67e22', stepped: true },
        { label: 'desired agents', data: ds.filter((d) => d.desired != null).map((d) => ({ x: d.decided_at, y: d.desired })), borderColor: '#2a6fdb', stepped: true },
        { label: 'agents before', data: ds.filter((d) => d.current != null).map((d) => ({ x: d.decided_at, y: d.current })), borderColor: '#95a5a6', stepped: true },
      ],
    },
    options: { scales: { x: timeAxis, y: { beginAtZero: true } } },
  });
  const predicted = ds.filter((d) => d.inputs && d.inputs.forecast && d.inputs.forecast.value != null)
    .map((d) => ({ x: d.inputs.forecast.target_at, y: d.inputs.forecast.value }));
  draw('chart-forecast', {
    type: 'line',
    data: {
      datasets: [
        { label: 'actual demand', data: demand, borderColor: '#e67e22' },
        { label: `forecast (${forecast.mode})`, data: predicted, borderColor: '#2a6fdb', borderDash: [6, 4] },
      ],
    },
    options: { scales: { x: timeAxis, y: { beginAtZero: true } } },
  });
}

// The frontier of the pool's own recorded builds: cost (agent-hours as a multiple of the
// oracle's) against the share of builds started at once, per family, with the pool's
// current settings marked. One request at a time per page, reused for a minute.
const frontiers = {};
async function showFrontier(name, range) {
  const key = `${name} ${range}`;
  let entry = frontiers[key];
  if (!entry || Date.now() - entry.at > 60000) {
    entry = { at: Date.now(), promise: getJson(`/api/v1/pools/${encodeURIComponent(name)}/frontier?range=${range}`) };
    frontiers[key] = entry;
  }
  const note = byId('frontier-note');
  let f;
  try {
    f = await entry.promise;
  } catch (error) {
    delete frontiers[key];
    note.textContent = `No frontier: ${error.message}`;
    return;
  }
  const oracle = f.oracle_agent_hours > 0 ? f.oracle_agent_hours : null;
  const x = (p) => (oracle ? p.agent_hours / oracle : p.agent_hours);
  const colors = { window: '#95a5a6', 'keep-idle': '#8e44ad', headroom: '#16a085', warm: '#2a6fdb' };
  const families = [...new Set(f.frontier.map((p) => p.family))];
  const datasets = families.map((family) => ({
    label: family,
    data: f.frontier.filter((p) => p.family === family).map((p) => ({ x: x(p), y: p.started_at_once * 100, setting: p.setting }))
      .sort((a, b) => a.x - b.x),
    borderColor: colors[family] || '#7f8c8d',
    backgroundColor: colors[family] || '#7f8c8d',
    showLine: true,
  }));
  datasets.push({
    label: `current (${f.current.setting})`,
    data: [{ x: x(f.current), y: f.current.started_at_once * 100, setting: f.current.setting }],
    borderColor: '#c0392b',
    backgroundColor: '#c0392b',
    pointStyle: 'crossRot',
    pointRadius: 9,
    borderWidth: 3,
  });
  draw('chart-frontier', {
    type: 'scatter',
    data: { datasets },
    options: {
      scales: {
        x: { title: { display: true, text: oracle ? "agent-hours / oracle's" : 'agent-hours' } },
        y: { title: { display: true, text: '% started at once' }, min: 0, max: 100 },
      },
      plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label} ${c.raw.setting}: ${c.raw.x.toFixed(2)}x, ${c.raw.y.toFixed(1)} %` } } },
    },
  });
  const c = f.current;
  note.dataset.builds = String(f.builds);
  note.textContent = f.builds === 0
    ? 'No recorded builds of this pool in the range to replay.'
    : `Replaying ${f.builds} recorded builds: the current settings (${c.setting}) cost ${x(c).toFixed(2)}x the oracle's agent-hours and start ${(c.started_at_once * 100).toFixed(0)} % of builds at once.`;
}

// Which replica drew the page, and who leads: only the leader scales the pools.
function showReplica(s) {
  const role = s.role === 'follower' ? `follower; ${s.leader ? `${s.leader} leads` : 'no leader yet'}` : s.role;
  byId('replica').textContent = `Replica ${s.identity} (${role}, ${s.mode})`;
  byId('replica').dataset.role = s.role;
}

async function load() {
  const range = byId('range').value;
  byId('report').href = `/api/v1/reports/performance?range=${range}&format=html`;
  byId('export').href = `/api/v1/export?range=${range}&format=csv`;
  byId('status').textContent = 'loading';
  try {
    const [cost, report, pools, replica] = await Promise.all([
      getJson(`/api/v1/costs?range=${range}&group_by=pool`),
      getJson(`/api/v1/reports/performance?range=${range}`),
      getJson('/api/v1/pools'),
      getJson('/api/v1/status'),
    ]);
    showReplica(replica);
    showCards(cost, report);
    showLists(cost, report);
    showHistory(report);
    showCharts(cost, report);
    const select = byId('pool');
    const current = select.value;
    select.replaceChildren(...pools.pools.map((p) => new Option(p.name, p.name)));
    if (pools.pools.some((p) => p.name === current)) select.value = current;
    await showPool(select.value, cost.range.from);
    // The frontier replays the pool's history: drawn when it comes, not waited for.
    window.frontierShown = select.value ? showFrontier(select.value, range) : Promise.resolve();
    byId('status').textContent = `updated ${new Date().toISOString().slice(11, 19)} UTC`;
    document.body.dataset.loaded = 'true';
  } catch (error) {
    byId('status').textContent = `could not load: ${error.message}`;
    document.body.dataset.loaded = 'error';
  }
}

// "Plan N % savings": asks the optimizer (which replays the history) and shows its plan.
async function plan(target) {
  const section = byId('plan');
  section.hidden = false;
  byId('plan-message').textContent = `planning ${target} % savings: replaying the history...`;
  byId('plan-changes').replaceChildren();
  byId('plan-diff').textContent = '';
  try {
    const response = await fetch('/api/v1/costs/optimize', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...authHeaders() },
      body: JSON.stringify({ target_savings: target, range: byId('range').value }),
    });
    const p = await response.json();
    if (!response.ok) throw new Error(p.detail || `answered ${response.status}`);
    const message = byId('plan-message');
    message.textContent = p.message;
    message.dataset.reached = String(p.reached);
    const items = [];
    for (const pool of p.pools) {
      for (const c of pool.changes) items.push(`pool ${pool.pool}: ${c.setting} ${c.from} -> ${c.to}`);
      if (pool.note) items.push(`pool ${pool.pool}: ${pool.note}`);
    }
    for (const j of p.profiles) items.push(`${j.job} (${j.type}): learned ${j.recommended.cpu} CPU, ${j.recommended.memory}: ${j.cost_before.toFixed(2)} -> ${j.cost_after.toFixed(2)} ${p.currency}`);
    items.push(`cost ${p.cost_before.toFixed(2)} -> ${p.cost_after.toFixed(2)} ${p.currency}; queue-wait p95 ${p.wait_p95_before_s} s -> ${p.wait_p95_after_s} s`);
    byId('plan-changes').replaceChildren(...items.map((text) => {
      const li = document.createElement('li');
      li.textContent = text;
      return li;
    }));
    byId('plan-diff').textContent = p.config_diff;
    byId('plan-diff').hidden = !p.config_diff;
  } catch (error) {
    byId('plan-message').textContent = `could not plan: ${error.message}`;
  }
}

for (const button of document.querySelectorAll('button.plan')) {
  button.addEventListener('click', () => plan(Number(button.dataset.target)));
}
byId('token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, byId('token').value.trim());
  byId('token').value = '';
  byId('token-form').hidden = true;
  load();
});
byId('report').addEventListener('click', (event) => openWithToken(event, null));
byId('export').addEventListener('click', (event) => openWithToken(event, 'builds.csv'));
byId('range').addEventListener('change', load);
byId('pool').addEventListener('change', () => load());
load();
setInterval(load, 60000);
