"""Cloud training with real TensorFlow: int8 models, head-only versions, figures, no server import.

Every run goes through `tandem-cloud model train` in a child process, as an
operator runs it: TensorFlow never loads into the test process, where it would
share the address space with tpm2-tss (the two segfault together, see
tests/tpm.py). Head-only versions retrain only the head on a frozen body, so
their int8 files differ in few bytes and their deltas are small.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import lzma
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

# CI installs the `train` extra: there a missing TF fails. find_spec does not import it.
if os.environ.get("CI") != "true" and importlib.util.find_spec("tensorflow") is None:
    pytest.skip("training needs the `train` extra", allow_module_level=True)

from tandem.cloud.training import dataset as datasets
from tandem.cloud.training import evaluate
from tandem.gateway.inference.model import ScoringModel
from tandem.tools import simfleet
from tandem.wire import modelcard
from tandem.wire.modelcard import ModelCard
from tandem.wire.modeldelta import apply_delta, make_delta

MODEL_FILE, KERAS_FILE = "model.tflite", "model.keras"  # the trainer's documented file names
EPOCHS = 8
FIGURES = ("precision", "recall", "f1", "roc_auc", "size")


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two datasets of one simulated fleet: test-period labels only, then labels throughout."""
    root = tmp_path_factory.mktemp("training")
    fleet = simfleet.fleet(9, 60)
    rule = datasets.SplitRule(fleet.t0(36), fleet.t0(48))
    for name, labels_from in (("first", 48), ("labelled", 0)):
        built = datasets.build(simfleet.summaries(fleet),
                               simfleet.labels(fleet, labels_from, 60), rule)
        datasets.save(built, root / f"{name}.npz")
    return root


@pytest.fixture(scope="module")
def versions(work: Path) -> list[Path]:
    """m-0001 from the first dataset, then m-0002 and m-0003 retrained head-only."""
    out, parent = [], None
    for n in (1, 2, 3):
        directory = work / f"v{n}"
        data = work / ("first.npz" if n == 1 else "labelled.npz")
        done = _train(data, directory, f"m-{n:04d}", parent, seed=n, epochs=EPOCHS)
        assert done.returncode == 0, done.stderr
        out.append(directory)
        parent = directory
    return out


def test_a_version_is_an_int8_tflite_with_a_card_that_says_what_it_is(
        work: Path, versions: list[Path]) -> None:
    card = read_card(versions[0])
    model = (versions[0] / MODEL_FILE).read_bytes()
    assert card.sha256 == hashlib.sha256(model).hexdigest() and card.size == len(model)
    assert card.dataset_sha256 == datasets.load(work / "first.npz").sha256
    assert card.parent is None and card.kind == "autoencoder"
    assert card.input.features[0] == "temp.mean" and all(s > 0 for s in card.input.scales)
    assert all(0.0 <= card.metrics[k] <= 1.0 for k in FIGURES if k != "size")
    assert card.metrics["size"] == card.size
    tensors = _tensors(model)
    int8 = [t for t in tensors if t["dtype"] == np.int8 and len(t["shape"]) == 2
            and min(t["shape"]) > 1]
    assert len(int8) >= 5  # the five dense kernels (plus int8 activations)
    assert tensors[0]["dtype"] == np.float32  # the gateway feeds float features


def test_the_gateway_loads_it_and_scores_as_the_trainer_did(versions: list[Path],
                                                            work: Path) -> None:
    card = read_card(versions[1])
    gateway = ScoringModel.load(versions[1] / MODEL_FILE)
    data = datasets.load(work / "labelled.npz")
    x, _ = data.part(datasets.TEST)
    offsets, scales = np.array(card.input.offsets), np.array(card.input.scales)
    at_gateway = [gateway.score((row - offsets) / scales) for row in x[:50]]
    assert at_gateway == pytest.approx(evaluate.scores(
        (versions[1] / MODEL_FILE).read_bytes(), card.input, x[:50]), rel=1e-4, abs=1e-6)


def test_same_data_and_seed_give_the_same_bytes(work: Path, versions: list[Path]) -> None:
    again = work / "again"
    assert _train(work / "first.npz", again, "m-0001", seed=1, epochs=EPOCHS).returncode == 0
    assert (again / MODEL_FILE).read_bytes() == (versions[0] / MODEL_FILE).read_bytes()


def test_head_only_versions_keep_the_body_and_their_deltas_are_small(
        versions: list[Path]) -> None:
    bodies = [_body_digest(directory / KERAS_FILE) for directory in versions]
    assert bodies[1:] == bodies[:1] * (len(bodies) - 1)
    print(f"\n{'version':<8}{'full':>8}{'xz':>8}{'delta':>8}{'delta/xz':>10}")
    for old_dir, new_dir in itertools.pairwise(versions):
        old, new = (old_dir / MODEL_FILE).read_bytes(), (new_dir / MODEL_FILE).read_bytes()
        delta, xz = make_delta(old, new), lzma.compress(new, preset=9)
        print(f"{read_card(new_dir).version:<8}{len(new):>8}{len(xz):>8}{len(delta):>8}"
              f"{len(delta) / len(xz):>10.1%}")
        assert apply_delta(old, delta) == new
        assert len(delta) <= 0.15 * len(xz)


def test_a_retrained_version_is_evaluated_beside_its_parent(versions: list[Path]) -> None:
    first, retrained = read_card(versions[0]), read_card(versions[1])
    assert retrained.parent == "m-0001"
    assert retrained.input == first.input  # the frozen body needs the parent's scaling
    for key in FIGURES:
        assert f"parent_{key}" in retrained.metrics
    print(f"\nheld-out F1: first {first.metrics['f1']:.3f} (threshold without training labels), "
          f"retrained {retrained.metrics['f1']:.3f} (after a round of labels); "
          f"parent on the same split {retrained.metrics['parent_f1']:.3f}")


def test_the_cli_trains_and_refuses_a_parent_with_other_features(
        work: Path, versions: list[Path], tmp_path: Path) -> None:
    done = _train(work / "labelled.npz", tmp_path / "cli", "m-0009", versions[2], epochs=2)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["parent"] == "m-0003"
    other = datasets.build([s for s in simfleet.summaries(simfleet.fleet(4, 30))
                            if s.channel == "temp"], [], datasets.SplitRule(
                                simfleet.fleet(4, 30).t0(15), simfleet.fleet(4, 30).t0(20)))
    datasets.save(other, tmp_path / "temp-only.npz")
    refused = _train(tmp_path / "temp-only.npz", tmp_path / "bad", "m-0010", versions[2])
    assert refused.returncode == 1
    assert "train a new first version" in refused.stderr
    assert not (tmp_path / "bad").exists()


def test_the_cloud_server_starts_without_importing_tensorflow(tmp_path: Path) -> None:
    probe = ("import sys\n"
             "from tandem.cloud import create_app\n"
             "from tandem.cloud.cli import main\n"
             f"create_app({{'version': 1, 'mode': 'development', 'data_dir': {str(tmp_path)!r}}})\n"
             "loaded = [m for m in ('tensorflow', 'keras', 'tandem.cloud.training')"
             " if m in sys.modules]\n"
             "print(loaded)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def read_card(directory: Path) -> ModelCard:
    return modelcard.from_plain(json.loads((directory / "card.json").read_text()))


def _train(dataset: Path, out: Path, version: str, parent: Path | None = None, *,
           seed: int = 1, epochs: int = EPOCHS) -> subprocess.CompletedProcess[str]:
    """`tandem-cloud model train` in a child process (TensorFlow stays out of this one)."""
    argv = [sys.executable, "-m", "tandem.cloud.cli.main", "model", "train",
            "--dataset", str(dataset), "--out", str(out), "--version", version,
            "--seed", str(seed), "--epochs", str(epochs)]
    if parent is not None:
        argv += ["--parent", str(parent)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def _body_digest(keras_file: Path) -> str:
    """sha256 over the frozen body's weights, read by Keras in a child process."""
    probe = ("import hashlib, sys, keras\n"
             "model = keras.models.load_model(sys.argv[1], compile=False)\n"
             "h = hashlib.sha256()\n"
             "for name in ('body_1', 'body_2', 'body_3'):\n"
             "    for w in model.get_layer(name).get_weights():\n"
             "        h.update(w.tobytes())\n"
             "print(h.hexdigest())\n")
    done = subprocess.run([sys.executable, "-c", probe, str(keras_file)], capture_output=True,
                          text=True, timeout=300, check=True)
    return done.stdout.strip().splitlines()[-1]


def _tensors(model: bytes) -> list[dict[str, Any]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model)
    return list(interpreter.get_tensor_details())
