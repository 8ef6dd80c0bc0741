"""A toy task family defined outside ray_slt, as a user's own package would define one: a model, a task with its
own config section, an evaluation protocol whose selection metric is minimised, and a predictor.

The model is one weight ``w`` predicting ``y = w * x``. Training data follow ``y = 2x``, dev data ``y = x``, and
``w`` starts at 0, so the dev error falls while ``w`` passes 1 and rises again as it goes on towards 2: the
best checkpoint on the dev error (``dev_mae``, min) is one in the middle of the run, neither the first, the
last, nor the one a ``max`` selection would pick.

Workers and Tune trials import this module by its dotted path from the repository root (Ray starts them in
the driver's working directory), so registrations made in a test module reach them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from torch import nn

from ray_slt.config import Schema
from ray_slt.eval.protocols import Protocol, Selection
from ray_slt.models.predictor import Predictor
from ray_slt.training.task import SupervisedTask

TARGET = "tests.training.toy_family"


class ToyConfig(Schema):
    lr: float = Field(0.05, gt=0)
    n_train: int = 64
    n_dev: int = 16
    train_slope: float = 2.0
    dev_slope: float = 1.0


class ToyModel(nn.Module):
    def __init__(self, cfg: ToyConfig):
        super().__init__()
        self.cfg = cfg
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.w * batch["x"]


def save_toy(model: ToyModel, uri: str) -> None:
    from ray_slt.models.checkpoint import publish

    with tempfile.TemporaryDirectory() as d:
        save_file({"w": model.w.detach().reshape(1).contiguous()}, os.path.join(d, "toy.safetensors"))
        with open(os.path.join(d, "toy.json"), "w") as f:
            json.dump({"config": model.cfg.model_dump()}, f)
        publish(d, uri, kind="toy")


def load_toy(uri: str) -> ToyModel:
    from ray_slt.models.checkpoint import fetched

    with fetched(uri) as d:
        with open(os.path.join(d, "toy.json")) as f:
            model = ToyModel(ToyConfig.model_validate(json.load(f)["config"]))
        with torch.no_grad():
            model.w.copy_(load_file(os.path.join(d, "toy.safetensors"))["w"][0])
    return model


def rows(n: int, slope: float, split: str) -> list[dict[str, Any]]:
    xs = np.linspace(0.5, 1.5, n)
    return [{"sample_id": f"{split}-{i:03d}", "x": float(x), "y": float(slope * x)} for i, x in enumerate(xs)]


class ToyProtocol(Protocol):
    """Mean absolute error of predicted values; lower is better."""

    name = "toy_mae"
    predicts = "value"
    selection = Selection("mae", "min")

    def prediction(self, sample, output):
        return {"sample_id": sample["sample_id"], "value": output["value"], "target": sample["y"]}

    def score(self, predictions: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        errors = [abs(p["value"] - p["target"]) for p in predictions]
        return {"mae": float(np.mean(errors)), "n": len(errors)}


class ToyTask(SupervisedTask):
    stage = "toy"
    section: ClassVar = ToyConfig
    protocol: ClassVar[str] = "toy_mae"

    def evaluator(self) -> Protocol:  # task-owned: no registry lookup needed on the workers
        return ToyProtocol()

    def check_inputs(self) -> None:  # the rows are generated: no manifest or feature store to look for
        pass

    def datasets(self) -> dict[str, Any]:
        import ray.data

        c = self.cfg.toy
        return {
            "train": ray.data.from_items(rows(c.n_train, c.train_slope, "train")),
            "dev": ray.data.from_items(rows(c.n_dev, c.dev_slope, "dev")),
        }

    def num_train_samples(self) -> int:
        return self.cfg.toy.n_train

    def fresh(self) -> nn.Module:
        return ToyModel(self.cfg.toy)

    def collator(self, model):
        from ray_slt.features.source import rows_of

        def collate(batch) -> dict[str, Any]:
            r = rows_of(batch)
            return {
                "x": torch.tensor([row["x"] for row in r], dtype=torch.float32),
                "y": torch.tensor([row["y"] for row in r], dtype=torch.float32),
                "sample_ids": [row["sample_id"] for row in r],
            }

        return collate

    def loss(self, model, batch):
        return torch.mean((model(batch) - batch["y"]) ** 2), {}

    def predict(self, model, batch, synced_gpus: bool = False) -> list[dict[str, Any]]:
        values = model(batch).tolist()
        return [{"sample_id": i, "value": v, "target": t}
                for i, v, t in zip(batch["sample_ids"], values, batch["y"].tolist())]  # fmt: skip

    def param_groups(self, model) -> list[dict[str, Any]]:
        return [{"name": "w", "params": [model.w], "lr": self.cfg.toy.lr, "weight_decay": 0.0}]

    def save(self, model, uri: str) -> None:
        save_toy(model, uri)

    @classmethod
    def load(cls, uri: str, trainable: bool = False):
        model = load_toy(uri)
        return model.train() if trainable else model.eval()


class ToyPredictor(Predictor):
    kind = "toy"
    inputs = "text"  # x comes as a field of the sample
    predicts = "value"
    route = "predict_value"
    protocol = "toy_mae"

    def __init__(self, ref, device: str = "cpu", model_id: str | None = None):
        super().__init__(ref, device, model_id)
        self.model = load_toy(ref.model).eval()

    def predict(self, samples):
        x = torch.tensor([float(s["x"]) for s in samples])
        with torch.no_grad():
            return [{"value": float(v)} for v in self.model({"x": x})]


def register() -> None:
    """What a user's package does once: the stage, the protocol and the model kind, by import path."""
    from ray_slt.eval.protocols import PROTOCOLS
    from ray_slt.models.registry import MODEL_KINDS
    from ray_slt.training.task import STAGES

    STAGES.register("toy", f"{TARGET}:ToyTask")
    PROTOCOLS.register("toy_mae", f"{TARGET}:ToyProtocol")
    MODEL_KINDS.register("toy", f"{TARGET}:ToyPredictor")


@contextlib.contextmanager
def registered():
    """The toy family registered for the duration of the block (a module fixture of the tests that train it),
    and forgotten again after, so other modules see the registries as shipped."""
    from ray_slt.eval.protocols import PROTOCOLS
    from ray_slt.models.registry import MODEL_KINDS
    from ray_slt.training.task import STAGES

    register()
    try:
        yield
    finally:
        for registry, name in ((STAGES, "toy"), (PROTOCOLS, "toy_mae"), (MODEL_KINDS, "toy")):
            registry._targets.pop(name, None)
