"""The checkpoint: weights plus everything later stages need (config, classes, normalisation).

Export and build read only this file, so a model trained on other data or at another size
flows through the pipeline without flags repeated by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from maas.files import atomic_write
from maas.runtime.images import Preprocessing
from maas.training.model import SmallCNN


class Saved:
    """A dataclass of plain values and tensors, saved whole with torch.save (atomically) and
    loaded with weights_only=True: no pickled code runs on load. `network(**model_args)` with
    `model_state` loaded is the trained model."""

    network: ClassVar[type[torch.nn.Module]]

    def build_model(self):
        model = self.network(**self.model_args)
        model.load_state_dict(self.model_state)
        return model.eval()

    def save(self, path: str | Path) -> None:
        atomic_write(path, lambda f: torch.save(self.__dict__, f))

    @classmethod
    def load(cls, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}: run `maas train` first")
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


@dataclass
class Checkpoint(Saved):
    network = SmallCNN
    model_state: dict[str, torch.Tensor]
    model_args: dict[str, int]  # SmallCNN(**model_args)
    class_names: list[str]
    mean: list[float]
    std: list[float]
    input_size: list[int]  # [height, width]
    dataset: dict[str, Any]  # name, data_dir, seed: enough to rebuild the held-out split
    config: dict[str, Any]  # the resolved training config
    epoch: int = 0
    val_accuracy: float = 0.0
    test_accuracy: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def preprocessing(self) -> Preprocessing:
        return Preprocessing(height=self.input_size[0], width=self.input_size[1])

    def load_dataset(self):
        """The dataset and split this checkpoint was trained on (its held-out set included)."""
        from maas.training.data import load_dataset

        return load_dataset(self.dataset.get("data_dir"), seed=self.dataset.get("seed", 0))
