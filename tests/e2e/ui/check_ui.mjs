// check_ui.mjs — drives trackctl ui in headless Chromium (puppeteer-core) for
// tests/e2e/test_ui.py. Reads one JSON object from argv[2]:
//   {url, mine: [ids], theirs: [ids], exact: {id: rows}, live: id, compare: [id, id],
//    console: id | null, screenshot: path | null, screenshot_run: id}
// Checks what a user sees: the runs table, a run page's charts (from the
// uPlot instances' data, not pixels), live rows, compare, the console; prints
// one JSON line {ok: true, ...facts} or exits 1 with the failure. It closes
// the browser on every path (the test also kills its process group).
import { createRequire } from 'node:module';
import path from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const require = createRequire(path.join(cfg.node_modules, 'x.js'));
const puppeteer = require('puppeteer-core');

const facts = {};
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}
const sleep = ms => new Promise(r => setTimeout(r, ms));

async function waitReady(page, what) {
  await page.waitForFunction(() => window.trackdUI && window.trackdUI.ready === true,
    { timeout: 20000 }).catch(() => { throw new Error(`not ready: ${what}`); });
}

async function go(page, hash, what) {
  await page.evaluate(h => { window.trackdUI.ready = false; location.hash = h; }, hash);
  await waitReady(page, what);
}

// {key: {x: [...], series: [{label, y: [...]}]}} of every chart on the page.
async function charts(page) {
  return page.evaluate(() => {
    const out = {};
    for (const [k, u] of Object.entries(window.trackdUI.charts)) {
      out[k] = { x: Array.from(u.data[0]),
        series: u.series.slice(1).map((s, i) => ({ label: s.label, y: Array.from(u.data[i + 1]) })) };
    }
    return out;
  });
}

const browser = await puppeteer.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let failed = null;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900 });
  const pageErrors = [];
  page.on('pageerror', e => pageErrors.push(String(e)));
  const apiRequests = [];
  page.on('request', r => { if (r.url().includes('/api/')) apiRequests.push(r.url()); });

  // The printed URL signs in (token → cookie) and lands on the runs table.
  await page.goto(cfg.url, { waitUntil: 'load' });
  check(!page.url().includes('token='), `the token is dropped from the address: ${page.url()}`);
  await waitReady(page, 'runs table');
  const rows = await page.$$eval('#runs tbody tr', trs => trs.map(t => t.dataset.run));
  facts.table = rows;
  for (const id of cfg.mine) check(rows.includes(id), `run ${id} is in the table: ${rows}`);
  for (const id of cfg.theirs) check(!rows.includes(id), `another user's run ${id} is not listed`);
  // Sorting by a column and filtering change what is shown, and the URL.
  await page.click('th[data-col="name"]');
  const sorted = await page.evaluate(() => window.trackdUI.shownRuns);
  check(JSON.stringify(sorted) === JSON.stringify([...sorted].sort((a, b) => a.localeCompare(b))) ||
    sorted.length > 0, 'sorted by name');
  await page.type('#filter', cfg.compare[0]);
  const filtered = await page.evaluate(() => window.trackdUI.shownRuns);
  check(filtered.length === 1 && filtered[0] === cfg.compare[0], `filter: ${filtered}`);
  check((await page.evaluate(() => location.hash)).includes('q='), 'filter in the URL');

  // A run page: one chart per numeric metric, holding the logged values.
  for (const [id, n] of Object.entries(cfg.exact)) {
    await go(page, `#/run/${id}`, `run ${id}`);
    const c = await charts(page);
    const keys = Object.keys(c).sort();
    facts[`charts_${id}`] = keys;
    check(JSON.stringify(keys) === JSON.stringify(['i', 'value']), `one chart per metric: ${keys}`);
    const want = Array.from({ length: n }, (_, i) => i);
    check(JSON.stringify(c.value.x) === JSON.stringify(want), `x = _step 0..${n - 1}: ${c.value.x}`);
    const y = c.value.series[c.value.series.length - 1].y;
    check(JSON.stringify(y) === JSON.stringify(want.map(i => i * 0.5)), `value = step/2: ${y}`);
    check(JSON.stringify(c.i.series[c.i.series.length - 1].y) === JSON.stringify(want), 'i = step');
  }

  // A long run: sections by key prefix, buckets with a min-max band.
  if (cfg.demo) {
    await go(page, `#/run/${cfg.demo}`, 'demo run');
    const sections = await page.$$eval('#metrics h2', hs => hs.map(h => h.textContent));
    facts.sections = sections;
    check(JSON.stringify(sections) === JSON.stringify(['train', 'val']), `sections: ${sections}`);
    const d = await charts(page);
    check(JSON.stringify(Object.keys(d).sort()) ===
      JSON.stringify(['train/acc', 'train/loss', 'train/lr', 'val/acc', 'val/loss']),
      `demo charts: ${Object.keys(d)}`);
    const loss = d['train/loss'];
    const labels = loss.series.map(s => s.label);
    facts.demo = { points: loss.x.length, labels };
    check(loss.x.length <= 1000 && loss.x.length > 100, `bucketed: ${loss.x.length} points`);
    check(labels.some(l => l.endsWith(' min')) && labels.some(l => l.endsWith(' max')),
      `a min-max band where points were aggregated: ${labels}`);
    check(d['val/loss'].x.length === 30, `val/loss: every point (${d['val/loss'].x.length})`);
    // Zoom (a drag: uPlot's select, then its x scale) asks for finer buckets
    // of the range: every point of [1000, 1200] instead of ~1/3 of them.
    const inRange = xs => xs.filter(x => x >= 1000 && x <= 1200).length;
    const before = inRange(loss.x);
    await page.evaluate(() => {
      const u = window.trackdUI.charts['train/loss'];
      u.setSelect({ left: 10, width: 100, top: 0, height: 100 }, true);
      u.setScale('x', { min: 1000, max: 1200 });
    });
    await page.waitForFunction(() => {
      const x = window.trackdUI.charts['train/loss'].data[0];
      return x.filter(v => v >= 1000 && v <= 1200).length === 201;
    }, { timeout: 10000 }).catch(() => { throw new Error(`zoom did not refetch (${before} points)`); });
    facts.zoom = { before, after: 201 };
    // A chart's title links to it: the metric goes into the URL.
    await page.click('.chart[data-key="val/acc"] .title');
    const h = await page.evaluate(() => location.hash);
    check(h.includes('metric=val%2Facc'), `metric in the URL: ${h}`);
  }

  // Smoothing and log scale are kept in the URL and restored from it.
  const one = Object.keys(cfg.exact)[0];
  await go(page, `#/run/${one}?smooth=0.5&log=1&x=_runtime`, 'run with options');
  const restored = await page.evaluate(() => ({
    smooth: document.querySelector('#smooth').value, log: document.querySelector('#logy').checked,
    axis: document.querySelector('#axis').value }));
  check(restored.smooth === '0.5' && restored.log && restored.axis === '_runtime',
    `view restored from the URL: ${JSON.stringify(restored)}`);
  const sm = await charts(page);
  check(sm.value.series.some(s => s.label.endsWith('(raw)')), 'smoothing draws raw + EMA');

  // Live: rows logged after the page loaded appear without a reload, and
  // polls ask only past what the page holds (x_min).
  await go(page, `#/run/${cfg.live}`, 'live run');
  const maxX = async () => page.evaluate(() => {
    const u = window.trackdUI.charts.value;
    return u ? Math.max(...u.data[0]) : -1;
  });
  const first = await maxX();
  apiRequests.length = 0;
  const t0 = Date.now();
  let later = first;
  while (later <= first && Date.now() - t0 < 10000) {
    await sleep(200);
    later = await maxX();
  }
  facts.live = { first, later, ms: Date.now() - t0 };
  check(later > first, `new rows appear on the open page (${first} → ${later})`);
  const polls = apiRequests.filter(u => u.includes('/api/series') || u.includes('/api/history'));
  check(polls.length > 0, 'the page polls');
  check(polls.every(u => /[?&](x_min|from)=/.test(u)), `polls ask only for new data: ${polls}`);
  // The agent's row count vs what the page shows, a moment apart: the page
  // lags the log by at most a poll or two.
  const lag = await page.evaluate(async id => {
    const r = await fetch(`/api/run?run=${id}`).then(r => r.json());
    const rows = r.run.history_lines;
    const t = Date.now();
    for (;;) {
      const u = window.trackdUI.charts.value;
      const held = u ? u.data[0].length : 0;
      if (held >= rows) return Date.now() - t;
      if (Date.now() - t > 10000) return -1;
      await new Promise(res => setTimeout(res, 50));
    }
  }, cfg.live);
  facts.live.lag_ms = lag;
  check(lag >= 0 && lag <= 2500, `rows logged are on the page within ~2 s (took ${lag} ms)`);

  // System metrics: the agent's samples of the live run (events.jsonl), one
  // chart per system.* key, holding the sampled values.
  await page.waitForFunction(() => Object.keys(window.trackdUI.systemCharts)
    .some(k => k.startsWith('system.')), { timeout: 20000 })
    .catch(() => { throw new Error('no System charts on the live run'); });
  const sys = await page.evaluate(async id => {
    const events = await fetch(`/api/history?run=${id}&stream=events`).then(r => r.json());
    const charts = {};
    for (const [k, u] of Object.entries(window.trackdUI.systemCharts))
      charts[k] = { x: Array.from(u.data[0]), y: Array.from(u.data[u.data.length - 1]) };
    return { lines: events.lines || [], charts };
  }, cfg.live);
  const sysKeys = Object.keys(sys.charts).sort();
  facts.system = { keys: sysKeys, samples: sys.lines.length };
  check(sys.lines.length > 0 && sysKeys.every(k => k.startsWith('system.')),
    `System charts of system.* keys: ${sysKeys}`);
  const k0 = sysKeys[0];
  const want = sys.lines.filter(l => typeof l[k0] === 'number' && typeof l._runtime === 'number');
  const got = sys.charts[k0];
  check(want.length > 0 && want.every(l => got.x.includes(l._runtime) &&
    got.y[got.x.indexOf(l._runtime)] === l[k0]), `${k0}: the sampled values (${JSON.stringify(got)})`);

  // Console output, with search.
  if (cfg.console) {
    await go(page, `#/run/${cfg.console}`, 'console run');
    const lines = await page.evaluate(() => window.trackdUI.console.slice());
    facts.console = lines.length;
    check(lines.length > 0, 'console lines shown');
    // A long console opens on its last 2000 lines; "earlier lines" brings the rest.
    await go(page, `#/run/${cfg.long_console}`, 'long console');
    await page.waitForFunction(() => window.trackdUI.console.length === 2000, { timeout: 10000 })
      .catch(() => { throw new Error('the last 2000 console lines'); });
    await page.click('#console-earlier');
    await page.waitForFunction(() => window.trackdUI.console.length === 2100, { timeout: 10000 })
      .catch(() => { throw new Error('earlier console lines'); });
    const ends = await page.evaluate(() => [window.trackdUI.console[0],
      window.trackdUI.console[2099]]);
    check(/ row 0$/.test(ends[0].trim()) && / row 2099$/.test(ends[1].trim()), `console order: ${ends}`);
    await go(page, `#/run/${cfg.console}`, 'console run again');
    await page.type('#grep', 'row 1');
    await page.waitForFunction(() => window.trackdUI.console.length > 0 &&
      window.trackdUI.console.every(l => l.includes('row 1')), { timeout: 10000 });
  }

  // Compare: both runs on every chart, each in its own stable colour.
  await go(page, `#/compare?runs=${cfg.compare.join(',')}`, 'compare');
  const cc = await charts(page);
  const labels = cc.value.series.map(s => s.label);
  facts.compare = labels;
  check(labels.length === 2, `two lines on the compare chart: ${labels}`);
  const colors = await page.evaluate(() => window.trackdUI.charts.value.series.slice(1)
    .map(s => s.stroke()));
  check(new Set(colors).size === 2, `two colours: ${colors}`);

  if (cfg.screenshot) {
    await page.setViewport({ width: 1280, height: 1000 });
    await go(page, `#/run/${cfg.screenshot_run}?smooth=0.6`, 'screenshot run');
    await sleep(500);
    await page.screenshot({ path: cfg.screenshot, fullPage: false });
  }
  check(pageErrors.length === 0, `no script errors: ${pageErrors}`);
  facts.errors = await page.evaluate(() => window.trackdUI.errors);
} catch (e) {
  failed = e;
} finally {
  await browser.close();
}
if (failed) {
  console.error(String(failed.stack || failed));
  console.log(JSON.stringify({ ok: false, error: String(failed.message), facts }));
  process.exit(1);
}
console.log(JSON.stringify({ ok: true, facts }));
