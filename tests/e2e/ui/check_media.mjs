// check_media.mjs — drives a run page's media section (trackctl ui) in
// headless Chromium for tests/e2e/test_ui_media.py. Reads one JSON object
// from argv[2]:
//   {url, node_modules, chromium, run,
//    image: {key, step_index, step, width, sha256},
//    histogram: {key, step_index, step, values},
//    table: {key, nrows, shown}, grid: {key, step_index, count, captions},
//    screenshot: path | null}
// or, for a live run, {url, node_modules, chromium, run, live: {key}}: the
// image key's slider grows as the run logs and, left at its last step,
// follows it.
// Moves each key's step slider with the keyboard (Home, then ArrowRight),
// then checks what the page shows: the <img> of that step loaded (its
// naturalWidth) and its bytes' SHA-256 (fetched from its src by the page);
// the histogram's bars (the uPlot instance's data); the table's rows and the
// count of the rest. Prints one JSON line {ok, facts} or exits 1.
import { createRequire } from 'node:module';
import path from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const require = createRequire(path.join(cfg.node_modules, 'x.js'));
const puppeteer = require('puppeteer-core');

const facts = {};
function check(cond, what) {
  if (!cond) throw new Error(`check failed: ${what}`);
}

async function waitReady(page, what) {
  await page.waitForFunction(() => window.trackdUI && window.trackdUI.ready === true,
    { timeout: 30000 }).catch(() => { throw new Error(`not ready: ${what}`); });
}

// Puts the keyboard focus on the slider of `key` and moves it to `index`.
async function slideTo(page, key, index) {
  const sel = `.media[data-key="${key}"] input.media-slider`;
  await page.focus(sel);
  await page.keyboard.press('Home');
  for (let i = 0; i < index; i++) await page.keyboard.press('ArrowRight');
  await page.waitForFunction((k, i) => window.trackdUI.media[k].index === i, { timeout: 10000 },
    key, index).catch(() => { throw new Error(`slider of ${key} did not reach ${index}`); });
}

const browser = await puppeteer.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
let failed = null;
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 1200 });
  const pageErrors = [];
  page.on('pageerror', e => pageErrors.push(String(e)));
  await page.goto(cfg.url, { waitUntil: 'load' });
  await waitReady(page, 'runs table');
  await page.evaluate(h => { window.trackdUI.ready = false; location.hash = h; }, `#/run/${cfg.run}`);
  await waitReady(page, `run ${cfg.run}`);
  if (cfg.live) {
    const k = cfg.live.key;
    const first = await page.evaluate(k => window.trackdUI.media[k].steps.length, k);
    await page.waitForFunction((k, n) => {
      const m = window.trackdUI.media[k];
      return m.steps.length >= n + 3 && m.index === m.steps.length - 1;
    }, { timeout: 30000 }, k, first).catch(() => { throw new Error('no new steps followed'); });
    const last = await page.evaluate(k => {
      const m = window.trackdUI.media[k];
      const box = document.querySelector(`.media[data-key="${k}"]`);
      return { n: m.steps.length, path: m.value.path, src: box.querySelector('img').src,
        max: Number(box.querySelector('input.media-slider').max) };
    }, k);
    facts.live = { first, ...last };
    check(last.max === last.n - 1, `slider max ${last.max} of ${last.n} steps`);
    check(decodeURIComponent(last.src).includes(last.path), `shows the last step: ${last.src}`);
    check(pageErrors.length === 0, `no page errors: ${pageErrors}`);
    throw null; // done: skip the finished run's checks below
  }
  const kinds = await page.evaluate(() => Object.fromEntries(
    Object.entries(window.trackdUI.media).map(([k, m]) => [k, m.kind])));
  facts.kinds = kinds;
  check(kinds[cfg.image.key] === 'image', `image key: ${JSON.stringify(kinds)}`);
  check(kinds[cfg.histogram.key] === 'histogram', `histogram key: ${JSON.stringify(kinds)}`);
  check(kinds[cfg.table.key] === 'table', `table key: ${JSON.stringify(kinds)}`);

  // The image of step N after moving the slider: loaded, and its bytes.
  const im = cfg.image;
  await slideTo(page, im.key, im.step_index);
  const imgSel = `.media[data-key="${im.key}"] img`;
  await page.waitForFunction((sel, sha) => {
    const img = document.querySelector(sel);
    return img && img.complete && img.naturalWidth > 0 && img.src.includes(sha.slice(0, 20));
  }, { timeout: 15000 }, imgSel, im.sha256).catch(() => { throw new Error('image did not load'); });
  const shown = await page.evaluate(async sel => {
    const img = document.querySelector(sel);
    const res = await fetch(img.src, { credentials: 'same-origin' });
    const bytes = await res.arrayBuffer();
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', bytes));
    return { naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight,
      type: res.headers.get('content-type'), alt: img.alt,
      sha256: Array.from(d).map(b => b.toString(16).padStart(2, '0')).join(''),
      label: img.closest('.media').querySelector('.media-step').textContent,
      caption: img.closest('.media').querySelector('.media-caption').textContent };
  }, imgSel);
  facts.image = shown;
  check(shown.naturalWidth === im.width, `naturalWidth ${shown.naturalWidth} is ${im.width}`);
  check(shown.sha256 === im.sha256, `image bytes' SHA-256 ${shown.sha256} is ${im.sha256}`);
  check(shown.type === 'image/png', `Content-Type ${shown.type}`);
  check(shown.label.startsWith(`step ${im.step} `), `step label: ${shown.label}`);
  check(shown.caption === im.caption, `caption: ${shown.caption}`);

  // The list of images of step G: every image loaded, with its caption.
  const g = cfg.grid;
  await slideTo(page, g.key, g.step_index);
  await page.waitForFunction((k, n) => {
    const imgs = document.querySelectorAll(`.media[data-key="${k}"] .media-grid img`);
    return imgs.length === n && Array.from(imgs).every(i => i.complete && i.naturalWidth > 0);
  }, { timeout: 15000 }, g.key, g.count).catch(() => { throw new Error('image list did not load'); });
  const caps = await page.evaluate(k => Array.from(document.querySelectorAll(
    `.media[data-key="${k}"] figcaption`)).map(c => c.textContent), g.key);
  facts.grid = caps;
  check(JSON.stringify(caps) === JSON.stringify(g.captions), `captions ${caps}`);

  // The histogram of step M: its bars are the logged counts.
  const h = cfg.histogram;
  await slideTo(page, h.key, h.step_index);
  const bars = await page.evaluate(k => Array.from(window.trackdUI.media[k].chart.data[1]), h.key);
  facts.histogram = bars.length;
  check(JSON.stringify(bars) === JSON.stringify(h.values), `histogram bars ${bars}`);

  // The table of the last step: the rows shown and the count of the rest.
  const t = cfg.table;
  await slideTo(page, t.key, t.step_index);
  const tableSel = `.media[data-key="${t.key}"]`;
  await page.waitForFunction(sel => document.querySelector(`${sel} tbody tr`), { timeout: 15000 },
    tableSel).catch(() => { throw new Error('table did not render'); });
  const tab = await page.evaluate(sel => {
    const box = document.querySelector(sel);
    return { cols: Array.from(box.querySelectorAll('th')).map(th => th.textContent),
      rows: box.querySelectorAll('tbody tr').length,
      first: Array.from(box.querySelectorAll('tbody tr:first-child td')).map(td => td.textContent),
      more: (box.querySelector('.table-more') || {}).textContent || '' };
  }, tableSel);
  facts.table = tab;
  check(JSON.stringify(tab.cols) === JSON.stringify(t.columns), `columns ${tab.cols}`);
  check(tab.rows === Math.min(t.nrows, t.shown), `rows shown ${tab.rows}`);
  check(JSON.stringify(tab.first) === JSON.stringify(t.first), `first row ${tab.first}`);
  if (t.nrows > t.shown)
    check(tab.more.startsWith(`${t.nrows - t.shown} more rows`), `rest counted: ${tab.more}`);
  check(pageErrors.length === 0, `no page errors: ${pageErrors}`);
  if (cfg.screenshot) {
    await page.evaluate(() => document.getElementById('media').scrollIntoView());
    await page.screenshot({ path: cfg.screenshot, fullPage: false });
  }
} catch (e) {
  failed = e; // null: a mode that ended early, passing
} finally {
  await browser.close();
}
if (failed) {
  console.log(JSON.stringify({ ok: false, error: String(failed.message), facts }));
  process.exit(1);
}
console.log(JSON.stringify({ ok: true, facts }));
