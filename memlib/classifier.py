"""The testbed's FID feature extractor: a small CNN classifier for Fashion-MNIST 32 x 32.

A "testbed FID" is the Frechet distance between the 128-d penultimate features of this
classifier (global average pool of the last conv layer) for generated and real images. It
plays the role Inception-v3 plays for ImageNet FID, on a data set Inception was not made for;
the numbers are NOT comparable to the paper's FIDs (see memlib/fid.py).

Files: ``classifier.safetensors`` (the weights) and ``classifier.json`` beside it (the
architecture, the training parameters, the held-out accuracy and the data file's checksum).

Train and ship (about a minute on one CPU thread)::

    python -m memlib.classifier --out data/checkpoints/classifier.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from memlib.models.loading import load_strict, read_state_dict


@dataclass(frozen=True)
class ClassifierConfig:
    num_classes: int = 10
    width: int = 32  # channels of the first conv; doubled after the first pooling
    feature_dim: int = 128  # channels of the last conv = penultimate features
    image_size: int = 32


class TestbedClassifier(nn.Module):
    """conv (32 ch) -> pool -> conv, conv (64 ch) -> pool -> conv (128 ch, 8x8) -> global
    average pool (the features) -> linear (the logits); every conv is conv3x3-BatchNorm-ReLU.
    Input (B, 3, 32, 32) in [0, 1]."""

    __test__ = False  # not a pytest class

    def __init__(self, config: ClassifierConfig = ClassifierConfig()):
        super().__init__()
        self.config = config
        w = config.width

        def conv(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.convs = nn.Sequential(
            *conv(3, w), nn.MaxPool2d(2),
            *conv(w, 2 * w), *conv(2 * w, 2 * w), nn.MaxPool2d(2),
            *conv(2 * w, config.feature_dim),
        )
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        """Penultimate features (B, feature_dim)."""
        size = self.config.image_size
        if images_B3HW.ndim != 4 or tuple(images_B3HW.shape[1:]) != (3, size, size):
            raise ValueError(f"images: expected (B, 3, {size}, {size}) in [0, 1], got {tuple(images_B3HW.shape)}")
        return self.convs(images_B3HW - 0.5).mean(dim=(2, 3))

    def forward(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images_B3HW))


def train_classifier(images_N3HW: torch.Tensor, labels_N: torch.Tensor, epochs: int = 6, seed: int = 0,
                     batch_size: int = 64, lr: float = 3e-3, config: ClassifierConfig = ClassifierConfig()
                     ) -> TestbedClassifier:
    """Adam with a cosine learning-rate schedule; each batch flipped left-right with a seeded
    coin per image. Deterministic for a given seed on one thread."""
    if len(images_N3HW) != len(labels_N):
        raise ValueError(f"images ({len(images_N3HW)}) and labels ({len(labels_N)}) differ in length")
    torch.manual_seed(seed)
    model = TestbedClassifier(config)
    generator = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-len(images_N3HW) // batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images_N3HW), generator=generator)
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            x = images_N3HW[batch]
            flip = torch.rand(len(batch), generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
            loss = F.cross_entropy(model(x), labels_N[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: TestbedClassifier, images_N3HW: torch.Tensor, labels_N: torch.Tensor, batch_size: int = 256) -> float:
    correct = sum(int((model(images_N3HW[i : i + batch_size]).argmax(1) == labels_N[i : i + batch_size]).sum())
                  for i in range(0, len(images_N3HW), batch_size))
    return correct / len(images_N3HW)


def metadata_path(path: str | os.PathLike) -> Path:
    """``classifier.safetensors`` -> ``classifier.json``."""
    return Path(path).with_suffix(".json")


def save_classifier(model: TestbedClassifier, path: str | os.PathLike, record: dict) -> None:
    """Write the weights (safetensors) and ``{"config": ..., **record}`` as JSON beside them,
    each atomically (an interrupted save leaves the previous file whole)."""
    from safetensors.torch import save

    from memlib.results import atomic_write_bytes

    from memlib.results import atomic_write_bytes, atomic_write_with

    path = Path(path)
    atomic_write_bytes(path, save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}))
    text = json.dumps({"config": asdict(model.config), **record}, indent=2) + "\n"
    atomic_write_bytes(metadata_path(path), text.encode("utf-8"))


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> TestbedClassifier:
    """Load weights and config written by :func:`save_classifier`; strict, eval mode."""
    path = Path(path)
    meta_file = metadata_path(path)
    if not meta_file.is_file():
        raise FileNotFoundError(f"classifier metadata not found: {meta_file} (written beside {path.name})")
    try:
        config = ClassifierConfig(**json.loads(meta_file.read_text())["config"])
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{meta_file}: expected JSON with a 'config' of {list(ClassifierConfig.__dataclass_fields__)}") from err
    model = TestbedClassifier(config)
    load_strict(model, read_state_dict(path), source=str(path), config=config)
    return model.to(device).eval()


def main(argv: list[str] | None = None) -> None:
    from memlib import __version__
    from memlib.data import load_testbed, testbed_views
    from memlib.results import file_sha256

    parser = argparse.ArgumentParser(description="Train the testbed FID classifier on the testbed's train split.")
    parser.add_argument("--out", required=True, help="output .safetensors path (a .json is written beside it)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    data = load_testbed()
    # the images the testbed FID compares: each family's centre view (what its generator learns to draw)
    train_x = torch.cat([testbed_views(data.train_images, family) for family in ("var", "rar")])
    test_x = torch.cat([testbed_views(data.heldout_images, family) for family in ("var", "rar")])
    train_y = torch.as_tensor(data.train_labels).repeat(2)
    test_y = torch.as_tensor(data.heldout_labels).repeat(2)
    started = time.perf_counter()
    model = train_classifier(train_x, train_y, epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, lr=args.lr)
    seconds = time.perf_counter() - started
    record = {
        "purpose": "feature extractor of the testbed FID (penultimate 128-d features); not Inception, not comparable to ImageNet FID",
        "trained_on": f"{data.path.name} train split, the centre views of both families ({len(train_y)} images, "
                      "each once; planted images not duplicated)",
        "data_sha256": file_sha256(data.path),
        "epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size, "lr": args.lr,
        "optimizer": "Adam, cosine schedule",
        "augmentation": "horizontal flip, p = 0.5",
        "train_accuracy": accuracy(model, train_x, train_y),
        "heldout_accuracy": accuracy(model, test_x, test_y),
        "heldout_size": len(test_y),
        "heldout_views": "the centre views of both families",
        "train_seconds": round(seconds, 1), "torch_threads": 1,
        "torch_version": torch.__version__, "memlib_version": __version__,
    }
    save_classifier(model, args.out, record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
