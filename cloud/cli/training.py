"""`tandem-cloud dataset build` and `tandem-cloud model train`.

The training package (and TensorFlow with it) is imported inside the
handlers only, so the server and every other command start without it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeAlias

from tandem.cloud.cli import models as models_cli
from tandem.cloud.config import CloudConfig
from tandem.cloud.db import engine as database
from tandem.cloud.labels import store as label_store
from tandem.cloud.timeseries import store as timeseries
from tandem.cloud.timeseries.queries import SummaryQuery

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
PROG = "tandem-cloud"


def add_commands(commands: Subparsers, config: argparse.ArgumentParser,
                 load: Callable[[argparse.Namespace], CloudConfig]) -> None:
    """Add the dataset and model command groups; load reads the --config given."""
    dataset = commands.add_parser("dataset", help="build training datasets",
                                  description="Window features joined with operator labels.")
    build = dataset.add_subparsers(dest="action", required=True, metavar="ACTION").add_parser(
        "build", parents=[config], help="write a versioned dataset file",
        description="Read every stored summary (optionally within --start/--end) and label, "
                    "split by device and time, write an .npz with a content hash.")
    build.add_argument("--out", type=Path, required=True, metavar="FILE.npz")
    build.add_argument("--start", type=int, metavar="MS")
    build.add_argument("--end", type=int, metavar="MS")
    build.add_argument("--val-from", type=int, metavar="MS",
                       help="validation from this time (default: 60 %% into the data)")
    build.add_argument("--test-from", type=int, metavar="MS",
                       help="test from this time (default: 80 %% into the data)")
    build.add_argument("--test-devices", type=float, default=0.25, metavar="SHARE",
                       help="share of devices held out for test entirely (default: 0.25)")
    build.set_defaults(handler=_build, load_config=load)
    model = commands.add_parser("model", help="model versions: train, register, promote, release")
    actions = model.add_subparsers(dest="action", required=True, metavar="ACTION")
    models_cli.add_actions(actions, config, load)  # the registry's actions share the group
    train = actions.add_parser(
        "train", help="train a version into DIR (model.tflite, card.json, model.keras)",
        description="With --parent DIR, retrain only the parent's head (small deltas) and "
                    "evaluate the parent beside the new version on the held-out split.")
    train.add_argument("--dataset", type=Path, required=True, metavar="FILE.npz")
    train.add_argument("--out", type=Path, required=True, metavar="DIR")
    train.add_argument("--version", required=True)
    train.add_argument("--parent", type=Path, metavar="DIR")
    train.add_argument("--epochs", type=int, default=60)
    train.add_argument("--seed", type=int, default=1)
    train.add_argument("--created-by", default="")
    train.set_defaults(handler=_train)


def _build(args: argparse.Namespace) -> int:
    from tandem.cloud.training import dataset as datasets

    config: CloudConfig = args.load_config(args)
    with database.cli_engine(config) as engine:
        store = timeseries.open_store(config, engine)
        try:
            query = SummaryQuery(start_ms=args.start, end_ms=args.end)
            summaries = [stored.summary for stored in store.iter_summaries(query)]
        finally:
            store.close()
    with database.cli_session(config) as session:
        labels = label_store.every(session)
    if not summaries:
        return _fail("no stored summaries in the range given")
    first, last = summaries[0].t0_ms, max(s.t1_ms for s in summaries)
    rule = datasets.SplitRule(
        args.val_from if args.val_from is not None else first + (last - first) * 6 // 10,
        args.test_from if args.test_from is not None else first + (last - first) * 8 // 10,
        args.test_devices)
    try:
        built = datasets.build(summaries, labels, rule)
    except datasets.DatasetError as exc:
        return _fail(str(exc))
    datasets.save(built, args.out)
    print(json.dumps({"file": str(args.out), "sha256": built.sha256,
                      "features": list(built.features), "dropped": built.dropped,
                      "splits": built.counts()}, indent=1))
    return 0


def _train(args: argparse.Namespace) -> int:
    try:
        from tandem.cloud.training import train as training
        from tandem.cloud.training.dataset import DatasetError
    except ImportError as exc:
        return _fail(f"training needs the `train` extra (pip install 'tandem[train]'): {exc}")
    request = training.TrainRequest(args.dataset, args.out, args.version, args.parent,
                                    args.seed, args.epochs, args.created_by)
    try:
        card = training.train_job(request)
    except (DatasetError, training.TrainingError, OSError) as exc:
        return _fail(str(exc))
    print(json.dumps({"version": card.version, "parent": card.parent, "size": card.size,
                      "sha256": card.sha256, "threshold": card.threshold,
                      "metrics": card.metrics}, indent=1))
    return 0


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 1
