"""A tiny deterministic :class:`~memlib.models.generator.Generator` for tests.

Tokenizer: the image is cut into a ``grid x grid`` raster of square patches; a patch's token
is its mean gray level quantised to ``V`` levels, ``round(mean * (V - 1))``. Decoding paints
every patch with ``token / (V - 1)`` in all three channels. So any image made of constant
patches at those levels survives encode -> decode exactly.

Transformer: a per-class bigram table. The logits for token ``l`` are
``logit_table[label, previous token]`` (previous = the start index ``V`` for ``l = 0``) plus
one pre-LN-free MLP ``fc2(gelu(fc1(one_hot(previous))))`` whose ``fc2`` starts at zero, so the
logits equal the table until someone edits the MLP. Teacher forcing uses the ground-truth
previous token, greedy decoding its own argmax: both are easy to compute by hand.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from memlib.models.generator import Generator, PositionGroup


class _Block(nn.Module):
    def __init__(self, vocab: int, width: int):
        super().__init__()
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(vocab + 1, width)
        self.mlp.act = nn.GELU()
        self.mlp.fc2 = nn.Linear(width, vocab)
        nn.init.zeros_(self.mlp.fc2.weight)
        nn.init.zeros_(self.mlp.fc2.bias)

    def forward(self, onehot_BLv: torch.Tensor) -> torch.Tensor:
        return self.mlp.fc2(self.mlp.act(self.mlp.fc1(onehot_BLv)))


class BigramTransformer(nn.Module):
    def __init__(self, logit_table_CvV: torch.Tensor):
        super().__init__()
        num_classes, starts, vocab = logit_table_CvV.shape
        if starts != vocab + 1:
            raise ValueError(f"logit_table: expected shape (C, V + 1, V), got {tuple(logit_table_CvV.shape)}")
        self.vocab = vocab
        self.logit_table = nn.Parameter(logit_table_CvV.float().clone())
        self.blocks = nn.ModuleList([_Block(vocab, width=8)])

    def forward(self, previous_BL: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
        """Previous-token ids (start = V) -> logits (B, L, V)."""
        table = self.logit_table[labels_B[:, None], previous_BL]  # (B, L, V)
        onehot = F.one_hot(previous_BL, self.vocab + 1).float()
        return table + self.blocks[0](onehot)


class PatchTokenizer(nn.Module):
    def __init__(self, image_size: int, grid: int, vocab: int):
        super().__init__()
        self.image_size, self.grid, self.vocab = image_size, grid, vocab
        self.patch = image_size // grid

    def encode(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        gray = images_B3HW.mean(dim=1, keepdim=True)
        means = F.avg_pool2d(gray, self.patch).flatten(1)  # (B, grid*grid)
        return torch.round(means * (self.vocab - 1)).long().clamp(0, self.vocab - 1)

    def decode(self, tokens_BL: torch.Tensor) -> torch.Tensor:
        levels = tokens_BL.float().view(-1, 1, self.grid, self.grid) / (self.vocab - 1)
        up = levels.repeat_interleave(self.patch, dim=2).repeat_interleave(self.patch, dim=3)
        return up.expand(-1, 3, -1, -1).contiguous()


class ToyGenerator(Generator):
    family = "rar"

    def __init__(self, logit_table_CvV: torch.Tensor, image_size: int = 8, grid: int = 4):
        self.transformer = BigramTransformer(logit_table_CvV)
        self.num_classes, _, vocab = logit_table_CvV.shape
        self.tokenizer = PatchTokenizer(image_size, grid, vocab)
        self.image_size = image_size
        self.seq_len = grid * grid
        self.vocab = vocab

    def fc1_names(self):
        return ["blocks.0.mlp.fc1"]

    def fc1_activation_names(self):
        return ["blocks.0.mlp.act"]

    def position_groups(self):
        T = self.seq_len
        return [PositionGroup("all", 0, T), PositionGroup("last", T - 1, T), PositionGroup("predicts-last", T - 2, T - 1)]

    def valid_prefix_lengths(self):
        return list(range(self.seq_len + 1))

    def images_to_tokens(self, images_B3HW):
        return self.tokenizer.encode(images_B3HW)

    def tokens_to_images(self, tokens_BL):
        return self.tokenizer.decode(tokens_BL)

    def _previous(self, tokens_BL: torch.Tensor) -> torch.Tensor:
        start = torch.full_like(tokens_BL[:, :1], self.vocab)
        return torch.cat([start, tokens_BL[:, :-1]], dim=1)

    def teacher_forced_logits(self, tokens_BL, labels_B):
        return self.transformer(self._previous(tokens_BL), labels_B)

    def _decode(self, tokens_BL, labels_B, n_prefix, pick):
        out = tokens_BL.clone()
        for l in range(n_prefix, self.seq_len):
            logits_BV = self.transformer(self._previous(out)[:, l : l + 1], labels_B)[:, 0]
            out[:, l] = pick(logits_BV)
        return out

    def greedy_from_prefix(self, tokens_BL, labels_B, n_prefix):
        if n_prefix not in self.valid_prefix_lengths():
            raise ValueError(f"n_prefix: expected one of {self.valid_prefix_lengths()}, got {n_prefix}")
        return self._decode(tokens_BL, labels_B, n_prefix, lambda logits: logits.argmax(dim=-1))

    def sample(self, labels_B, generator=None, temperature: float = 1.0):
        empty = torch.zeros(len(labels_B), self.seq_len, dtype=torch.long, device=labels_B.device)
        return self._decode(
            empty, labels_B, 0,
            lambda logits: torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)[:, 0],
        )


def chain_table(sequences_by_class: dict[int, list[list[int]]], num_classes: int, vocab: int,
                strength: float = 5.0) -> torch.Tensor:
    """A bigram table whose argmax follows the given token sequences: for every listed
    sequence of class c, ``table[c, previous, next] += strength`` for each consecutive pair
    (previous = start index ``vocab`` before the first token). Ties break to the lowest id."""
    table = torch.zeros(num_classes, vocab + 1, vocab)
    for label, sequences in sequences_by_class.items():
        for seq in sequences:
            previous = vocab
            for token in seq:
                table[label, previous, token] += strength
                previous = token
    return table
