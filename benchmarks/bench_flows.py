"""Cost of the MLE loss's flows per training step: one call per stage against one batched call.

The MLE loss evaluates T RealNVP log-densities, one per stage, each on the B x K residuals of its
stage. This script times forward + backward of a loop of T ``RealNVP.log_prob`` calls and of
``models.flow.stacked_log_prob`` (what ``losses/mle.py`` runs: the T flows' weights stacked, every
coupling layer for all stages at once with ``baddbmm``), checks both give the same log-densities,
counts the FLOPs (``FlopCounterMode``) and reports the achieved GFLOP/s. The two do the same
arithmetic; the batched call has far fewer ops, which matters where each op pays a fixed cost
(CPU threads woken per op with ``OMP_WAIT_POLICY=PASSIVE``, kernel launches on a GPU).

    python benchmarks/bench_flows.py                    # B 32, K 21, T 5, 1 and 2 threads
    python benchmarks/bench_flows.py --batch 128 --quick
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.losses import MLELoss
from mle_hand_pipeline.models.flow import stacked_log_prob


def per_stage_log_prob(flows: nn.ModuleList, eps: Tensor) -> Tensor:
    """The unbatched reference: (T, N, 2) -> (T, N), one flow call per stage."""
    return torch.stack([flow.log_prob(eps[i]) for i, flow in enumerate(flows)])


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
    max_diff = float((per_stage_log_prob(flows, eps) - stacked_log_prob(flows, eps)).abs().max())

    rows = []
    for name, log_prob in (("per-stage loop", per_stage_log_prob), ("one batched call", stacked_log_prob)):
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
