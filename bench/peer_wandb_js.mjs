// bench/peer_wandb_js.mjs — P14's peer: the official W&B JS SDK (@wandb/sdk,
// installed by tests/fake-wandb/wandb_js.py) logging N rows of P1's four
// metrics to the fake backend (WANDB_BASE_URL, WANDB_API_KEY). Prints one JSON
// line: init and finish times, and log()'s per-call times (p50/p99/p99.9, ns).
// Usage: node peer_wandb_js.mjs N RUN_ID   (cwd: where node_modules is)
import wandb from '@wandb/sdk';

const n = parseInt(process.argv[2], 10);
const id = process.argv[3];
const now = () => process.hrtime.bigint();
const t0 = now();
const run = await wandb.init({project: 'bench', id, config: {}});
const t1 = now();
const times = new Float64Array(n);
for (let i = 0; i < n; i++) {
  const row = {loss: 1 / (i + 1), accuracy: 1 - 1 / (i + 2), lr: 0.001, epoch: Math.floor(i / 1000)};
  const a = now();
  run.log(row);
  times[i] = Number(now() - a);
}
const t2 = now();
await wandb.finish(0);
const t3 = now();
times.sort();
const q = (p) => times[Math.min(n - 1, Math.floor(p * n))];
console.log(JSON.stringify({
  entity: run.entity, init_ms: Number(t1 - t0) / 1e6, loop_ms: Number(t2 - t1) / 1e6,
  finish_ms: Number(t3 - t2) / 1e6, p50: q(0.5), p99: q(0.99), p999: q(0.999)}));
