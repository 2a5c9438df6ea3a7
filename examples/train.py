#!/usr/bin/env python3
"""The W&B documentation's two examples, with trackd.

1. The smallest run: one logged row.
2. A 10-epoch training loop with config {epochs: 10, learning_rate: 0.01}
   (simulated accuracy and loss, a tenth of a second of work per epoch), as a
   `with` block. Each epoch also logs a small image, a histogram of
   (simulated) weights and a table of predictions: W&B's media, stored in the
   run's files/media/ with W&B's objects in its rows (`trackctl files RUN`). The agent samples the run's system metrics (CPU, memory, …)
   when it starts: `trackctl show` prints them under System.
   The run logs its data as a dataset artifact ("example-data") before the
   loop and its weights as a model artifact ("example-model") after it.
3. An evaluation run that uses the dataset artifact (lineage: `trackctl
   artifact show example-data` names the run that logged it and the runs
   that used it) and downloads it, every file checked against its digest.

Run it against an agent: TRACKD_SOCKET=ipc:///path/trackd.sock python3 train.py
(project "trackd-example", or TRACKD_PROJECT). Each run prints its footer —
history sparklines, summary, where the agent stores it — on stderr at finish.
With the Python package from this checkout: PYTHONPATH=client-shim/python.
"""
import json
import math
import os
import random
import tempfile
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
work = tempfile.mkdtemp(prefix="trackd-example-")
with trackd.init(project=PROJECT, config=config) as run:
    # The data, as files: logging the same content again (the next time the
    # example runs) gives the same version, v0, and stores nothing new.
    os.makedirs(os.path.join(work, "data"))
    for split, n in (("train", 64), ("test", 16)):
        with open(os.path.join(work, "data", f"{split}.csv"), "w") as f:
            f.write("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(n)))
    dataset = trackd.Artifact("example-data", "dataset", metadata={"rows": 80})
    dataset.add_dir(os.path.join(work, "data"))
    run.log_artifact(dataset)
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
    with open(os.path.join(work, "model.json"), "w") as f:
        json.dump({"weights": weights[:16], "loss": loss}, f)
    model = trackd.Artifact("example-model", "model", metadata={"final_loss": loss})
    model.add_file(os.path.join(work, "model.json"))
    run.log_artifact(model, aliases=["latest", "candidate"])

# Example 3: a second run uses the dataset (W&B's run.use_artifact).
with trackd.init(project=PROJECT, job_type="eval") as run:
    data = run.use_artifact("example-data:latest")
    root = data.download(os.path.join(work, "eval"))
    with open(os.path.join(root, "test.csv")) as f:
        rows = f.read().splitlines()[1:]
    run.log({"test_rows": len(rows), "dataset_version": data.version})
