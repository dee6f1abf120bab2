"""Training-step time of difflow's UNet written in Python (bench/python_unet.py, a `python`
model the worker embeds) against the built-in UNet, both driven by the engine's own trainer
(`difflow-worker bench`): same configuration, batch, data and thread count, in interleaved
rounds. Prints each round's times and the median ratio python / built-in.

    python bench/python_unet_speed.py --worker target/release/difflow-worker [--threads 2]
        [--rounds 5] [--steps 3] [--batch 32] [--lanes 0]

`--lanes 1` runs the built-in UNet without batch lanes, as the Python model always runs
(it may draw random numbers, so its step is never split across threads).
"""

import argparse
import json
import os
import statistics
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
# The mnist_quick UNet of scripts/unet_speed.py's CPU suite.
MNIST_QUICK = dict(in_ch=1, size=16, channels=32, mults=[1, 2, 2], res_blocks=1, attention=[], dropout=0.0,
                   classes=10)


class Worker:
    def __init__(self, args, python):
        command = [args.worker, "bench", "--model", json.dumps(MNIST_QUICK), "--threads", str(args.threads),
                   "--batch", str(args.batch)]
        if python:
            command += ["--python", os.path.join(HERE, "python_unet.py") + ":DifflowUNet"]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self.read()
        if args.lanes:
            self.ask("lanes", args.lanes)

    def read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"difflow-worker bench stopped (exit {self.proc.wait()})")
            if line.startswith("{"):
                return json.loads(line)

    def ask(self, command, k):
        self.proc.stdin.write(f"{command} {k}\n")
        self.proc.stdin.flush()
        return next(iter(self.read().values()))

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--worker", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lanes", type=int, default=0)
    args = p.parse_args()
    builtin, python = Worker(args, False), Worker(args, True)
    if builtin.info["params"] != python.info["params"]:
        raise SystemExit(f"the parameter counts differ: {builtin.info['params']} and {python.info['params']}")
    for worker in (builtin, python):
        worker.ask("train", 2)  # warm-up
    ratios = []
    for round in range(args.rounds):
        b = builtin.ask("train", args.steps)
        py = python.ask("train", args.steps)
        ratios.append(py / b)
        print(f"round {round + 1}: built-in {b:.1f} ms/step, python {py:.1f} ms/step, ratio {py / b:.3f}")
    builtin.close()
    python.close()
    print(json.dumps({"params": builtin.info["params"], "threads": args.threads, "batch": args.batch,
                      "lanes": args.lanes, "ratio_median": statistics.median(ratios)}))


if __name__ == "__main__":
    main()
