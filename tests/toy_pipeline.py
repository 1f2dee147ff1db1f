"""A toy VAR-like :class:`Generator` with one fc1 unit wired to one image, for the UnitMem
pipeline tests (collection, selection scores, CLI stages).

Tokenizer: :class:`toy_generator.PatchTokenizer` (8 x 8 images, 4 x 4 patches, 4 gray levels,
L = 16 tokens). Transformer input at position t is a one-hot feature vector
[previous token (start at t = 0) | class | position], width C = (V + 1) + classes + L; then K
residual MLP blocks ``x + fc2(gelu(fc1(x)))`` (no norm, no attention) and a linear head.
Position groups mimic VAR's scales: scale0 = [0, 1), scale1 = [1, 5), scale2 = [5, 16).

The wiring: block 0's unit 0 has weight ``a`` on "previous token = V - 1" and on "class =
SPECIAL_CLASS" and bias ``-a / 2``. :func:`toy_dataset` gives exactly one image of that class
and the only image containing the brightest level, so that unit fires (pre-activation >= a/2)
at every position of that image and nowhere else (pre-activation exactly -a/2): UnitMem ~ 1
in every group, argmax = that image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from toy_generator import PatchTokenizer

from memlib.models.generator import Generator, PositionGroup

VOCAB, CLASSES, GRID, IMAGE = 4, 3, 4, 8
SEQ = GRID * GRID
SPECIAL_CLASS = 2
WIRED = (0, 0)  # (block, unit)


class ToyBlock(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.ffn = nn.Module()
        self.ffn.fc1 = nn.Linear(width, hidden)
        self.ffn.act = nn.GELU()
        self.ffn.fc2 = nn.Linear(hidden, width)

    def forward(self, x_BTC: torch.Tensor) -> torch.Tensor:
        return x_BTC + self.ffn.fc2(self.ffn.act(self.ffn.fc1(x_BTC)))


class ToyTransformer(nn.Module):
    def __init__(self, depth: int, hidden: int, seed: int, strength: float):
        super().__init__()
        torch.manual_seed(seed)
        self.width = (VOCAB + 1) + CLASSES + SEQ
        self.blocks = nn.ModuleList(ToyBlock(self.width, hidden) for _ in range(depth))
        self.head = nn.Linear(self.width, VOCAB)
        with torch.no_grad():
            fc1 = self.blocks[WIRED[0]].ffn.fc1
            fc1.weight[WIRED[1]] = 0.0
            fc1.weight[WIRED[1], VOCAB - 1] = strength  # previous token = brightest level
            fc1.weight[WIRED[1], VOCAB + 1 + SPECIAL_CLASS] = strength  # class = SPECIAL_CLASS
            fc1.bias[WIRED[1]] = -strength / 2
            self.blocks[WIRED[0]].ffn.fc2.weight[:, WIRED[1]] = 0.0  # later blocks never see it

    def features(self, previous_BT: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
        B, T = previous_BT.shape
        tok = F.one_hot(previous_BT, VOCAB + 1).float()
        cls = F.one_hot(labels_B, CLASSES).float()[:, None].expand(B, T, CLASSES)
        pos = torch.eye(SEQ, device=previous_BT.device)[None, :T].expand(B, T, SEQ)
        return torch.cat([tok, cls, pos], dim=-1)

    def forward(self, previous_BT: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
        x_BTC = self.features(previous_BT, labels_B)
        for block in self.blocks:
            x_BTC = block(x_BTC)
        return self.head(x_BTC)


class ToyVAR(Generator):
    family = "var"

    def __init__(self, depth: int = 3, hidden: int = 6, seed: int = 0, strength: float = 20.0):
        self.transformer = ToyTransformer(depth, hidden, seed, strength)
        self.tokenizer = PatchTokenizer(IMAGE, GRID, VOCAB)
        self.num_classes, self.image_size, self.seq_len = CLASSES, IMAGE, SEQ

    def fc1_names(self):
        return [f"blocks.{i}.ffn.fc1" for i in range(len(self.transformer.blocks))]

    def fc1_activation_names(self):
        return [f"blocks.{i}.ffn.act" for i in range(len(self.transformer.blocks))]

    def position_groups(self):
        return [PositionGroup("scale0", 0, 1), PositionGroup("scale1", 1, 5), PositionGroup("scale2", 5, SEQ)]

    def valid_prefix_lengths(self):
        return [0, 1, 5]

    def images_to_tokens(self, images_B3HW):
        return self.tokenizer.encode(images_B3HW)

    def tokens_to_images(self, tokens_BL):
        return self.tokenizer.decode(tokens_BL)

    @staticmethod
    def previous(tokens_BL: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.full_like(tokens_BL[:, :1], VOCAB), tokens_BL[:, :-1]], dim=1)

    def teacher_forced_logits(self, tokens_BL, labels_B):
        return self.transformer(self.previous(tokens_BL), labels_B).float()

    def greedy_from_prefix(self, tokens_BL, labels_B, n_prefix):
        if n_prefix not in self.valid_prefix_lengths():
            raise ValueError(f"n_prefix: expected one of {self.valid_prefix_lengths()}, got {n_prefix}")
        out = tokens_BL.clone()
        for t in range(n_prefix, SEQ):
            out[:, t] = self.transformer(self.previous(out)[:, : t + 1], labels_B)[:, t].argmax(-1)
        return out

    def sample(self, labels_B, generator=None, **sampling):
        out = torch.zeros(len(labels_B), SEQ, dtype=torch.long)
        for t in range(SEQ):
            probs = torch.softmax(self.transformer(self.previous(out)[:, : t + 1], labels_B)[:, t], -1)
            out[:, t] = torch.multinomial(probs, 1, generator=generator)[:, 0]
        return out


def toy_dataset(n: int = 12, special: int = 5, seed: int = 0) -> torch.utils.data.TensorDataset:
    """``n`` images (3, 8, 8) of constant 2 x 2 patches; image ``special`` is the only one of
    class SPECIAL_CLASS and the only one containing the brightest level (at patch 9)."""
    g = torch.Generator().manual_seed(seed)
    tokens_NL = torch.randint(0, VOCAB - 1, (n, SEQ), generator=g)
    tokens_NL[special, 9] = VOCAB - 1
    labels_N = torch.randint(0, SPECIAL_CLASS, (n,), generator=g)
    labels_N[special] = SPECIAL_CLASS
    images = PatchTokenizer(IMAGE, GRID, VOCAB).decode(tokens_NL)
    return torch.utils.data.TensorDataset(images, labels_N)


def shifting_views(image_3HW: torch.Tensor, n_views: int, generator: torch.Generator) -> torch.Tensor:
    """A test augmentation: odd views flipped, every view rolled by a random whole number of patches."""
    views = []
    for view_index in range(n_views):
        shift = 2 * int(torch.randint(0, GRID, (1,), generator=generator))
        view = image_3HW.flip(-1) if view_index % 2 else image_3HW
        views.append(torch.roll(view, shifts=shift, dims=-1))
    return torch.stack(views)


def same_views(image_3HW: torch.Tensor, n_views: int, generator: torch.Generator) -> torch.Tensor:
    """The image itself, ``n_views`` times: views that make UnitMem's average exact."""
    return image_3HW.unsqueeze(0).expand(n_views, *image_3HW.shape).clone()


def collect_unitmem(gen, dataset, *, n_views: int, views=same_views, pooled: bool = False, shard=(0, 1), **kwargs):
    """UnitMem over ``dataset`` (or the contiguous part ``shard = (rank, world_size)`` owns) as
    stage_unitmem builds it: accumulate_unitmem over the images, then a UnitMemResult."""
    from memlib.collect import UnitMemResult, accumulate_unitmem, collection_groups
    from memlib.distributed import shard_indices

    ids = shard_indices(len(dataset), *shard)
    acc = accumulate_unitmem(gen, dataset, ids, n_views=n_views, views=views, pooled=pooled, **kwargs)
    params = {"n_views": n_views, "activation": kwargs.get("activation", "post"), "pooled": pooled}
    groups = [g.name for g in collection_groups(gen, pooled)]
    return UnitMemResult(acc.state_dict(), groups, list(gen.fc1_names()), gen.family, params)


def dense_means(gen: ToyVAR, dataset, n_views: int, view_fn, seed: int, activation: str = "post") -> torch.Tensor:
    """mu (N, G, K, U) computed by hand, without hooks: the toy's forward written out."""
    from memlib.collect import view_generator

    net = gen.transformer
    groups = gen.position_groups()
    out = []
    for i in range(len(dataset)):
        image, label = dataset[i]
        generator = view_generator(seed, i)
        views = view_fn(image, n_views, generator)
        tokens = gen.tokenizer.encode(views)
        x = net.features(gen.previous(tokens), torch.full((n_views,), int(label)))
        per_block = []
        with torch.no_grad():
            for block in net.blocks:
                pre = block.ffn.fc1(x)
                act = F.gelu(pre)
                value = (act if activation == "post" else pre).abs()
                per_block.append(torch.stack([value[:, g.start : g.stop].mean(1) for g in groups], 1))
                x = x + block.ffn.fc2(act)
        out.append(torch.stack(per_block, 2).double().mean(0))  # (G, K, U)
    return torch.stack(out)


# ---- a tiny registry model with random weights, for the CLI stages ----------------------------

TINY_VAR = {  # overrides of var-d16: 2 blocks, scales 1/2/4 (21 tokens), 32 x 32 testbed images
    "depth": 2, "width": 32, "num_heads": 2, "num_classes": 10, "patch_nums": [1, 2, 4], "vocab_size": 16,
    "z_channels": 4, "ch": 32, "ch_mult": [1, 1, 1, 1], "num_res_blocks": 1, "using_sa": False,
    "using_mid_sa": False, "resolution": 32,
}


def write_tiny_var(folder, seed: int = 0) -> dict:
    """Save a randomly initialised tiny VAR's two checkpoints (safetensors) in ``folder`` and
    return the CLI parameters that load it on the testbed's first images."""
    from pathlib import Path

    from safetensors.torch import save_file

    from memlib.models.registry import build_generator, get_config

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_VAR.items()}
    torch.manual_seed(seed)
    gen = build_generator(get_config("var-d16", **overrides))
    for name, module in (("transformer", gen.transformer), ("tokenizer", gen.tokenizer)):
        save_file({k: v.detach().clone().contiguous() for k, v in module.state_dict().items()},
                  str(folder / f"{name}.safetensors"))
    return {
        "seed": 0, "device": "cpu", "model": "var-d16", "model_overrides": TINY_VAR,
        "checkpoint": str(folder / "transformer.safetensors"),
        "tokenizer_checkpoint": str(folder / "tokenizer.safetensors"),
        "dataset": "testbed", "max_images": 24, "n_views": 2, "batch_size": 16, "shard_size": 6,
        "unitmem_pooled": True, "per_class": 1, "prefix_lengths": [0, 1, 5], "threshold": 0.9,
        "k_percents": [0, 5, 20], "random_seeds": [0, 1, 2],
    }
