"""Does the configured training learn? Test PCK@0.2 and NME of the untrained and the trained model.

Trains with the training node's own function (``training.runs.train_method``, as
``kedro run --pipelines=train_rhd`` does, with the parameters of conf/base/parameters_train.yml) on
the preprocessed crops of ``kedro run --pipelines=rhd_preprocess``, and scores the stage-T prediction
on the test split before and after training. ``--set`` changes one parameter per variant, so
settings can be compared on equal terms:

    python benchmarks/bench_learning.py                                    # the default (CPU demo)
    python benchmarks/bench_learning.py --set train.sigma_warmup_epochs=0  # without the sigma warm-up
    python benchmarks/bench_learning.py --set model.method=integral --name integral
    python benchmarks/bench_learning.py --quick --hands H.parquet --crops DIR

The result goes to ``benchmarks/results/learning_<name>.json`` with the per-epoch history.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import _common

from mle_hand_pipeline.training.checkpoint import ModelSpec, load_model
from mle_hand_pipeline.training.data import HandCrops
from mle_hand_pipeline.training.inference import score_crops
from mle_hand_pipeline.training.runs import split, train_method

PARAMETERS = _common.REPO / "conf/base/parameters_train.yml"


def set_value(block: dict, dotted: str, text: str) -> None:
    """``block["a"]["b"] = yaml(text)`` for ``dotted == "a.b"``."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        block = block.setdefault(key, {})
    block[leaf] = yaml.safe_load(text)


def main() -> None:
    p = _common.parser(__doc__.splitlines()[0])
    p.add_argument("--hands", type=Path, default=_common.REPO / "data/03_primary/rhd_hands.parquet")
    p.add_argument("--crops", type=Path, default=_common.REPO / "data/02_intermediate/rhd_crops")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="e.g. train.epochs=5")
    p.add_argument("--name", default=None, help="result name (default: 'default' or the --set values)")
    args = p.parse_args()
    if not args.hands.is_file():
        sys.exit(f"{args.hands} not found: run `kedro run --pipelines=synthetic_data` and `rhd_preprocess`")

    params = yaml.safe_load(PARAMETERS.read_text())
    block = {"model": dict(params["_model_cpu"]), "train": dict(params["_train_cpu"])}
    if args.quick:
        args.set = [
            "model.stages=2",
            "model.head_channels=8",
            "train.epochs=2",
            "train.sigma_warmup_epochs=1",
            "train.batch_size=8",
            "train.num_workers=0",
            *args.set,
        ]
    for assignment in args.set:
        key, _, value = assignment.partition("=")
        set_value(block, key, value)
    name = args.name or ("default" if not args.set or args.quick else "_".join(args.set).replace("=", "-"))
    spec = ModelSpec.from_params(block["model"])

    hands = pd.read_parquet(args.hands)
    test = HandCrops(split(hands, "test"), args.crops)
    load_before = _common.loadavg()
    torch.manual_seed(block["train"]["seed"])  # the trainer's initial weights
    untrained = score_crops(spec.build_model(), test, spec.input_size, torch.device("cpu"))
    with tempfile.TemporaryDirectory() as checkpoints:
        start = time.perf_counter()
        history, report = train_method(hands, args.crops, Path(checkpoints), block["model"], block["train"])
        wall = time.perf_counter() - start
        trained = score_crops(
            load_model(report["best_checkpoint"])[0], test, spec.input_size, torch.device("cpu")
        )
    rows = [{"model": "untrained", **untrained}, {"model": "trained (best val)", **trained}]
    path = _common.save(
        f"learning_{name}",
        args.out,
        {
            "parameters": block,
            "train_crops": int((hands["split"] == "train").sum()),
            "test_crops": len(test),
            "train_wall_s": wall,
            "rows": rows,
            "best_epoch": report["best_epoch"],
            "history": history.to_dict(orient="records"),
        },
        load_before,
        args.quick,
    )
    _common.report(f"learning ({name})", rows, path, load_before, train_wall_s=round(wall, 1))


if __name__ == "__main__":
    main()
