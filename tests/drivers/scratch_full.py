"""A driver whose Ray workers' scratch directory (TMPDIR) is the small disk the test made: a class
trainable stages each checkpoint there before it is uploaded to storage (elsewhere), and its
checkpoints grow (k x 100 kB at iteration k), so the disk fills at a known iteration.

    python scratch_full.py STORAGE_PATH [--restore]

Prints one line per trial: RESULT <id> <status> <last iteration> <error's last line>."""

from __future__ import annotations

import os
import sys

import ray

import rtune as tune

ITERATIONS = 5


class Weighty(tune.Trainable):
    def setup(self, config):
        self.it = 0

    def step(self):
        self.it += 1
        return {"it": self.it}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "weights.bin"), "wb") as out:
            out.write(bytes([self.it]) * self.it * 100 * 1024)  # grows: 100 kB, 200 kB, ...
        with open(os.path.join(checkpoint_dir, "it"), "w") as out:
            out.write(str(self.it))

    def load_checkpoint(self, checkpoint_dir):
        self.it = int(open(os.path.join(checkpoint_dir, "it")).read())


def main() -> None:
    storage, restore = sys.argv[1], "--restore" in sys.argv
    # Ray's own session files stay on the big disk; its workers inherit TMPDIR (the small one)
    ray.init(
        address="local", num_cpus=2, include_dashboard=False, _temp_dir="/tmp/rtune_ray_scratch"
    )
    path = os.path.join(storage, "scratch")
    if restore:
        tuner = tune.Tuner.restore(path, Weighty, resume_errored=True)
    else:
        tuner = tune.Tuner(
            Weighty,
            param_space={"id": 0},
            run_config=tune.RunConfig(
                storage_path=storage,
                name="scratch",
                verbose=0,
                stop={"training_iteration": ITERATIONS},
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
            ),
        )
    for result in tuner.fit():
        error = str(result.error).strip().splitlines()[-1] if result.error else "-"
        print("RESULT", result.config["id"], result.status, result.metrics.get("it"), error)


if __name__ == "__main__":
    main()
