"""Why the verifier's Paddle side is its largest cost: the same float32 matrix product in Paddle and in torch.

    python benchmarks/matmul_paddle_torch.py [--repeats 20]

Each framework runs in its own process, on every core as the verifier runs it (Paddle's child gets
OMP_NUM_THREADS = the core count; torch uses its default, the core count): 3 warm-up
products, then `--repeats` products of [512, 768] x [768, 3072] (one feed-forward layer of the full-size
model on a 512-token probe). Prints wall and CPU seconds for each, and the load average.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

CHILD = """
import time, sys
repeats = int(sys.argv[2])
if sys.argv[1] == "paddle":
    import paddle
    x, w = paddle.randn([512, 768]), paddle.randn([768, 3072])
    product = paddle.matmul
else:
    import torch
    x, w = torch.randn(512, 768), torch.randn(768, 3072)
    product = torch.matmul
for _ in range(3):
    product(x, w)
wall, cpu = time.perf_counter(), time.process_time()
for _ in range(repeats):
    product(x, w)
print(f"{sys.argv[1]}: {time.perf_counter() - wall:.2f} s wall, {time.process_time() - cpu:.2f} s CPU")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f}; {args.repeats} products [512, 768] x [768, 3072], float32")
    cores = str(len(os.sched_getaffinity(0)))
    for framework in ("paddle", "torch"):
        result = subprocess.run([sys.executable, "-c", CHILD, framework, str(args.repeats)], capture_output=True,
                                text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": cores})
        print(result.stdout.strip())
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
