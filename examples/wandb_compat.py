#!/usr/bin/env python3
# The W&B docs' "Runs overview" training loop (docs.wandb.ai/models/runs), as
# written there: a script for W&B, not edited for trackd. Run it with
#
#     trackctl run -- python3 examples/wandb_compat.py
#
# and `import wandb` is trackd's wandb module for this command only: the run
# goes to the trackd agent (and on to W&B if the agent's wandb sink is set up).
# Replace the entity with your W&B entity to follow along, as the docs say.
import wandb
import random

entity = "nico"
project = "awesome-project"

config = {
    "epochs": 10,
    "learning_rate": 0.01,
}

with wandb.init(entity=entity, project=project, config=config) as run:
    offset = random.random() / 5
    print(f"lr: {config['learning_rate']}")

    # Simulate a training run
    for epoch in range(2, config["epochs"]):
        acc = 1 - 2**-epoch - random.random() / epoch - offset
        loss = 2**-epoch + random.random() / epoch + offset
        print(f"epoch={epoch}, accuracy={acc}, loss={loss}")
        run.log({"accuracy": acc, "loss": loss})
