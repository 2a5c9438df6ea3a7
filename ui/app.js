/*
 * app.js — the web UI of trackctl ui: vanilla JS over the read-only JSON API
 * (/api/runs, /api/run, /api/series, /api/console, /api/history, and
 * /api/file for a run's media files), charts by
 * uPlot. Three views, each fully described by the URL's hash so a reload or a
 * shared link restores it:
 *
 *   #/runs?q=TEXT&cfg=KEY=VALUE&sort=COL&desc=1&sel=ID,ID   the runs table
 *   #/run/ID?x=AXIS&log=1&smooth=0.6&metric=KEY&grep=S      one run
 *   #/compare?runs=ID,ID&x=AXIS&log=1&smooth=0.6           runs overlaid
 *
 * Live: a view polls every POLL_MS while it is shown, asking only for what it
 * does not hold (series past the last x it has, console lines past the last
 * one), and stops when the run has ended and the last poll brought nothing.
 *
 * Extension point: a run page is made of panels; `panelProviders` lists the
 * functions that add them (metrics, system, media, console). A provider for system metrics
 * or media appends itself to window.trackdUI.panelProviders.
 *
 * For tests, window.trackdUI exposes the current view's state (runs, the
 * uPlot instances by metric key, the console lines held).
 */
'use strict';

const POLL_MS = 1000;            /* live updates: new rows visible within ~1 s */
const RUNS_POLL_MS = 2000;
const BUCKETS = 1000;            /* points per chart asked of the agent */
const HISTORY_PAGE = 10000;      /* rows per history page (fallback path) */
const CONSOLE_TAIL = 2000;       /* console lines shown when a page opens */
const AXES = ['_step', '_runtime', '_timestamp'];
const PALETTE = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2',
  '#db2777', '#65a30d', '#4f46e5', '#b45309', '#0d9488', '#7c3aed'];

const ui = window.trackdUI = {
  view: null, runs: [], charts: {}, systemCharts: {}, series: {}, console: [], panelProviders: [],
  polls: 0, errors: [],
};

/* ---- small helpers --------------------------------------------------------- */

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
  return e;
}

function fmtNum(v) {
  if (v === null || v === undefined) return '';
  if (typeof v !== 'number') return String(v);
  if (!isFinite(v)) return String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(4) : String(+v.toPrecision(6));
}
/* Axis ticks: short (the legend has the exact value under the cursor). */
function fmtTick(v) {
  if (v === null || !isFinite(v)) return '';
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(1) : String(+v.toPrecision(4));
}
function fmtValue(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'number') return fmtNum(v);
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}
function fmtTime(t) { return t ? new Date(t * 1000).toLocaleString() : ''; }
function fmtDuration(s) {
  if (s === null || s === undefined || !isFinite(s)) return '';
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
  return h ? `${h}h ${m}m ${sec}s` : m ? `${m}m ${sec}s` : `${sec}s`;
}
function runtime(r) {
  const end = r.end_time || (r.state === 'running' ? Date.now() / 1000 : null);
  return r.start_time && end ? end - r.start_time : (r.summary && r.summary._runtime);
}

/* Stable colour per run: a string hash of the id into the palette. */
function runColor(id) {
  let h = 2166136261;
  for (let i = 0; i < id.length; i++) h = Math.imul(h ^ id.charCodeAt(i), 16777619);
  return PALETTE[(h >>> 0) % PALETTE.length];
}

function setStatus(msg) { document.getElementById('status').textContent = msg || ''; }

class ApiError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {}))
    if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const res = await fetch(`/api/${path}?${q}`, { credentials: 'same-origin' });
  let body = null;
  try { body = await res.json(); } catch (e) { /* not JSON: reported below */ }
  if (!res.ok) throw new ApiError(res.status, (body && body.error) || res.statusText);
  return body;
}

/* The hash: "#/view/arg?k=v&…" → {view, arg, params}. */
function parseHash() {
  const h = location.hash.replace(/^#\/?/, '');
  const [pathPart, query] = h.split('?');
  const parts = pathPart.split('/').filter(Boolean).map(decodeURIComponent);
  return { view: parts[0] || 'runs', arg: parts.slice(1).join('/'),
    params: new URLSearchParams(query || '') };
}
function hashFor(view, arg, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params))
    if (v !== undefined && v !== null && v !== '' && v !== false) q.set(k, v === true ? '1' : v);
  const qs = q.toString();
  return `#/${view}${arg ? '/' + encodeURIComponent(arg) : ''}${qs ? '?' + qs : ''}`;
}
/* Updates the address without a new history entry or a re-render. */
function replaceHash(view, arg, params) {
  history.replaceState(null, '', hashFor(view, arg, params));
}

/* ---- series: one run's chart data, loaded once then extended ---------------- */

/* TensorBoard's smoothing: an exponential moving average, debiased so the
 * first points are not pulled towards zero. Non-finite values pass through. */
function ema(ys, weight) {
  if (!weight) return ys;
  const out = new Array(ys.length);
  let last = 0, n = 0;
  for (let i = 0; i < ys.length; i++) {
    const y = ys[i];
    if (y === null || !isFinite(y)) { out[i] = y; continue; }
    last = last * weight + (1 - weight) * y;
    n++;
    out[i] = last / (1 - Math.pow(weight, n));
  }
  return out;
}

/*
 * RunSeries holds, for one run and one x axis, every metric's points as the
 * agent sent them: per key {x, min, max, last, count}. load() asks for the
 * whole run (bucketed), poll() only past the last x held (x_min). When the
 * agent does not know the series query yet, the same shape is built from
 * history pages (every row; poll from the next line).
 */
class RunSeries {
  constructor(run, axis) {
    this.run = run; this.axis = axis; this.keys = {}; this.rows = 0;
    this.mode = 'series'; this.nextLine = 0; this.lastX = -Infinity;
  }
  static numeric(v) { return typeof v === 'number' && isFinite(v); }
  add(key, x, min, max, last, count) {
    let s = this.keys[key];
    if (!s) s = this.keys[key] = { x: [], min: [], max: [], last: [], count: [] };
    s.x.push(x); s.min.push(min); s.max.push(max); s.last.push(last); s.count.push(count);
    if (x > this.lastX) this.lastX = x;
  }
  absorbSeries(reply, replace) {
    if (replace) this.keys = {};
    this.rows = reply.rows || this.rows;
    let added = 0;
    for (const s of reply.series || []) {
      for (let i = 0; i < s.x.length; i++) {
        const held = this.keys[s.key];
        /* x_min is inclusive: skip a point this series already has. */
        if (held && held.x.length && s.x[i] <= held.x[held.x.length - 1]) continue;
        this.add(s.key, s.x[i], s.min[i], s.max[i], s.last[i], s.count ? s.count[i] : 1);
        added++;
      }
      if (!this.keys[s.key]) this.keys[s.key] = { x: [], min: [], max: [], last: [], count: [] };
    }
    return added;
  }
  absorbRows(lines) {
    let added = 0;
    for (const row of lines) {
      const x = this.axis in row ? row[this.axis] : null;
      if (!RunSeries.numeric(x)) continue;
      for (const [k, v] of Object.entries(row)) {
        if (k === this.axis || !RunSeries.numeric(v)) continue;
        this.add(k, x, v, v, v, 1);
        added++;
      }
    }
    return added;
  }
  async load() {
    try {
      const reply = await api('series', { run: this.run, x: this.axis, buckets: BUCKETS });
      this.absorbSeries(reply, true);
      return;
    } catch (e) {
      /* An agent without the series query answers "unknown … query":
       * read history instead; anything else is the caller's error. */
      if (!(e instanceof ApiError) || !/unknown/i.test(e.message)) throw e;
    }
    this.mode = 'history';
    this.keys = {};
    this.nextLine = 0;
    await this.pollHistory();
  }
  async pollHistory() {
    let added = 0;
    for (;;) {
      const page = await api('history', { run: this.run, from: this.nextLine, max: HISTORY_PAGE });
      added += this.absorbRows(page.lines || []);
      const next = page.next_line ?? this.nextLine + (page.lines || []).length;
      const done = next <= this.nextLine || next >= (page.total_lines ?? next);
      this.nextLine = next;
      this.rows = this.nextLine;
      if (done) return added;
    }
  }
  /* New points since the last call; 0 when there are none. */
  async poll() {
    if (this.mode === 'history') return this.pollHistory();
    const params = { run: this.run, x: this.axis, buckets: BUCKETS };
    if (isFinite(this.lastX)) params.x_min = this.lastX;
    const reply = await api('series', params);
    return this.absorbSeries(reply, false);
  }
  /* Finer data for [lo, hi] of one key (zoom), without touching what is held. */
  async range(key, lo, hi) {
    if (this.mode === 'history') return null;
    const reply = await api('series', { run: this.run, keys: key, x: this.axis,
      x_min: lo, x_max: hi, buckets: BUCKETS });
    return (reply.series || [])[0] || null;
  }
  chartKeys() {
    return Object.keys(this.keys).filter(k => !k.startsWith('_') && k !== this.axis).sort();
  }
}

/* "train/loss" → "train"; keys without a prefix go to "Charts" (W&B's sections). */
function sectionOf(key) {
  const i = key.indexOf('/');
  return i > 0 ? key.slice(0, i) : 'Charts';
}

/* ---- charts ------------------------------------------------------------------ */

/*
 * One chart: one or more runs' lines for one metric key. `lines` is
 * [{label, color, s}] where s = {x, min, max, last, count}. Aggregated buckets
 * (count > 1) get a min–max band; smoothing draws the EMA over a faint raw
 * line. Hover: uPlot's legend shows the exact values under the cursor.
 */
function chartData(lines, opts) {
  const xs = new Set();
  for (const l of lines) for (const x of l.s.x) xs.add(x);
  const x = Float64Array.from(xs).sort();
  const data = [Array.from(x)];
  const series = [{ label: opts.axis, value: (u, v) => fmtNum(v) }];
  const bands = [];
  const logOk = v => (opts.log && v !== null && !(v > 0)) ? null : v;
  for (const l of lines) {
    const at = new Map(l.s.x.map((v, i) => [v, i]));
    const pick = arr => data[0].map(xv => at.has(xv) ? logOk(arr[at.get(xv)]) : null);
    const last = pick(l.s.last);
    const aggregated = l.s.count.some(c => c > 1);
    if (aggregated) {
      const maxIdx = data.length;
      data.push(pick(l.s.max));
      series.push({ label: `${l.label} max`, stroke: 'transparent', points: { show: false },
        value: (u, v) => fmtNum(v), spanGaps: true });
      data.push(pick(l.s.min));
      series.push({ label: `${l.label} min`, stroke: 'transparent', points: { show: false },
        value: (u, v) => fmtNum(v), spanGaps: true });
      bands.push({ series: [maxIdx, maxIdx + 1], fill: l.color + '30' });
    }
    if (opts.smooth > 0) {
      data.push(last);
      series.push({ label: `${l.label} (raw)`, stroke: l.color + '40', width: 1, spanGaps: true,
        points: { show: false }, value: (u, v) => fmtNum(v) });
      data.push(ema(last, opts.smooth));
    } else {
      data.push(last);
    }
    series.push({ label: l.label, stroke: l.color, width: 1.5, spanGaps: true,
      value: (u, v) => fmtNum(v) });
  }
  return { data, series, bands };
}

function makeChart(container, key, lines, opts, onZoom) {
  const { data, series, bands } = chartData(lines, opts);
  const width = Math.max(300, container.clientWidth - 14);
  const chartOpts = {
    width, height: 240, series, bands,
    scales: { x: { time: opts.axis === '_timestamp' }, y: opts.log ? { distr: 3 } : {} },
    axes: [{}, { size: 60, values: (u, vals) => vals.map(fmtTick) }],
    cursor: { drag: { x: true, y: false } },
    legend: { live: true },
    hooks: {},
  };
  if (onZoom) {
    let selecting = false;
    chartOpts.hooks.setSelect = [() => { selecting = true; }];
    chartOpts.hooks.setScale = [(u, scale) => {
      if (scale !== 'x' || !selecting) return;
      selecting = false;
      onZoom(u, u.scales.x.min, u.scales.x.max);
    }];
  }
  const u = new uPlot(chartOpts, data, container);
  u.trackdKey = key;
  return u;
}

/* ---- views ------------------------------------------------------------------- */

let current = null; /* the view shown: {stop()} */

function stopCurrent() {
  if (current && current.stop) current.stop();
  current = null;
  for (const u of Object.values(ui.charts)) u.destroy();
  for (const u of Object.values(ui.systemCharts)) u.destroy();
  ui.charts = {};
  ui.systemCharts = {};
  ui.series = {};
  ui.console = [];
}

function showError(container, e) {
  const msg = e instanceof ApiError ? `${e.status}: ${e.message}` : String(e);
  ui.errors.push(msg);
  container.append(el('div', { class: 'err' }, msg));
}

/* A loop that calls fn every `ms` until stopped; errors show in the header. */
function poller(fn, ms) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); setStatus(''); } catch (e) { setStatus(String(e.message || e)); }
    ui.polls++;
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => { stopped = true; clearTimeout(timer); };
}

/* -- the runs table -- */

function summaryColumns(runs) {
  const cols = new Set();
  for (const r of runs)
    for (const [k, v] of Object.entries(r.summary || {}))
      if (!k.startsWith('_') && (typeof v === 'number' || typeof v === 'string')) cols.add(k);
  return [...cols].sort();
}

function textMatcher(q) {
  if (!q) return () => true;
  const m = q.match(/^\/(.*)\/([i]?)$/);
  if (m) {
    try { const re = new RegExp(m[1], m[2]); return s => re.test(s); } catch (e) { /* as text */ }
  }
  const lower = q.toLowerCase();
  return s => s.toLowerCase().includes(lower);
}

/* "key=value" (several separated by ';'): the run's config value, as text. */
function configMatcher(cfg) {
  if (!cfg) return () => true;
  const conds = cfg.split(';').map(c => c.trim()).filter(Boolean).map(c => {
    const i = c.indexOf('=');
    return i < 0 ? [c, null] : [c.slice(0, i).trim(), c.slice(i + 1).trim()];
  });
  return r => conds.every(([k, v]) => {
    let val = r.config || {};
    for (const part of k.split('.')) val = val && typeof val === 'object' ? val[part] : undefined;
    return v === null ? val !== undefined : val !== undefined && fmtValue(val) === v;
  });
}

function renderRuns(main, params) {
  const state = {
    q: params.get('q') || '', cfg: params.get('cfg') || '',
    sort: params.get('sort') || 'start', desc: params.get('desc') !== '0',
    sel: new Set((params.get('sel') || '').split(',').filter(Boolean)),
  };
  const save = () => replaceHash('runs', '', { q: state.q, cfg: state.cfg, sort: state.sort,
    desc: state.desc ? '1' : '0', sel: [...state.sel].join(',') });
  const filter = el('input', { type: 'text', id: 'filter', value: state.q,
    placeholder: 'filter: name, project, tag, state (or /regex/)' });
  const cfgFilter = el('input', { type: 'text', id: 'cfgfilter', value: state.cfg,
    placeholder: 'config: key=value; key2=value' });
  const compareBtn = el('button', { id: 'compare' }, 'Compare selected');
  const count = el('span', { class: 'muted' });
  const table = el('table', { class: 'runs', id: 'runs' });
  main.append(el('h1', {}, 'Runs'),
    el('div', { class: 'toolbar' }, filter, cfgFilter, compareBtn, count),
    el('div', { class: 'tablewrap' }, table));

  const base = [
    { id: 'sel', title: '', get: () => '' },
    { id: 'state', title: 'State', get: r => r.state },
    { id: 'name', title: 'Name', get: r => r.display_name || r.id },
    { id: 'project', title: 'Project', get: r => r.project },
    { id: 'group', title: 'Group', get: r => r.group },
    { id: 'tags', title: 'Tags', get: r => (r.tags || []).join(' ') },
    { id: 'host', title: 'Host', get: r => r.host },
    { id: 'start', title: 'Started', get: r => r.start_time },
    { id: 'runtime', title: 'Runtime', get: r => runtime(r) },
  ];
  const draw = () => {
    const runs = ui.runs;
    const cols = base.concat(summaryColumns(runs).map(k => ({
      id: 's:' + k, title: k, get: r => (r.summary || {})[k], num: true })));
    const m = textMatcher(state.q), c = configMatcher(state.cfg);
    const shown = runs.filter(r => m([r.display_name, r.id, r.project, r.state,
      ...(r.tags || [])].join('\n')) && c(r));
    const col = cols.find(k => k.id === state.sort) || cols[7];
    shown.sort((a, b) => {
      const x = col.get(a), y = col.get(b);
      const d = x === y ? 0 : x === undefined || x === null ? 1 : y === undefined || y === null ? -1
        : typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
      return state.desc ? -d : d;
    });
    ui.shownRuns = shown.map(r => r.id);
    count.textContent = `${shown.length} of ${runs.length} runs`;
    table.replaceChildren(el('thead', {}, el('tr', {}, cols.map(k => el('th', {
      'data-col': k.id,
      onclick: () => {
        if (k.id === 'sel') return;
        if (state.sort === k.id) state.desc = !state.desc; else { state.sort = k.id; state.desc = false; }
        save(); draw();
      } }, k.title + (state.sort === k.id ? (state.desc ? ' ▼' : ' ▲') : ''))))),
    el('tbody', {}, shown.map(r => el('tr', { 'data-run': r.id }, cols.map(k => {
      if (k.id === 'sel') {
        const box = el('input', { type: 'checkbox', class: 'sel', checked: state.sel.has(r.id),
          onchange: () => { box.checked ? state.sel.add(r.id) : state.sel.delete(r.id); save(); } });
        return el('td', {}, box);
      }
      if (k.id === 'state') return el('td', {}, el('span', { class: 'state ' + r.state }, r.state));
      if (k.id === 'name') return el('td', {}, el('span', { class: 'swatch',
        style: `background:${runColor(r.id)}` }), el('a', { href: hashFor('run', r.id, {}) },
        r.display_name || r.id));
      if (k.id === 'tags') return el('td', {}, (r.tags || []).map(t => el('span', { class: 'tag' }, t)));
      if (k.id === 'start') return el('td', {}, fmtTime(r.start_time));
      if (k.id === 'runtime') return el('td', { class: 'num' }, fmtDuration(runtime(r)));
      return el('td', { class: k.num ? 'num' : '' }, fmtValue(k.get(r)));
    })))));
  };
  filter.addEventListener('input', () => { state.q = filter.value; save(); draw(); });
  cfgFilter.addEventListener('input', () => { state.cfg = cfgFilter.value; save(); draw(); });
  compareBtn.addEventListener('click', () => {
    if (state.sel.size) location.hash = hashFor('compare', '', { runs: [...state.sel].join(',') });
  });
  const load = async () => { ui.runs = (await api('runs')).runs || []; draw(); ui.ready = true; };
  load().catch(e => showError(main, e));
  return { stop: poller(load, RUNS_POLL_MS) };
}

/* -- chart controls shared by the run and compare views -- */

function chartControls(opts, keys, onChange) {
  const axis = el('select', { id: 'axis' }, [...AXES, ...keys.filter(k => !AXES.includes(k))]
    .map(a => el('option', { value: a, selected: a === opts.axis }, a)));
  const log = el('input', { type: 'checkbox', id: 'logy', checked: opts.log });
  const smooth = el('input', { type: 'range', id: 'smooth', min: 0, max: 0.99, step: 0.01,
    value: opts.smooth });
  const smoothVal = el('span', { class: 'muted' }, String(opts.smooth));
  axis.addEventListener('change', () => { opts.axis = axis.value; onChange('axis'); });
  log.addEventListener('change', () => { opts.log = log.checked; onChange('log'); });
  smooth.addEventListener('input', () => {
    opts.smooth = +smooth.value; smoothVal.textContent = smooth.value; onChange('smooth');
  });
  return el('div', { class: 'toolbar' }, el('label', {}, 'x axis ', axis),
    el('label', {}, log, ' log y'), el('label', {}, 'smoothing ', smooth, ' ', smoothVal));
}

function chartOptsFrom(params) {
  return { axis: params.get('x') || '_step', log: params.get('log') === '1',
    smooth: Math.min(0.99, Math.max(0, +(params.get('smooth') || 0))) };
}

/*
 * Draws one chart per key of `sources` ([{id, label, color, rs: RunSeries}])
 * into `box`, grouped in sections by key prefix. Returns redraw(), which
 * updates every chart's data in place (live polls, smoothing changes).
 */
function drawCharts(box, sources, opts, focus, onTitle) {
  for (const u of Object.values(ui.charts)) u.destroy();
  ui.charts = {};
  box.replaceChildren();
  const keys = [...new Set(sources.flatMap(s => s.rs.chartKeys()))].sort();
  const sections = new Map();
  for (const k of keys) {
    const sec = sectionOf(k);
    if (!sections.has(sec)) sections.set(sec, []);
    sections.get(sec).push(k);
  }
  const linesFor = k => sources.filter(s => s.rs.keys[k]).map(s =>
    ({ label: s.label, color: s.color, s: s.rs.keys[k] }));
  const zoomed = {};
  for (const [sec, ks] of [...sections].sort((a, b) =>
    (a[0] === 'Charts') - (b[0] === 'Charts') || a[0].localeCompare(b[0]))) {
    const grid = el('div', { class: 'charts' });
    box.append(el('h2', {}, sec), grid);
    for (const k of ks) {
      /* Clicking a title puts the metric in the URL (a link to this chart). */
      const holder = el('div', { class: 'chart', 'data-key': k, id: 'chart-' + k },
        el('div', { class: 'title', title: 'link to this chart',
          onclick: () => onTitle && onTitle(k) }, k));
      grid.append(holder);
      /* Zoom: ask for finer buckets of the selected range, one run at a time. */
      const onZoom = async (u, lo, hi) => {
        zoomed[k] = true;
        const lines = [];
        for (const s of sources) {
          const fine = s.rs.keys[k] ? await s.rs.range(k, lo, hi) : null;
          if (fine) lines.push({ label: s.label, color: s.color, s: fine });
          else if (s.rs.keys[k]) lines.push({ label: s.label, color: s.color, s: s.rs.keys[k] });
        }
        u.setData(chartData(lines, opts).data, false);
      };
      const u = makeChart(holder, k, linesFor(k), opts, onZoom);
      /* Double-click resets uPlot's zoom: show everything held again. */
      u.over.addEventListener('dblclick', () => {
        zoomed[k] = false;
        u.setData(chartData(linesFor(k), opts).data);
      });
      ui.charts[k] = u;
    }
  }
  if (focus && ui.charts[focus])
    document.getElementById('chart-' + focus).scrollIntoView();
  if (!keys.length) box.append(el('p', { class: 'muted' }, 'No numeric metrics logged yet.'));
  return () => {
    const now = [...new Set(sources.flatMap(s => s.rs.chartKeys()))].sort();
    if (now.join('\n') !== keys.join('\n')) return drawCharts(box, sources, opts, null, onTitle);
    for (const k of keys) if (!zoomed[k]) ui.charts[k].setData(chartData(linesFor(k), opts).data);
    return null;
  };
}

/* -- the run page and its panels -- */

function metaRow(label, value) { return [el('div', { class: 'muted' }, label), el('div', {}, value)]; }

function kvTable(obj) {
  const rows = Object.entries(obj || {}).filter(([k]) => !k.startsWith('_'));
  if (!rows.length) return el('span', { class: 'muted' }, '(none)');
  return el('table', { class: 'kv' }, rows.map(([k, v]) => el('tr', {}, el('td', {}, k),
    el('td', {}, fmtValue(v)))));
}

/* Panel: the metrics, one chart per key. */
async function metricsPanel(ctx) {
  const box = el('div', { id: 'metrics' });
  const toolbarSlot = el('div');
  ctx.container.append(el('h2', {}, 'Metrics'), toolbarSlot, box);
  let rs = new RunSeries(ctx.runId, ctx.opts.axis);
  await rs.load();
  ui.series[ctx.runId] = rs;
  const source = [{ id: ctx.runId, label: ctx.label, color: runColor(ctx.runId), rs }];
  const onTitle = k => { ctx.params.set('metric', k); ctx.save(); };
  let redraw = drawCharts(box, source, ctx.opts, ctx.params.get('metric'), onTitle);
  const controls = () => toolbarSlot.replaceChildren(chartControls(ctx.opts,
    Object.keys(rs.keys).filter(k => !k.startsWith('_')), async what => {
      ctx.save();
      if (what === 'axis') {
        rs = new RunSeries(ctx.runId, ctx.opts.axis);
        await rs.load();
        ui.series[ctx.runId] = rs;
        source[0].rs = rs;
        controls();
      }
      redraw = drawCharts(box, source, ctx.opts, null, onTitle);
    }));
  controls();
  ctx.onPoll(async () => {
    /* A metric as x axis is not ordered by time: reload it whole, while
     * the run can still add to it. */
    let added = 0;
    if (AXES.includes(ctx.opts.axis)) added = await rs.poll();
    else if (ctx.info.state === 'running') { await rs.load(); added = 1; }
    if (added) redraw = redraw() || redraw;
    return added;
  });
}

/* Panel: system metrics — the agent's samples of the run (events.jsonl, the
 * history query's "events" stream: W&B's system.* keys, one line per pass of
 * its sampler), one chart per key against the run's time (_runtime). Samples
 * are few (one per interval), so they come as they are, not bucketed; a poll
 * asks only for the lines after those held. */
async function systemPanel(ctx) {
  const box = el('div', { id: 'system' });
  ctx.container.append(el('h2', {}, 'System'), box);
  const rs = new RunSeries(ctx.runId, '_runtime');
  let next = 0, total = 0;
  const fetchMore = async () => {
    let added = 0;
    for (;;) {
      const page = await api('history', { run: ctx.runId, stream: 'events', from: next,
        max: HISTORY_PAGE });
      added += rs.absorbRows(page.lines || []);
      const n = page.next_line ?? next + (page.lines || []).length;
      const done = n <= next || n >= (page.total_lines ?? n);
      next = n;
      if (done) return added;
    }
  };
  const draw = () => {
    for (const u of Object.values(ui.systemCharts)) u.destroy();
    ui.systemCharts = {};
    const keys = rs.chartKeys();
    if (!keys.length) {
      box.replaceChildren(el('p', { class: 'muted' }, 'no system metrics sampled for this run'));
      return;
    }
    const grid = el('div', { class: 'charts' });
    box.replaceChildren(grid);
    const opts = { ...ctx.opts, axis: '_runtime', smooth: 0 };
    for (const k of keys) {
      const holder = el('div', { class: 'chart', 'data-key': k },
        el('div', { class: 'title' }, k.replace(/^system\./, '')));
      grid.append(holder);
      ui.systemCharts[k] = makeChart(holder, k,
        [{ label: ctx.label, color: runColor(ctx.runId), s: rs.keys[k] }], opts, null);
    }
  };
  await fetchMore();
  draw();
  ctx.onPoll(async () => {
    const added = await fetchMore();
    if (added) draw();
    return added;
  });
}

/* Panel: console output (output.log), with search. */
async function consolePanel(ctx) {
  const grep = el('input', { type: 'text', id: 'grep', value: ctx.params.get('grep') || '',
    placeholder: 'search the console (substring)' });
  const pre = el('pre', { id: 'console' });
  const info = el('span', { class: 'muted' });
  /* The page opens on the last CONSOLE_TAIL lines; older ones a page at a time. */
  const earlier = el('button', { id: 'console-earlier', hidden: true }, 'earlier lines');
  ctx.container.append(el('h2', {}, 'Console'),
    el('div', { class: 'console' }, el('div', { class: 'toolbar' }, grep, earlier, info), pre));
  let next = 0, first = 0;
  const lineNodes = (line, num) => [el('span', { class: 'ln' }, String(num + 1).padStart(6) + '  '),
    line.replace(/\n$/, '') + '\n'];
  const append = page => {
    const nums = page.line_numbers && page.line_numbers.length ? page.line_numbers
      : (page.lines || []).map((_, i) => (page.from_line || 0) + i);
    (page.lines || []).forEach((line, i) => {
      ui.console.push(line);
      pre.append(...lineNodes(line, nums[i]));
    });
    next = page.next_line ?? next + (page.lines || []).length;
    info.textContent = `${page.total_lines ?? next} lines`;
    if (page.lines && page.lines.length) pre.scrollTop = pre.scrollHeight;
    return (page.lines || []).length;
  };
  const fetchFrom = from => api('console', { run: ctx.runId, from, max: CONSOLE_TAIL,
    grep: grep.value });
  const restart = async () => {
    pre.replaceChildren();
    ui.console = [];
    const total = ctx.info.console_lines || 0;
    next = first = grep.value ? 0 : Math.max(0, total - CONSOLE_TAIL);
    earlier.hidden = first === 0;
    try { append(await fetchFrom(next)); } catch (e) {
      info.textContent = e instanceof ApiError && /unknown/i.test(e.message)
        ? 'this agent does not serve console output yet' : String(e.message);
      return false;
    }
    return true;
  };
  earlier.addEventListener('click', async () => {
    const from = Math.max(0, first - CONSOLE_TAIL);
    const page = await api('console', { run: ctx.runId, from, max: first - from });
    const lines = page.lines || [];
    pre.prepend(...lines.flatMap((line, i) => lineNodes(line, from + i)));
    ui.console.unshift(...lines);
    first = from;
    earlier.hidden = first === 0;
  });
  let timer = null;
  grep.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => { ctx.save(); restart(); }, 250);
  });
  ctx.getGrep = () => grep.value;
  if (!(await restart())) return;
  ctx.onPoll(async () => append(await fetchFrom(next)));
}

/* Panel: media — W&B's objects in the run's rows (WANDB-FEATURES.md §2.2):
 * per image key the image of a step, per histogram key its bars, per table
 * key its rows; a step slider per key (a range input: arrow keys, Home/End).
 * Media keys are those whose summary value is a media object; their steps
 * come from the history query asked for those keys only, at most
 * MEDIA_MAX_ROWS rows (a live run's new rows are read as it polls). Files
 * come from /api/file (the agent checks who asks and the file's SHA-256); a
 * table shows at most TABLE_ROWS_SHOWN rows and counts the rest. */
const MEDIA_TYPES = { 'image-file': 'image', 'images/separated': 'images', histogram: 'histogram',
  'table-file': 'table' };
const MEDIA_MAX_ROWS = 50000;
const TABLE_ROWS_SHOWN = 100;

function fileUrl(runId, name) {
  return `/api/file?${new URLSearchParams({ run: runId, name })}`;
}

function histogramChart(holder, value, width) {
  const bins = value.bins || [], counts = value.values || [];
  const xs = counts.map((_, i) => (bins[i] + bins[i + 1]) / 2);
  return new uPlot({
    width, height: 200, legend: { show: false },
    scales: { x: { time: false } },
    axes: [{ values: (u, vals) => vals.map(fmtTick) }, { size: 50, values: (u, vals) => vals.map(fmtTick) }],
    series: [{}, { label: 'count', stroke: '#2563eb', fill: '#2563eb60',
      paths: uPlot.paths.bars({ size: [0.95, 100] }), points: { show: false } }],
  }, [xs, counts], holder);
}

function tableView(t, shown) {
  const cols = t.columns || [], rows = t.data || [];
  const cell = v => el('td', {}, typeof v === 'object' && v !== null ? JSON.stringify(v) : fmtValue(v));
  return [el('div', { class: 'tablewrap media-table' }, el('table', { class: 'runs' },
    el('thead', {}, el('tr', {}, cols.map(c => el('th', {}, String(c))))),
    el('tbody', {}, rows.slice(0, shown).map(r => el('tr', {}, (r || []).map(cell)))))),
  rows.length > shown ? el('div', { class: 'muted table-more' },
    `${rows.length - shown} more rows (${rows.length} in all)`) : null];
}

async function mediaPanel(ctx) {
  const summary = ctx.info.summary || {};
  const order = { image: 0, images: 0, histogram: 1, table: 2 };
  const keys = Object.keys(summary).filter(k => summary[k] && typeof summary[k] === 'object' &&
    MEDIA_TYPES[summary[k]._type]).sort((a, b) =>
    order[MEDIA_TYPES[summary[a]._type]] - order[MEDIA_TYPES[summary[b]._type]] || a.localeCompare(b));
  ui.media = {};
  if (!keys.length) return;
  const box = el('div', { id: 'media', class: 'charts' });
  ctx.container.append(el('h2', {}, 'Media'), box);
  const steps = Object.fromEntries(keys.map(k => [k, []]));
  /* Reads rows [next, …) for the media keys, at most MEDIA_MAX_ROWS in all;
   * returns how many media values it added. */
  let next = 0, total = 0;
  const fetchMore = async () => {
    let added = 0;
    while (next < MEDIA_MAX_ROWS) {
      const page = await api('history', { run: ctx.runId, keys: keys.join(','), from: next,
        max: Math.min(HISTORY_PAGE, MEDIA_MAX_ROWS - next) });
      for (const line of page.lines || [])
        for (const k of keys)
          if (line[k] && typeof line[k] === 'object' && MEDIA_TYPES[line[k]._type]) {
            steps[k].push({ step: line._step, value: line[k] });
            added++;
          }
      const n = page.next_line ?? next + (page.lines || []).length;
      total = page.total_lines ?? n;
      const done = n <= next || n >= total;
      next = n;
      if (done) break;
    }
    return added;
  };
  await fetchMore();
  if (total > next)
    box.before(el('p', { class: 'muted', id: 'media-capped' },
      `media of the first ${next} of ${total} rows`));
  const views = {};
  for (const k of keys) {
    const list = steps[k];
    if (!list.length) continue;
    const kind = MEDIA_TYPES[list[list.length - 1].value._type];
    const id = `media-${keys.indexOf(k)}`;
    const slider = el('input', { type: 'range', min: 0, max: list.length - 1, step: 1,
      value: list.length - 1, class: 'media-slider', 'aria-label': `step of ${k}` });
    const stepLabel = el('span', { class: 'muted media-step', 'aria-live': 'polite' });
    const body = el('div', { class: 'media-body' });
    const caption = el('div', { class: 'muted media-caption' });
    const holder = el('div', { class: 'chart media', id, 'data-key': k, 'data-kind': kind },
      el('div', { class: 'title' }, k), body, caption,
      el('label', { class: 'toolbar' }, slider, stepLabel));
    box.append(holder);
    const state = ui.media[k] = { kind, steps: list.map(e => e.step), index: list.length - 1,
      value: null, loaded: 0 };
    let chart = null, seq = 0;
    const show = async () => {
      const i = Number(slider.value), { step, value } = list[i];
      const mine = ++seq;
      state.index = i;
      state.value = value;
      stepLabel.textContent = `step ${step} (${i + 1} of ${list.length})`;
      caption.textContent = value.caption || '';
      if (kind === 'image') {
        const img = body.querySelector('img') || body.appendChild(el('img', { alt: k }));
        img.alt = `${k} at step ${step}`;
        if (value.width) img.width = value.width;
        if (value.height) img.height = value.height;
        img.src = fileUrl(ctx.runId, value.path);
      } else if (kind === 'images') {
        /* A list of images logged under one key (W&B's images/separated). */
        const caps = value.captions || [];
        body.replaceChildren(el('div', { class: 'media-grid' }, (value.filenames || []).map((f, j) =>
          el('figure', {}, el('img', { src: fileUrl(ctx.runId, f), alt: `${k} ${j + 1} at step ${step}`,
            width: value.width, height: value.height }),
          caps[j] ? el('figcaption', { class: 'muted' }, String(caps[j])) : null))));
      } else if (kind === 'histogram') {
        if (chart) chart.destroy();
        body.replaceChildren();
        chart = histogramChart(body, value, Math.max(300, holder.clientWidth - 14));
        state.chart = chart;
      } else {
        body.replaceChildren(el('span', { class: 'muted' }, 'loading…'));
        try {
          const res = await fetch(fileUrl(ctx.runId, value.path), { credentials: 'same-origin' });
          if (!res.ok) throw new ApiError(res.status, ((await res.json().catch(() => null)) || {}).error || res.statusText);
          const t = await res.json();
          if (mine !== seq) return;
          body.replaceChildren(...tableView(t, TABLE_ROWS_SHOWN));
        } catch (e) {
          if (mine === seq) body.replaceChildren(el('div', { class: 'err' }, String(e.message)));
        }
      }
      state.loaded++;
    };
    slider.addEventListener('input', show);
    /* New steps of a live run: the slider grows; one at the last step follows. */
    views[k] = () => {
      const atEnd = Number(slider.value) === Number(slider.max);
      slider.max = list.length - 1;
      state.steps = list.map(e => e.step);
      if (atEnd && Number(slider.value) !== list.length - 1) {
        slider.value = list.length - 1;
        show();
      } else {
        stepLabel.textContent = `step ${list[Number(slider.value)].step} (${Number(slider.value) + 1} of ${list.length})`;
      }
    };
    await show();
  }
  ctx.onPoll(async () => {
    if (ctx.info.state !== 'running' && next >= (ctx.info.history_lines || 0)) return 0;
    const added = await fetchMore();
    if (added) for (const update of Object.values(views)) update();
    return added;
  });
}

ui.panelProviders.push(metricsPanel, systemPanel, mediaPanel, consolePanel);

function renderRun(main, runId, params) {
  const opts = chartOptsFrom(params);
  const head = el('div');
  const panels = el('div');
  main.append(head, panels);
  const polls = [];
  const ctx = {
    runId, params, opts, container: panels, info: null, label: runId,
    onPoll: fn => polls.push(fn),
    save: () => replaceHash('run', runId, { x: opts.axis === '_step' ? '' : opts.axis,
      log: opts.log, smooth: opts.smooth || '', metric: params.get('metric'),
      grep: ctx.getGrep ? ctx.getGrep() : params.get('grep') }),
  };
  const drawHead = reply => {
    const r = reply.run, up = reply.upload || {};
    ctx.info = r;
    ctx.label = r.display_name || r.id;
    ui.run = reply;
    head.replaceChildren(
      el('h1', {}, el('span', { class: 'swatch', style: `background:${runColor(r.id)}` }),
        ctx.label, ' ', el('span', { class: 'state ' + r.state, id: 'run-state' }, r.state)),
      el('div', { class: 'headgrid' }, el('div', { class: 'meta' },
        metaRow('id', r.path || r.id), metaRow('project', r.project),
        metaRow('host', r.host), metaRow('started', fmtTime(r.start_time)),
        metaRow('runtime', fmtDuration(runtime(r))),
        metaRow('rows', String(r.history_lines ?? '')),
        r.group ? metaRow('group', r.group) : [], r.job_type ? metaRow('job type', r.job_type) : [],
        metaRow('tags', (r.tags || []).map(t => el('span', { class: 'tag' }, t))),
        r.notes ? metaRow('notes', r.notes) : [],
        r.exit_code !== null && r.exit_code !== undefined ? metaRow('exit code', String(r.exit_code)) : [],
        /* Only a web address becomes a link (never javascript: and the like). */
        metaRow('W&B', /^https?:\/\//.test(up.run_url || '') ? el('a', { href: up.run_url, target: '_blank', rel: 'noopener' },
          up.run_url) : el('span', { class: 'muted' }, up.last_error || up.state || 'not uploaded'))),
      el('details', { open: true }, el('summary', {}, 'Config'), kvTable(r.config)),
      el('details', { open: true }, el('summary', {}, 'Summary'), kvTable(r.summary))));
  };
  let stop = () => {};
  let stopped = false;
  (async () => {
    try {
      drawHead(await api('run', { run: runId }));
      for (const provider of ui.panelProviders) {
        try { await provider(ctx); } catch (e) { showError(panels, e); }
      }
    } catch (e) { showError(main, e); return; }
    if (stopped) return;
    ui.ready = true;
    let quiet = 0;
    stop = poller(async () => {
      const wasRunning = ctx.info.state === 'running';
      drawHead(await api('run', { run: runId }));
      let added = 0;
      for (const p of polls) added += await p();
      /* Stop once the run has ended and a poll after that brought nothing. */
      if (!wasRunning && ctx.info.state !== 'running' && !added && ++quiet >= 2) stop();
    }, POLL_MS);
  })();
  return { stop: () => { stopped = true; stop(); } };
}

/* -- compare -- */

function renderCompare(main, params) {
  const ids = (params.get('runs') || '').split(',').filter(Boolean);
  const opts = chartOptsFrom(params);
  const legend = el('div', { class: 'toolbar', id: 'legend' });
  const toolbarSlot = el('div');
  const box = el('div', { id: 'metrics' });
  main.append(el('h1', {}, `Compare ${ids.length} runs`), legend, toolbarSlot, box);
  const save = () => replaceHash('compare', '', { runs: ids.join(','),
    x: opts.axis === '_step' ? '' : opts.axis, log: opts.log, smooth: opts.smooth || '' });
  let stop = () => {};
  let stopped = false;
  (async () => {
    const sources = [];
    for (const id of ids) {
      try {
        const info = (await api('run', { run: id })).run;
        const rs = new RunSeries(id, opts.axis);
        await rs.load();
        ui.series[id] = rs;
        sources.push({ id, label: info.display_name || id, color: runColor(id), rs, info });
      } catch (e) { showError(main, e); }
    }
    if (stopped) return;
    legend.replaceChildren(...sources.map(s => el('a', { href: hashFor('run', s.id, {}) },
      el('span', { class: 'swatch', style: `background:${s.color}` }), s.label)));
    let redraw = drawCharts(box, sources, opts, null);
    const controls = () => toolbarSlot.replaceChildren(chartControls(opts,
      [...new Set(sources.flatMap(s => Object.keys(s.rs.keys)))].filter(k => !k.startsWith('_')),
      async what => {
        save();
        if (what === 'axis') for (const s of sources) {
          s.rs = new RunSeries(s.id, opts.axis);
          await s.rs.load();
          ui.series[s.id] = s.rs;
        }
        redraw = drawCharts(box, sources, opts, null);
      }));
    controls();
    ui.ready = true;
    stop = poller(async () => {
      let added = 0;
      for (const s of sources) if (s.info.state === 'running') {
        added += AXES.includes(opts.axis) ? await s.rs.poll() : 0;
        s.info = (await api('run', { run: s.id })).run;
      }
      if (added) redraw = redraw() || redraw;
    }, POLL_MS);
  })();
  return { stop: () => { stopped = true; stop(); } };
}

/* ---- routing ------------------------------------------------------------------ */

function route() {
  stopCurrent();
  ui.ready = false;
  ui.errors = [];
  const main = document.getElementById('main');
  main.replaceChildren();
  const { view, arg, params } = parseHash();
  ui.view = view;
  if (view === 'run' && arg) current = renderRun(main, arg, params);
  else if (view === 'compare') current = renderCompare(main, params);
  else current = renderRuns(main, params);
}

window.addEventListener('hashchange', route);
route();
