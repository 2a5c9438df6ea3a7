// ui_load.mjs — Chromium (puppeteer-core) against `trackctl ui` for bench/run's
// P11: reads one JSON object from argv[2]:
//   {node_modules, chromium, url, run, pages, mode}
// mode "first_chart": one page; prints {ms} from the start of navigating to the
//   run page until its first chart holds data (the page's own readiness flag and
//   a chart with points), the time a user waits for a chart.
// mode "hold": `pages` pages on the run page, each polling it live as a user's
//   open tab does; prints {ready: true} once all are loaded, then keeps them
//   open until stdin closes (bench/run closes it when its measurement ends).
//   bench/run runs one browser per user, pages 1 (several pages in one headless
//   Chromium detached their frames here).
// mode "screenshot": one page, the run page once its charts hold data, saved as
//   PNG at `path` (how docs/ui-demo.png is made: see the README).
// The browser is closed on every path.
import { createRequire } from 'node:module';
import path from 'node:path';

const cfg = JSON.parse(process.argv[2]);
const require = createRequire(path.join(cfg.node_modules, 'x.js'));
const puppeteer = require('puppeteer-core');

const browser = await puppeteer.launch({
  executablePath: cfg.chromium || '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const hasChart = () => window.trackdUI && window.trackdUI.ready === true &&
  Object.values(window.trackdUI.charts).some(u => u.data[0].length > 0);
let code = 0;
try {
  // Sign in once (token → cookie); every page of this browser then has it.
  const first = await browser.newPage();
  await first.goto(cfg.url, { waitUntil: 'load' });
  const base = new URL(first.url()).origin;
  const target = `${base}/#/run/${encodeURIComponent(cfg.run)}`;
  if (cfg.mode === 'screenshot') {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 900 });
    await page.goto(target, { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(hasChart, { timeout: 120000 });
    await page.screenshot({ path: cfg.path, fullPage: false });
    console.log(JSON.stringify({ screenshot: cfg.path }));
  } else if (cfg.mode === 'first_chart') {
    const page = await browser.newPage();
    const t0 = performance.now();
    await page.goto(target, { waitUntil: 'domcontentloaded' });
    await page.waitForFunction(hasChart, { timeout: 120000, polling: 10 });
    console.log(JSON.stringify({ ms: performance.now() - t0 }));
  } else {
    const pages = [];
    for (let i = 0; i < cfg.pages; i++) pages.push(await browser.newPage());
    for (const p of pages) await p.goto(target, { waitUntil: 'domcontentloaded' });
    for (const p of pages) await p.waitForFunction(hasChart, { timeout: 120000 });
    console.log(JSON.stringify({ ready: true, pages: pages.length }));
    await new Promise(res => { process.stdin.on('end', res); process.stdin.resume(); });
  }
} catch (e) {
  console.error(String(e && e.stack || e));
  code = 1;
} finally {
  await browser.close();
}
process.exit(code);
