#!/usr/bin/env python3
"""difflow against PyTorch eager and torch.compile, side by side in one run: the driver of
scripts/bench_cpu.sh and of the GPU kit's speed table.

difflow runs as `difflow-worker bench` (a long-lived process that takes `train K`,
`sample K`, `inception K` commands on stdin), the contenders in this process with the SAME
architecture and parameter layout (bench/unet_reference.py, the InceptionV3 of
scripts/inception_reference.py). Each round times difflow, eager and compiled in turn
(A, B, C, A, B, C, ...) so that the load of a shared machine hits them alike; the table
gives the median of the rounds. FLOPs are counted once with
torch.utils.flop_counter.FlopCounterMode on the PyTorch twin and used for every row of
that workload; the peak is a 2048^2 fp32 (CPU) or 8192^2 bf16 (CUDA) matrix product
measured in the same run.

    python scripts/unet_speed.py --worker target/release/difflow-worker --suite cpu
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

HERE = os.path.dirname(os.path.abspath(__file__))
for folder in (HERE, os.path.join(HERE, "..", "bench"), os.path.join(HERE, "..", "scripts")):
    sys.path.insert(0, folder)
from unet_reference import UNet, cosine_alpha_bar, count  # noqa: E402

# Every net states its embedding (scale_shift) so that difflow's default and the twin's
# cannot disagree; these are the nets the measured speeds in the docs used.
MNIST_QUICK = dict(in_ch=1, size=16, channels=32, mults=[1, 2, 2], res_blocks=1, attention=[], dropout=0.0,
                   classes=10, scale_shift=False)
MNIST_28 = dict(in_ch=1, size=28, channels=32, mults=[1, 2, 2], res_blocks=1, attention=[7], dropout=0.0, classes=10,
                scale_shift=False)
DDPM_CIFAR10 = dict(in_ch=3, size=32, channels=128, mults=[1, 2, 2, 2], res_blocks=2, attention=[16], dropout=0.1,
                    classes=0, scale_shift=False)
TINY = dict(in_ch=1, size=8, channels=16, mults=[1, 2], res_blocks=1, attention=[4], dropout=0.0, classes=10,
            scale_shift=False)

# (name, model, task, batch: training batch / images sampled / Inception batch, size of Inception's inputs)
SUITES = {
    "cpu": [
        ("mnist_quick 16x16", MNIST_QUICK, "train", 32),
        ("mnist_quick 16x16", MNIST_QUICK, "sample", 32),
        ("mnist 28x28 attn 7", MNIST_28, "train", 64),
        ("mnist 28x28 attn 7", MNIST_28, "sample", 64),
    ],
    "gpu": [
        ("ddpm_cifar10", DDPM_CIFAR10, "train", 128),
        ("mnist 28x28 attn 7", MNIST_28, "train", 128),
        ("mnist 28x28 attn 7", MNIST_28, "sample", 256),
        ("inception (FID)", None, "inception", 200),
    ],
    "tiny": [
        ("tiny 8x8", TINY, "train", 4),
        ("tiny 8x8", TINY, "sample", 4),
        ("inception (FID)", None, "inception", 2),
    ],
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, seconds=1.0):
    """FLOP/s of a large matrix product: fp32 2048^2 on the CPU, bf16 8192^2 on CUDA."""
    n, dtype = (2048, torch.float32) if device.type == "cpu" else (8192, torch.bfloat16)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    best, start = float("inf"), time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


class Worker:
    """difflow's side: one `difflow-worker bench` process per workload."""

    def __init__(self, path, cfg, batch, device, threads, bf16):
        args = [path, "bench", "--model", json.dumps(cfg), "--device", str(device), "--threads", str(threads),
                "--batch", str(batch), "--sample-count", str(batch), "--inception-batch", str(batch)]
        if bf16:
            args.append("--bf16")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.info = self.read()

    def read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"difflow-worker bench stopped (exit {self.proc.wait()})")
            if line.startswith("{") and '"event"' not in line:
                return json.loads(line)

    def ask(self, command, k):
        self.proc.stdin.write(f"{command} {k}\n")
        self.proc.stdin.flush()
        return next(iter(self.read().values())) / 1e3

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def train_step_fn(model, cfg, batch, device, bf16, channels_last):
    """What difflow's train stage does per step: a batch, label dropout (0.1), q_sample,
    forward, eps-MSE, backward, gradient clipping at 1, AdamW, warmed-up EMA."""
    data = torch.randint(0, 256, (1024, cfg["in_ch"], cfg["size"], cfg["size"]), dtype=torch.uint8)
    labels = torch.randint(0, max(cfg["classes"], 1), (1024,))
    ab = cosine_alpha_bar(1000).float().to(device)
    params = list(model.parameters())
    fused = {"fused": True} if device.type == "cuda" else {}
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.0, **fused)
    ema = [p.detach().clone() for p in params]
    state = {"n": 0}

    def step(optimise=True):
        index = torch.randint(0, data.shape[0], (batch,))
        x0 = (data[index].float() / 127.5 - 1).to(device, non_blocking=True)
        y = None
        if cfg["classes"]:
            y = labels[index]
            y = torch.where(torch.rand(batch) < 0.1, torch.full_like(y, cfg["classes"]), y).to(device)
        t = torch.randint(0, 1000, (batch,), device=device)
        noise = torch.randn_like(x0)
        a = ab[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        if channels_last:
            xt = xt.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(xt, t, y)
        loss = F.mse_loss(out.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if not optimise:
            return
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        decay = min(0.999, (1 + state["n"]) / (10 + state["n"]))
        with torch.no_grad():
            torch._foreach_lerp_(ema, params, 1 - decay)
        state["n"] += 1

    return step


def sample_step_fn(model, cfg, n, device, bf16, channels_last):
    """One DDIM (eta = 0) step with classifier-free guidance (scale 2): one forward of the
    conditional and unconditional halves as a batch of 2n, then the update."""
    ab = cosine_alpha_bar(1000).float()
    ts = [int(round(i * 999 / 49)) for i in range(50)][::-1]
    labels = torch.arange(n, device=device) % max(cfg["classes"], 1)
    y2 = torch.cat([labels, torch.full_like(labels, cfg["classes"])]) if cfg["classes"] else None
    state = {"x": torch.randn(n, cfg["in_ch"], cfg["size"], cfg["size"], device=device), "i": 0}

    def step():
        i = state["i"] % (len(ts) - 1)
        t, x = ts[i], state["x"]
        x2 = torch.cat([x, x])
        if channels_last:
            x2 = x2.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model(x2, torch.full((2 * n,), t, device=device), y2).float()
        eps_c, eps_u = out[:n], out[n:]
        eps = 3.0 * eps_c - 2.0 * eps_u if y2 is not None else eps_c
        a_t, a_prev = float(ab[t]), float(ab[ts[i + 1]])
        x0 = (x - (1 - a_t) ** 0.5 * eps) / a_t ** 0.5
        state["x"] = a_prev ** 0.5 * x0 + (1 - a_prev) ** 0.5 * eps
        state["i"] += 1

    return step


def inception_step_fn(batch, device, bf16, channels_last):
    from inception_reference import FIDInceptionV3, preprocess

    net = FIDInceptionV3().to(device).eval()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    images = torch.randint(0, 256, (batch, 3, 32, 32), dtype=torch.uint8)

    def step(module=net):
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            x = preprocess(images.to(device))
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            pool = module.pool3(x).float()
            (pool @ net.fc.weight.T).cpu()

    return net, step


def count_flops(fn):
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def timed(fn, k, device):
    sync(device)
    start = time.perf_counter()
    for _ in range(k):
        fn()
    sync(device)
    return (time.perf_counter() - start) / k


def workload(args, device, name, cfg, task, batch):
    """Rows of one workload: difflow, eager, compiled (per-step seconds, medians of the rounds)."""
    torch.manual_seed(0)
    # A fresh compile cache per workload, and static shapes: after a second shape, Dynamo
    # would otherwise recompile with symbolic sizes (slower code, and Inductor errors on some).
    torch._dynamo.reset()
    gpu = device.type == "cuda"
    bf16 = gpu and task == "train"
    channels_last = gpu
    worker = Worker(args.worker, cfg if cfg else TINY, batch, device, args.threads, bf16)
    command = task
    if task == "inception":
        # fp32 as FID wants it (and as difflow's metrics run it).
        net, eager = inception_step_fn(batch, device, False, channels_last)
        params = sum(p.numel() for p in net.parameters())
        compiled_module = torch.compile(net.pool3, dynamic=False) if args.compile else None
        compiled = (lambda: eager(module=_PoolOnly(compiled_module))) if compiled_module else None
        flops = count_flops(eager)
    else:
        model = UNet(**cfg).to(device)
        params = count(model)
        if worker.info["params"] != params:
            raise SystemExit(f"{name}: difflow has {worker.info['params']} parameters, the twin {params}")
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        make = train_step_fn if task == "train" else sample_step_fn
        model.train(task == "train")
        eager = make(model, cfg, batch, device, bf16, channels_last)
        compiled = make(torch.compile(model, dynamic=False), cfg, batch, device, bf16, channels_last) if args.compile else None
        flops = count_flops(lambda: make(model, cfg, batch, device, False, False)(*([False] if task == "train" else [])))
    compile_s = float("nan")
    contenders = {"difflow": lambda k: worker.ask(command, k), "eager": lambda k: timed(eager, k, device)}
    if task in ("train", "sample") and not gpu and args.threads > 1:
        # difflow without batch lanes (the whole batch on all threads, operator by operator),
        # in the same process: the lanes' share of the step.
        contenders["one lane"] = lambda k: switched(worker, "lanes", 1, 0, command, k)
    if task == "sample" and not gpu:
        # difflow with ATen's GroupNorm + scale-shift + SiLU instead of its fused CPU kernel,
        # in the same process: the kernel's share of the sampling step.
        contenders["unfused"] = lambda k: switched(worker, "fused", 0, 1, command, k)
    # Warm-up: first calls allocate and pick kernels (for each of difflow's variants too: a
    # lane count or kernel choice builds its own oneDNN primitives); the compiled one
    # compiles here.
    for run in contenders.values():
        run(1)
    if compiled:
        start = time.perf_counter()
        timed(compiled, 2, device)
        compile_s = time.perf_counter() - start
        contenders["compile"] = lambda k: timed(compiled, k, device)
    times = {c: [] for c in contenders}
    for _ in range(args.rounds):
        for contender, run in contenders.items():
            times[contender].append(run(args.steps))
    worker.close()
    medians = {c: statistics.median(v) for c, v in times.items()}
    return dict(name=name, task=task, batch=batch, params=params, flops=flops, compile_s=compile_s,
                seconds=medians, rounds=times)


def switched(worker, switch, value, default, command, k):
    """difflow's step time with one of the bench's switches (`lanes`, `fused`) at `value`."""
    worker.ask(switch, value)
    seconds = worker.ask(command, k)
    worker.ask(switch, default)
    return seconds


class _PoolOnly:
    def __init__(self, pool3):
        self.pool3 = pool3


def table(results, peak, device, args, load):
    unit = "GFLOP/s" if device.type == "cpu" else "TFLOP/s"
    scale = 1e9 if device.type == "cpu" else 1e12
    lines = [f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}, "
             f"rounds {args.rounds} x {args.steps} steps (median), load average before/after {load[0]} / {load[1]}",
             f"matmul peak ({'2048^2 fp32' if device.type == 'cpu' else '8192^2 bf16'}): {peak / scale:.1f} {unit}",
             f"{'workload':<20} {'task':<9} {'batch':>5} {'params':>10} {'GFLOP':>8} {'contender':<9} "
             f"{'ms/step':>9} {'img/s':>8} {'vs eager':>8} {unit:>8} {'% peak':>6}"]
    for r in results:
        eager = r["seconds"]["eager"]
        for contender, s in r["seconds"].items():
            images = r["batch"] / s
            lines.append(f"{r['name']:<20} {r['task']:<9} {r['batch']:>5} {r['params']:>10,} {r['flops'] / 1e9:>8.2f} "
                         f"{contender:<9} {s * 1e3:>9.1f} {images:>8.1f} {eager / s:>7.2f}x "
                         f"{r['flops'] / s / scale:>8.1f} {100 * r['flops'] / s / peak:>5.0f}%")
        if r["compile_s"] == r["compile_s"]:
            lines.append(f"{'':<20} torch.compile: first two steps took {r['compile_s']:.1f} s (compilation)")
    lines.append("ms/step: a training step, one DDIM step with CFG (one network evaluation on 2 x batch), or one "
                 "Inception batch; vs eager > 1: faster than PyTorch eager")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--worker", required=True, help="the difflow-worker binary")
    p.add_argument("--suite", choices=sorted(SUITES), default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="steps timed per contender and round")
    p.add_argument("--no-compile", dest="compile", action="store_false", help="leave torch.compile out")
    p.add_argument("--only", help="run only the workloads whose name contains this")
    p.add_argument("--out", help="also write the table to this file")
    args = p.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    load_before = " ".join(f"{v:.1f}" for v in os.getloadavg())
    peak = matmul_peak(device)
    results = []
    for name, cfg, task, batch in SUITES[args.suite]:
        if args.only and args.only not in name:
            continue
        results.append(workload(args, device, name, cfg, task, batch))
        print(f"[bench] {name} {task}: " + ", ".join(f"{c} {s * 1e3:.1f} ms" for c, s in results[-1]["seconds"].items()),
              file=sys.stderr, flush=True)
    peak = max(peak, matmul_peak(device))
    load_after = " ".join(f"{v:.1f}" for v in os.getloadavg())
    text = table(results, peak, device, args, (load_before, load_after))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
            f.write(json.dumps({"peak_flops": peak, "results": results}) + "\n")


if __name__ == "__main__":
    main()
