#!/usr/bin/env python3
"""The W&B documentation's two examples, with trackd.

1. The smallest run: one logged row.
2. A 10-epoch training loop with config {epochs: 10, learning_rate: 0.01}
   (simulated accuracy and loss, a tenth of a second of work per epoch), as a
   `with` block. Each epoch also logs a small image, a histogram of
   (simulated) weights and a table of predictions: W&B's media, stored in the
   run's files/media/ with W&B's objects in its rows (`trackctl files RUN`). The agent samples the run's system metrics (CPU, memory, …)
   when it starts: `trackctl show` prints them under System.

Run it against an agent: TRACKD_SOCKET=ipc:///path/trackd.sock python3 train.py
(project "trackd-example", or TRACKD_PROJECT). Each run prints its footer —
history sparklines, summary, where the agent stores it — on stderr at finish.
With the Python package from this checkout: PYTHONPATH=client-shim/python.
"""
import math
import os
import random
import time

import trackd

PROJECT = os.environ.get("TRACKD_PROJECT") or "trackd-example"

# Example 1: log one row and finish.
run = trackd.init(project=PROJECT)
run.log({"acc": 0.9, "loss": 0.1})
run.finish()

# Example 2: a training loop; leaving the block finishes the run (an exception
# inside it would mark the run failed).
config = {"epochs": 10, "learning_rate": 0.01}
rng = random.Random(42)  # the same curve every time
with trackd.init(project=PROJECT, config=config) as run:
    offset = rng.random() / 5
    for epoch in range(1, run.config["epochs"] + 1):
        accuracy = 1 - 2 ** -epoch - rng.random() / epoch / 10 - offset / 10
        loss = 2 ** -epoch + rng.random() / epoch / 10 + offset / 10
        time.sleep(0.1)  # an epoch's work
        # An 8x8 RGB image (a gradient that brightens with the epochs), as
        # rows of [r, g, b] bytes; numpy arrays and PIL images work too.
        pixels = bytes(min(255, (x * 32 + y * 4) * epoch // 4) if c != 1 else y * 32
                       for y in range(8) for x in range(8) for c in range(3))
        weights = [rng.gauss(0, 1 / epoch) for _ in range(200)]
        predictions = [[i, rng.choice("abc"), round(rng.random(), 3)] for i in range(5)]
        run.log({"accuracy": accuracy, "loss": loss,
                 "sample": trackd.Image.from_pixels(pixels, 8, 8, 3, caption=f"epoch {epoch}"),
                 "weights": trackd.Histogram(weights),
                 "predictions": trackd.Table(columns=["id", "label", "score"],
                                             data=predictions)})
    run.summary["final_loss"] = round(loss, 5)
    assert not math.isnan(loss)
