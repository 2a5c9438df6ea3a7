#!/usr/bin/env python3
"""Artifacts with trackd, as W&B's: a training run logs its data as a dataset
artifact and its weights as a model artifact; an evaluation run uses the
dataset (lineage) and downloads it, every file checked against its digest.

    trackctl artifacts                          # example-data:v0, example-model:v0
    trackctl artifact show example-data         # logged by the training run, used by the eval run

Run it against an agent: TRACKD_SOCKET=ipc:///path/trackd.sock python3 artifacts.py
(project "trackd-example", or TRACKD_PROJECT). Run it again: the same data is
the same version (nothing new is stored); the model changes, so it gets v1.
With the Python package from this checkout: PYTHONPATH=client-shim/python.
"""
import json
import os
import random
import tempfile
import time

import trackd

PROJECT = os.environ.get("TRACKD_PROJECT") or "trackd-example"
work = tempfile.mkdtemp(prefix="trackd-artifacts-")

# The training run: a dataset artifact before the loop, a model after it.
with trackd.init(project=PROJECT, job_type="train", config={"epochs": 5}) as run:
    os.makedirs(os.path.join(work, "data"))
    for split, n in (("train", 64), ("test", 16)):
        with open(os.path.join(work, "data", f"{split}.csv"), "w") as f:
            f.write("x,y\n" + "".join(f"{i},{i % 3}\n" for i in range(n)))
    dataset = trackd.Artifact("example-data", "dataset", metadata={"rows": 80})
    dataset.add_dir(os.path.join(work, "data"))
    run.log_artifact(dataset)
    weights = [random.gauss(0, 1) for _ in range(16)]
    for epoch in range(run.config["epochs"]):
        time.sleep(0.05)  # an epoch's work
        weights = [w * 0.9 for w in weights]
        run.log({"loss": sum(w * w for w in weights)})
    with open(os.path.join(work, "model.json"), "w") as f:
        json.dump({"weights": weights}, f)
    model = trackd.Artifact("example-model", "model", metadata={"epochs": 5})
    model.add_file(os.path.join(work, "model.json"))
    run.log_artifact(model, aliases=["latest", "candidate"])

# The evaluation run uses the dataset (W&B's run.use_artifact).
with trackd.init(project=PROJECT, job_type="eval") as run:
    data = run.use_artifact("example-data:latest")
    root = data.download(os.path.join(work, "eval"))
    with open(os.path.join(root, "test.csv")) as f:
        rows = f.read().splitlines()[1:]
    run.log({"test_rows": len(rows)})
    print(f"evaluated on {data.source_qualified_name} ({len(rows)} rows), "
          f"digest {data.digest}")
