"""The one interface both model families implement (VAR: next-scale, RAR: next-token).

Everything downstream (UnitMem, the extraction attack, FID, the intervention) talks to a
:class:`Generator` and never to a family's internals.

Tensor legend (as in VAR's own code): B batch, L tokens per image in the family's canonical
order (VAR: all scales concatenated, coarse to fine; RAR: raster order), T transformer
positions (VAR: T = L; RAR: T = L + 2 = [cls, cond, tok_0 .. tok_{L-1}]), V vocabulary,
U fc1 units of one block, H x W image size.

Position groups address the transformer positions T at which fc1 activations are read:

- VAR: one group per scale, ``"scale0"`` .. ``"scale{K-1}"``; the positions of scale k are the
  inputs that predict the tokens of scale k (scale 0 = the class/start token).
- RAR: ``"all"`` (every position, cls included) and ``"last"`` (the last position of the
  teacher-forced sequence, the paper's choice).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Put modules in eval mode for the block, restoring each one's previous mode afterwards
    (also after an exception)."""
    was_training = [module.training for module in modules]
    try:
        for module in modules:
            module.eval()
        yield
    finally:
        for module, training in zip(modules, was_training):
            module.train(training)


@dataclass(frozen=True)
class PositionGroup:
    """A named set of transformer positions ``[start, stop)`` (contiguous in both families)."""

    name: str
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


class Generator(abc.ABC):
    """A class-conditional image autoregressive model with its tokenizer.

    Attributes every implementation sets:

    - ``family``: ``"var"`` or ``"rar"``.
    - ``transformer``: the ``nn.Module`` whose dotted names (``blocks.{i}.ffn.fc1`` for VAR,
      ``blocks.{i}.mlp.fc1`` for RAR) are what hooks and interventions address.
    - ``tokenizer``: the ``nn.Module`` that maps images to token ids and back.
    - ``num_classes``: class labels are ``0 .. num_classes - 1`` everywhere in this interface.
    - ``image_size``: H = W of the images the tokenizer takes and returns.
    - ``seq_len``: L, tokens per image.
    """

    family: str
    transformer: nn.Module
    tokenizer: nn.Module
    num_classes: int
    image_size: int
    seq_len: int

    # ---- structure -------------------------------------------------------------------------
    @abc.abstractmethod
    def fc1_names(self) -> list[str]:
        """Dotted names (relative to ``transformer``) of every block's fc1, in depth order."""

    @abc.abstractmethod
    def fc1_activation_names(self) -> list[str]:
        """Dotted names of the nonlinearity module that follows each fc1 (VAR: GELU-tanh at
        ``blocks.{i}.ffn.act``, RAR: GELU-erf at ``blocks.{i}.mlp.act``), in depth order. Its
        output is the "post" activation that UnitMem reads, so collection hooks it there
        instead of recomputing the nonlinearity."""

    @abc.abstractmethod
    def position_groups(self) -> list[PositionGroup]:
        """The transformer-position groups of this model (see module docstring)."""

    @abc.abstractmethod
    def valid_prefix_lengths(self) -> list[int]:
        """Prefix lengths n (in tokens) accepted by :meth:`greedy_from_prefix`."""

    # ---- tokens <-> images -----------------------------------------------------------------
    @abc.abstractmethod
    def images_to_tokens(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], shape (B, 3, H, W) -> token ids (B, L), int64."""

    @abc.abstractmethod
    def tokens_to_images(self, tokens_BL: torch.Tensor) -> torch.Tensor:
        """Token ids (B, L) -> images in [0, 1], (B, 3, H, W), float32."""

    # ---- the transformer -------------------------------------------------------------------
    @abc.abstractmethod
    def teacher_forced_logits(self, tokens_BL: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
        """Ground-truth tokens as input, no label dropout, eval mode -> logits (B, L, V) float32,
        where ``logits[:, l]`` is the prediction for ``tokens_BL[:, l]``."""

    @abc.abstractmethod
    def sample(self, labels_B: torch.Tensor, generator: torch.Generator | None = None, **sampling) -> torch.Tensor:
        """KV-cached class-conditional sampling with the family's guidance -> tokens (B, L).

        VAR keywords: ``cfg``, ``top_k``, ``top_p``. RAR keywords: ``guidance_scale``,
        ``guidance_scale_pow``, ``temperature``.
        """

    @abc.abstractmethod
    def greedy_from_prefix(self, tokens_BL: torch.Tensor, labels_B: torch.Tensor, n_prefix: int) -> torch.Tensor:
        """The attack's stage C: keep the first ``n_prefix`` ground-truth tokens, then argmax
        decoding, class-conditional, no guidance -> tokens (B, L). ``n_prefix`` must be one of
        :meth:`valid_prefix_lengths`; anything else raises ``ValueError`` listing them."""

    # ---- loading ---------------------------------------------------------------------------
    def adapt_tokenizer_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Hook for known checkpoint quirks before strict loading (VAR's ``ema_vocab_hit_SV``).
        The default changes nothing."""
        return state_dict

    def after_load(self) -> None:
        """Rebuild non-persistent buffers after parameters were assigned from a meta build
        (VAR's block-causal mask, RAR's causal mask). The default does nothing."""

    # ---- conveniences ----------------------------------------------------------------------
    def to(self, device: torch.device | str) -> "Generator":
        self.transformer.to(device)
        self.tokenizer.to(device)
        return self

    def eval(self) -> "Generator":
        self.transformer.eval()
        self.tokenizer.eval()
        return self

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device


def check_finite_logits(gen: Generator, logits_BLV: torch.Tensor, where: str) -> None:
    """Raise ``ValueError`` naming the transformer's output head (VAR ``head``, RAR ``lm_head``)
    when the teacher-forced logits it produced hold NaN or inf. Tests the minimum and maximum
    only (NaN propagates into both; an inf is one of them): a reduction, without the
    logits-sized boolean tensor that ``isfinite(logits).all()`` would allocate."""
    if not torch.isfinite(torch.stack(logits_BLV.detach().aminmax())).all():
        heads = [name for name, _ in gen.transformer.named_modules() if name.split(".")[-1] in ("head", "lm_head")]
        head = repr(heads[-1]) if heads else "of the transformer"
        raise ValueError(f"non-finite teacher-forced logits (NaN or inf) from the output head {head} for {where}")
