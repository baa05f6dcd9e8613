"""Cost of the MLE loss's flows per training step: the per-stage loop against one batched call.

The MLE loss evaluates T RealNVP log-densities, one per stage, each on the B x K residuals of its
stage (``losses/mle.py``). This script times forward + backward of exactly that loop and of a
prototype that stacks the T flows' weights and runs every coupling layer for all stages at once
(``baddbmm``), checks both give the same log-densities, counts the FLOPs (``FlopCounterMode``) and
reports the achieved GFLOP/s. It answers whether batching the stages is worth doing: it is only when
the loop is bound by per-op overhead rather than by arithmetic.

    python benchmarks/bench_flows.py                    # B 32, K 21, T 5, 1 and 2 threads
    python benchmarks/bench_flows.py --batch 128 --quick
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.losses import MLELoss
from mle_hand_pipeline.models.flow import RealNVP


def per_stage_log_prob(flows: nn.ModuleList, eps: Tensor) -> Tensor:
    """What MLELoss does: (T, N, 2) -> (T, N), one flow call per stage."""
    return torch.stack([flow.log_prob(eps[i]) for i, flow in enumerate(flows)])


def _stacked_mlp(flows: list[RealNVP], nets: str, layer: int, x: Tensor, tanh: bool) -> Tensor:
    for j in (0, 2, 4):  # the three Linear layers of each coupling net
        linears = [getattr(f, nets)[layer][j] for f in flows]
        weight = torch.stack([m.weight for m in linears])  # (T, out, in)
        bias = torch.stack([m.bias for m in linears])  # (T, out)
        x = torch.baddbmm(bias[:, None], x, weight.transpose(1, 2))
        if j < 4:
            x = nn.functional.leaky_relu(x)
    return torch.tanh(x) if tanh else x


def batched_log_prob(flows: nn.ModuleList, eps: Tensor) -> Tensor:
    """The same log-densities from one batched pass over the stacked weights: (T, N, 2) -> (T, N)."""
    flow_list = list(flows)
    masks = flow_list[0].masks
    z = eps
    log_det = eps.new_zeros(eps.shape[:2])
    for i in reversed(range(len(masks))):
        mask = masks[i]
        kept = mask * z
        s = _stacked_mlp(flow_list, "s", i, kept, tanh=True) * (1 - mask)
        t = _stacked_mlp(flow_list, "t", i, kept, tanh=False) * (1 - mask)
        z = kept + (1 - mask) * (z - t) * torch.exp(-s)
        log_det = log_det - s.sum(-1)
    return -0.5 * z.square().sum(-1) - math.log(2 * math.pi) + log_det


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--keypoints", type=int, default=21)
    p.add_argument("--stages", type=int, default=5)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = p.parse_args()
    if args.quick:
        args.batch, args.repeat, args.threads = 2, 2, [1]

    load_before = _common.loadavg()
    torch.manual_seed(0)
    flows = MLELoss(stages=args.stages, flow_init="default").flows  # non-trivial flows
    eps = torch.randn(args.stages, args.batch * args.keypoints, 2, requires_grad=True)
    max_diff = float((per_stage_log_prob(flows, eps) - batched_log_prob(flows, eps)).abs().max())

    rows = []
    for name, log_prob in (("per-stage loop", per_stage_log_prob), ("one batched call", batched_log_prob)):
        with FlopCounterMode(display=False) as counter:
            log_prob(flows, eps).sum().backward()
        for threads in args.threads:
            torch.set_num_threads(threads)
            times = _common.timed(lambda fn=log_prob: fn(flows, eps).sum().backward(), args.repeat, warmup=3)
            ms = statistics.median(times) * 1000
            rows.append(
                {
                    "implementation": name,
                    "threads": threads,
                    "ms_fwd_bwd": ms,
                    "gflop": counter.get_total_flops() / 1e9,
                    "gflop_per_s": counter.get_total_flops() / 1e9 / (ms / 1000),
                }
            )
    path = _common.save(
        "flows",
        args.out,
        {
            "batch": args.batch,
            "keypoints": args.keypoints,
            "stages": args.stages,
            "max_abs_diff_log_prob": max_diff,
            "rows": rows,
        },
        load_before,
        args.quick,
    )
    _common.report("flows", rows, path, load_before, max_abs_diff_log_prob=f"{max_diff:.2g}")


if __name__ == "__main__":
    main()
