"""RAR (Randomized AutoRegressive visual generation, Yu et al. 2024): the next-token
transformer and its :class:`~memlib.models.generator.Generator` wrapper (own code, official
checkpoint layout of bytedance/1d-tokenizer ``modeling/rar.py``).

Tensor legend: B batch, N = ``image_seq_len`` tokens per image, n <= N tokens given so far,
T = n + 2 transformer positions ``[cls, cond, tok_0 .. tok_{n-1}]``, D hidden size, H heads,
K head dim, I fc1 width (``intermediate_size``), V codebook size (the vocabulary of the head),
C number of classes.

Id layout of ``embeddings`` (V + C + 2 rows): ``[0, V)`` image tokens, ``V`` mask token (unused),
``V + 1 + c`` class ``c``, ``V + 1 + C`` the null (dropped-label) condition.

Randomness is explicit: label dropout, random orders and sampling all take a
``torch.Generator`` (``None`` = torch's global generator), and draws happen on that
generator's device, so a CPU generator gives the same tokens on any accelerator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .generator import Generator, PositionGroup, eval_mode
from .maskgit_vqgan import MaskGITVQGAN, VQGANConfig

_LN_EPS = 1e-6
_PREFIX = 2  # positions before the image tokens: cls, cond


# ---- config ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RARConfig:
    """Sizes of a RAR generator and its MaskGIT-VQGAN tokenizer.

    ``guidance_scale``, ``guidance_scale_pow`` and ``temperature`` are the defaults of
    :meth:`RARGenerator.sample` (the official per-model values for the official configs).
    ``pos_embed_extra_rows`` / ``timestep_extra_rows`` reproduce upstream's table lengths
    ``image_seq_len + 1024`` and ``image_seq_len + 100`` (only the first N + 2 rows are used).
    """

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    image_seq_len: int = 256
    codebook_size: int = 1024
    num_classes: int = 1000
    dropout: float = 0.1
    attn_dropout: float = 0.1
    pos_embed_extra_rows: int = 1024
    timestep_extra_rows: int = 100
    guidance_scale: float = 4.0
    guidance_scale_pow: float = 0.0
    temperature: float = 1.0
    image_size: int = 256
    tokenizer_channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    tokenizer_hidden_channels: int = 128
    tokenizer_num_res_blocks: int = 2
    tokenizer_z_channels: int = 256
    tokenizer_dropout: float = 0.0
    tokenizer_norm_groups: int = 32
    family: str = "rar"

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokenizer_channel_mult", tuple(int(m) for m in self.tokenizer_channel_mult))
        if self.family != "rar":
            raise ValueError(f"RARConfig.family must be 'rar', got {self.family!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"RARConfig.hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}"
            )
        tokens = self.tokenizer_config().num_tokens  # also validates the tokenizer sizes
        if tokens != self.image_seq_len:
            raise ValueError(
                f"RARConfig.image_seq_len={self.image_seq_len} does not match the tokenizer, which gives "
                f"{tokens} tokens for image_size={self.image_size} and "
                f"tokenizer_channel_mult={self.tokenizer_channel_mult}"
            )

    def tokenizer_config(self) -> VQGANConfig:
        return VQGANConfig(
            channel_mult=self.tokenizer_channel_mult,
            hidden_channels=self.tokenizer_hidden_channels,
            num_res_blocks=self.tokenizer_num_res_blocks,
            z_channels=self.tokenizer_z_channels,
            codebook_size=self.codebook_size,
            resolution=self.image_size,
            dropout=self.tokenizer_dropout,
            norm_groups=self.tokenizer_norm_groups,
        )

    @property
    def null_condition_id(self) -> int:
        return self.codebook_size + 1 + self.num_classes


def _official(
    hidden: int, layers: int, intermediate: int, temperature: float, guidance: float, guidance_pow: float
) -> RARConfig:
    return RARConfig(
        hidden_size=hidden,
        num_layers=layers,
        num_heads=16,
        intermediate_size=intermediate,
        temperature=temperature,
        guidance_scale=guidance,
        guidance_scale_pow=guidance_pow,
    )


# Spec table 2.2: D, layers, I (XXL's I = 6144 is not 4 D), then the README_RAR.md sampling
# settings temperature, guidance_scale, guidance_scale_pow.
CONFIGS: dict[str, RARConfig] = {
    "rar-b": _official(768, 24, 3072, 1.0, 16.0, 2.75),
    "rar-l": _official(1024, 24, 4096, 1.02, 15.5, 2.5),
    "rar-xl": _official(1280, 32, 5120, 1.02, 6.9, 1.5),
    "rar-xxl": _official(1408, 40, 6144, 1.02, 8.0, 1.2),
}


# ---- transformer -------------------------------------------------------------------------------
def build_causal_mask(size: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(size, size) float mask: ``-inf`` strictly above the diagonal, 0 elsewhere."""
    return torch.full((size, size), float("-inf"), device=device).triu_(1)


class KVCache:
    """Keys and values of one attention layer for the positions processed so far."""

    def __init__(self) -> None:
        self.k_BHtK: torch.Tensor | None = None
        self.v_BHtK: torch.Tensor | None = None

    def __len__(self) -> int:
        return 0 if self.k_BHtK is None else self.k_BHtK.shape[2]

    def extend(self, k_BHTK: torch.Tensor, v_BHTK: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append the new positions and return keys and values of all positions so far."""
        if self.k_BHtK is None:
            self.k_BHtK, self.v_BHtK = k_BHTK, v_BHTK
        else:
            self.k_BHtK = torch.cat([self.k_BHtK, k_BHTK], dim=2)
            self.v_BHtK = torch.cat([self.v_BHtK, v_BHTK], dim=2)
        return self.k_BHtK, self.v_BHtK


class Attention(nn.Module):
    """Multi-head self-attention with LayerNorm on q and k over the head dimension."""

    def __init__(self, dim: int, num_heads: int, attn_dropout: float, proj_dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=_LN_EPS)
        self.k_norm = nn.LayerNorm(self.head_dim, eps=_LN_EPS)
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)

    def forward(self, x_BTD: torch.Tensor, attn_mask: torch.Tensor | None, cache: KVCache | None) -> torch.Tensor:
        B, T, D = x_BTD.shape
        qkv = self.qkv(x_BTD).reshape(B, T, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q_BHTK, k_BHTK, v_BHTK = qkv.unbind(0)
        q_BHTK, k_BHTK = self.q_norm(q_BHTK), self.k_norm(k_BHTK)
        if cache is not None:
            k_BHTK, v_BHTK = cache.extend(k_BHTK, v_BHTK)
        o_BHTK = F.scaled_dot_product_attention(
            q_BHTK, k_BHTK, v_BHTK, attn_mask=attn_mask, dropout_p=self.attn_drop.p if self.training else 0.0
        )
        return self.proj_drop(self.proj(o_BHTK.transpose(1, 2).reshape(B, T, D)))


class Mlp(nn.Module):
    """timm's ``Mlp`` layout: ``fc2(drop1(act(fc1(x))))`` with exact (erf) GELU; the
    parameter-free ``norm`` (Identity) and ``drop2`` keep upstream's module names."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.drop1 = nn.Dropout(dropout)
        self.norm = nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(dropout)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.norm(self.drop1(self.act(self.fc1(x_BTD))))))


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Block(nn.Module):
    """DiT-style adaLN block with a per-position condition ``c``; modulation chunk order
    ``shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp``."""

    def __init__(self, config: RARConfig):
        super().__init__()
        D = config.hidden_size
        self.norm1 = nn.LayerNorm(D, eps=_LN_EPS)
        self.attn = Attention(D, config.num_heads, config.attn_dropout, config.dropout)
        self.norm2 = nn.LayerNorm(D, eps=_LN_EPS)
        self.mlp = Mlp(D, config.intermediate_size, config.dropout)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(D, 6 * D))

    def forward(
        self, x_BTD: torch.Tensor, c_BTD: torch.Tensor, attn_mask: torch.Tensor | None, cache: KVCache | None
    ) -> torch.Tensor:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.adaLN_modulation(c_BTD).chunk(6, dim=-1)
        x_BTD = x_BTD + gate_msa * self.attn(_modulate(self.norm1(x_BTD), shift_msa, scale_msa), attn_mask, cache)
        return x_BTD + gate_mlp * self.mlp(_modulate(self.norm2(x_BTD), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """``LN_noaffine(x) * (1 + scale) + shift`` with ``scale, shift`` (scale first) from ``c``."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, eps=_LN_EPS, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x_BTD: torch.Tensor, c_BTD: torch.Tensor) -> torch.Tensor:
        scale, shift = self.adaLN_modulation(c_BTD).chunk(2, dim=-1)
        return _modulate(self.norm_final(x_BTD), shift, scale)


def _init_weights(module: nn.Module) -> None:
    """Upstream's init: trunc-normal(0.02) linears and embeddings, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.trunc_normal_(module.weight, mean=0.0, std=0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm) and module.weight is not None:
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class RARTransformer(nn.Module):
    """The RAR next-token transformer (state-dict names of upstream's ``RAR``)."""

    def __init__(self, config: RARConfig):
        super().__init__()
        self.config = config
        D, N = config.hidden_size, config.image_seq_len
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.embeddings = nn.Embedding(config.codebook_size + 1 + config.num_classes + 1, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, N + config.pos_embed_extra_rows, D))
        self.target_aware_pos_embed = nn.Parameter(torch.zeros(1, N + config.pos_embed_extra_rows, D))
        self.timesteps_embeddings = nn.Parameter(torch.zeros(1, N + config.timestep_extra_rows, D))
        self.adaln_before_head = FinalLayer(D)
        self.lm_head = nn.Linear(D, config.codebook_size)
        self.register_buffer("attn_mask", build_causal_mask(N + config.pos_embed_extra_rows), persistent=False)
        self._init_parameters()

    def _init_parameters(self) -> None:
        self.apply(_init_weights)
        for table in (self.pos_embed, self.target_aware_pos_embed, self.timesteps_embeddings):
            nn.init.trunc_normal_(table, mean=0.0, std=0.02)
        modulations = [block.adaLN_modulation[-1] for block in self.blocks]
        for modulation in modulations + [self.adaln_before_head.adaLN_modulation[-1]]:  # adaLN-zero
            nn.init.zeros_(modulation.weight)
            nn.init.zeros_(modulation.bias)

    def rebuild_attn_mask(self) -> None:
        """Recreate the non-persistent causal mask on the parameters' device (after a meta build)."""
        self.attn_mask = build_causal_mask(self.attn_mask.shape[0], device=self.cls_token.device)

    # ---- conditions and orders -------------------------------------------------------------
    def preprocess_condition(
        self, labels_B: torch.Tensor, drop_p: float = 0.0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Class labels ``0 .. C-1`` -> condition ids ``V + 1 + label``; with probability
        ``drop_p`` (one uniform draw per label from ``generator``) the null id ``V + 1 + C``.

        No random number is drawn when ``drop_p == 0``. Upstream's ``preprocess_condition``
        always draws one ``rand_like(labels)`` from the global RNG, even at ``p = 0`` (also in
        ``generate``); to replay an upstream run, draw ``torch.rand(B)`` yourself first.
        """
        _check_labels(labels_B, self.config.num_classes)
        if not 0.0 <= drop_p <= 1.0:
            raise ValueError(f"drop_p must be in [0, 1], got {drop_p}")
        condition_B = labels_B.long() + self.config.codebook_size + 1
        if drop_p > 0:
            draw_B = _rand((labels_B.shape[0],), generator, labels_B.device)
            condition_B = torch.where(draw_B < drop_p, self.config.null_condition_id, condition_B)
        return condition_B

    def null_condition(self, like_B: torch.Tensor) -> torch.Tensor:
        return torch.full_like(like_B, self.config.null_condition_id)

    def sample_orders(
        self,
        batch_size: int,
        random_ratio: float,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Per-sample generation orders (B, N): with probability ``random_ratio`` a uniform random
        permutation, else raster ``arange(N)``. One uniform draw per sample, then one
        ``randperm`` per randomized sample, all from ``generator`` (upstream uses Python's
        ``random`` for the coin and the global torch RNG for the permutation)."""
        if not 0.0 <= random_ratio <= 1.0:
            raise ValueError(f"random_ratio must be in [0, 1], got {random_ratio}")
        N = self.config.image_seq_len
        draw_device = generator.device if generator is not None else torch.device("cpu")
        randomize_B = torch.rand(batch_size, generator=generator, device=draw_device) < random_ratio
        raster_N = torch.arange(N, device=draw_device)
        orders = [
            torch.randperm(N, generator=generator, device=draw_device) if randomize else raster_N
            for randomize in randomize_B.tolist()
        ]
        return torch.stack(orders).to(device if device is not None else self.cls_token.device)

    # ---- forward -----------------------------------------------------------------------------
    def _embed(
        self, input_ids_Bn: torch.Tensor, condition_B: torch.Tensor, orders_BN: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transformer inputs (B, T, D) and per-position adaLN conditions (B, T, D).

        Tokens are placed in ``orders`` (raster when None); each token keeps the ``pos_embed``
        row of its raster position, and position j (1 <= j <= N) adds the
        ``target_aware_pos_embed`` row of the token it predicts next; cls and position N + 1 add 0.
        """
        B, n = input_ids_Bn.shape
        N = self.config.image_seq_len
        emb_BnD = self.embeddings(torch.cat([condition_B.reshape(B, 1), input_ids_Bn], dim=1))
        condition_BD = emb_BnD[:, 0]
        if orders_BN is None:
            orders_BN = torch.arange(N, device=input_ids_Bn.device).expand(B, N)
        else:
            emb_BnD = torch.cat([emb_BnD[:, :1], _gather_rows(emb_BnD[:, 1:], orders_BN)], dim=1)
        T = n + _PREFIX
        x_BTD = torch.cat([self.cls_token.expand(B, -1, -1), emb_BnD], dim=1)
        raster_rows = self.pos_embed[0, _PREFIX + orders_BN]
        pos_BTD = torch.cat([self.pos_embed[:, :_PREFIX].expand(B, -1, -1), raster_rows], dim=1)
        x_BTD = x_BTD + pos_BTD[:, :T]
        zero_B1D = torch.zeros_like(x_BTD[:, :1])
        target_rows = self.target_aware_pos_embed[0, _PREFIX + orders_BN]
        x_BTD = x_BTD + torch.cat([zero_B1D, target_rows, zero_B1D], dim=1)[:, :T]
        c_BTD = condition_BD.unsqueeze(1) + self.timesteps_embeddings[:, :T]
        return x_BTD, c_BTD

    def forward(
        self,
        input_ids_Bn: torch.Tensor,
        condition_B: torch.Tensor,
        orders_BN: torch.Tensor | None = None,
        return_labels: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: token ids (B, n) and condition ids (B,) -> logits (B, n + 1, V).

        ``logits[:, j]`` predicts the j-th token in generation order (output 0 is the condition
        position); with n = N the last output predicts nothing. ``orders`` (B, N) permutes the
        tokens (needs n = N); None = raster order, where any n <= N is accepted (a prefix).
        ``return_labels`` also returns the targets ``input_ids`` in generation order (B, n).
        Label dropout: pass ``preprocess_condition(labels, drop_p, generator)`` as condition.
        """
        B, n = _check_input_ids(input_ids_Bn, self.config)
        _check_condition(condition_B, B)
        if orders_BN is not None and (tuple(orders_BN.shape) != (B, self.config.image_seq_len)):
            raise ValueError(
                f"orders must have shape ({B}, {self.config.image_seq_len}) and input_ids the full length, "
                f"got orders {tuple(orders_BN.shape)} and input_ids {tuple(input_ids_Bn.shape)}"
            )
        x_BTD, c_BTD = self._embed(input_ids_Bn, condition_B, orders_BN)
        T = x_BTD.shape[1]
        attn_mask = self.attn_mask[:T, :T]
        for block in self.blocks:
            x_BTD = block(x_BTD, c_BTD, attn_mask, None)
        logits_BnV = self.lm_head(self.adaln_before_head(x_BTD[:, 1:], c_BTD[:, 1:]))
        if not return_labels:
            return logits_BnV
        labels_Bn = input_ids_Bn if orders_BN is None else _gather_rows(input_ids_Bn, orders_BN)
        return logits_BnV, labels_Bn

    def new_kv_caches(self) -> list[KVCache]:
        """Empty caches, one per block, for :meth:`next_token_logits`."""
        return [KVCache() for _ in self.blocks]

    def next_token_logits(
        self, input_ids_Bn: torch.Tensor, condition_B: torch.Tensor, caches: list[KVCache] | None = None
    ) -> torch.Tensor:
        """Raster order: logits (B, V) for token n given tokens (B, n), n < N.

        Without ``caches`` the whole sequence is recomputed. With caches (from
        :meth:`new_kv_caches`): the first call runs all n + 2 positions causally and fills the
        caches; every later call must add exactly one token and runs only that position.
        """
        B, n = _check_input_ids(input_ids_Bn, self.config)
        _check_condition(condition_B, B)
        if n >= self.config.image_seq_len:
            raise ValueError(f"input_ids must hold fewer than {self.config.image_seq_len} tokens, got {n}")
        if caches is None:
            return self.forward(input_ids_Bn, condition_B)[:, -1]
        x_BTD, c_BTD = self._embed(input_ids_Bn, condition_B, None)
        T = x_BTD.shape[1]
        cached = len(caches[0])
        if cached == 0:
            attn_mask = self.attn_mask[:T, :T]
        elif cached == T - 1:
            x_BTD, c_BTD, attn_mask = x_BTD[:, -1:], c_BTD[:, -1:], None
        else:
            raise ValueError(f"the KV caches hold {cached} positions; the next call must bring {cached + 1}, got {T}")
        for block, cache in zip(self.blocks, caches):
            x_BTD = block(x_BTD, c_BTD, attn_mask, cache)
        return self.lm_head(self.adaln_before_head(x_BTD[:, -1], c_BTD[:, -1]))

    # ---- decoding ------------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        condition_B: torch.Tensor,
        guidance_scale: float,
        guidance_scale_pow: float,
        temperature: float,
        generator: torch.Generator | None = None,
        use_kv_cache: bool = True,
    ) -> torch.Tensor:
        """Upstream's ``RAR.generate`` on condition ids (B,) -> tokens (B, N), raster order.

        Step s mixes ``uncond + (cond - uncond) * w`` with ``w = (guidance_scale - 1) *
        (1 - cos(pi * (s / N) ** guidance_scale_pow)) / 2 + 1`` computed with float32 torch ops
        (pow 0 gives constant guidance), the null half run in the same batch; guidance_scale 0
        runs the conditional half only. Then ``softmax(logits / temperature)`` and one
        ``multinomial`` draw per step from ``generator``.
        """
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        B, N = condition_B.shape[0], self.config.image_seq_len
        use_guidance = guidance_scale != 0
        batch_condition = torch.cat([condition_B, self.null_condition(condition_B)]) if use_guidance else condition_B
        caches = self.new_kv_caches() if use_kv_cache else None
        scale_pow = torch.ones(1, device=condition_B.device) * guidance_scale_pow
        ids_Bn = torch.zeros(B, 0, dtype=torch.long, device=condition_B.device)
        for step in range(N):
            scale_step = (1 - torch.cos(((step / N) ** scale_pow) * math.pi)) * 1 / 2
            guidance_weight = (guidance_scale - 1) * scale_step + 1
            if use_guidance:
                logits_2BV = self.next_token_logits(torch.cat([ids_Bn, ids_Bn]), batch_condition, caches)
                cond_BV, uncond_BV = logits_2BV[:B], logits_2BV[B:]
                logits_BV = uncond_BV + (cond_BV - uncond_BV) * guidance_weight
            else:
                logits_BV = self.next_token_logits(ids_Bn, batch_condition, caches)
            probs_BV = F.softmax(logits_BV / temperature, dim=-1)
            ids_Bn = torch.cat([ids_Bn, _multinomial(probs_BV, generator)], dim=1)
        return ids_Bn

    @torch.no_grad()
    def greedy_from_prefix(self, tokens_BN: torch.Tensor, condition_B: torch.Tensor, n_prefix: int) -> torch.Tensor:
        """Keep ``tokens[:, :n_prefix]``, then argmax decoding on ``condition`` (no guidance,
        KV-cached) -> tokens (B, N)."""
        ids_Bn = tokens_BN[:, :n_prefix].clone()
        caches = self.new_kv_caches()
        while ids_Bn.shape[1] < self.config.image_seq_len:
            logits_BV = self.next_token_logits(ids_Bn, condition_B, caches)
            ids_Bn = torch.cat([ids_Bn, logits_BV.argmax(dim=-1, keepdim=True)], dim=1)
        return ids_Bn


def ar_loss(logits_BnV: torch.Tensor, labels_BN: torch.Tensor) -> torch.Tensor:
    """Upstream's ``ARLoss``: mean cross-entropy of ``logits[:, :-1]`` (the N predicting
    outputs of :meth:`RARTransformer.forward`) against the labels in generation order."""
    logits_BNV = logits_BnV[:, :-1]
    return F.cross_entropy(logits_BNV.reshape(-1, logits_BNV.shape[-1]), labels_BN.reshape(-1))


# ---- small helpers -----------------------------------------------------------------------------
def _gather_rows(x_BN_: torch.Tensor, orders_BN: torch.Tensor) -> torch.Tensor:
    """``out[b, i] = x[b, orders[b, i]]``."""
    batch_BN = torch.arange(x_BN_.shape[0], device=x_BN_.device).unsqueeze(1).expand_as(orders_BN)
    return x_BN_[batch_BN, orders_BN]


def _rand(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    draw_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=draw_device).to(device)


def _multinomial(probs_BV: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One draw per row (B, 1), made on the generator's device."""
    if generator is None:
        return torch.multinomial(probs_BV, 1)
    return torch.multinomial(probs_BV.to(generator.device), 1, generator=generator).to(probs_BV.device)


def _check_labels(labels_B: torch.Tensor, num_classes: int) -> None:
    if not isinstance(labels_B, torch.Tensor) or labels_B.ndim != 1 or labels_B.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor, got {_describe(labels_B)}")
    if labels_B.numel() and (labels_B.min() < 0 or labels_B.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got min {int(labels_B.min())} max {int(labels_B.max())}"
        )


def _check_input_ids(input_ids_Bn: torch.Tensor, config: RARConfig) -> tuple[int, int]:
    if not isinstance(input_ids_Bn, torch.Tensor) or input_ids_Bn.ndim != 2 or input_ids_Bn.is_floating_point():
        raise ValueError(f"token ids must be a 2-D integer tensor (B, n), got {_describe(input_ids_Bn)}")
    B, n = input_ids_Bn.shape
    if n > config.image_seq_len:
        raise ValueError(f"token ids hold {n} tokens per image, more than image_seq_len={config.image_seq_len}")
    return B, n


def _check_condition(condition_B: torch.Tensor, batch: int) -> None:
    if not isinstance(condition_B, torch.Tensor) or tuple(condition_B.shape) != (batch,):
        raise ValueError(f"condition ids must have shape ({batch},), got {_describe(condition_B)}")


def _check_tokens(tokens_BL: torch.Tensor, config: RARConfig) -> None:
    _check_input_ids(tokens_BL, config)
    if tokens_BL.shape[1] != config.image_seq_len:
        raise ValueError(f"tokens must have shape (B, {config.image_seq_len}), got {tuple(tokens_BL.shape)}")
    if tokens_BL.numel() and (tokens_BL.min() < 0 or tokens_BL.max() >= config.codebook_size):
        raise ValueError(
            f"tokens must be in [0, {config.codebook_size}), got min {int(tokens_BL.min())} max {int(tokens_BL.max())}"
        )


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


# ---- the Generator -----------------------------------------------------------------------------
class RARGenerator(Generator):
    """RAR transformer + MaskGIT-VQGAN tokenizer behind the :class:`Generator` interface.

    Labels are class indices ``0 .. C-1``; condition ids are formed internally. Every
    inference method runs in eval mode (restoring the previous mode) without gradients.
    """

    family = "rar"

    def __init__(self, config: RARConfig, device: torch.device | str = "cpu"):
        if not isinstance(config, RARConfig):
            raise TypeError(f"config must be a RARConfig, got {type(config).__name__}")
        self.config = config
        with torch.device(device):
            self.transformer = RARTransformer(config)
            self.tokenizer = MaskGITVQGAN(config.tokenizer_config())
        self.num_classes = config.num_classes
        self.image_size = config.image_size
        self.seq_len = config.image_seq_len

    # ---- structure -------------------------------------------------------------------------
    def fc1_names(self) -> list[str]:
        return [f"blocks.{i}.mlp.fc1" for i in range(self.config.num_layers)]

    def fc1_activation_names(self) -> list[str]:
        return [f"blocks.{i}.mlp.act" for i in range(self.config.num_layers)]

    def position_groups(self) -> list[PositionGroup]:
        T = self.seq_len + _PREFIX
        # "last": the last input token (T-1), whose output predicts nothing (its loss is discarded
        # and generation never computes it); "predicts-last": the position whose output predicts
        # the last image token (T-2). Both readings of the paper's "last-token activation".
        return [PositionGroup("all", 0, T), PositionGroup("last", T - 1, T), PositionGroup("predicts-last", T - 2, T - 1)]

    def valid_prefix_lengths(self) -> list[int]:
        return list(range(self.seq_len + 1))

    # ---- tokens <-> images -----------------------------------------------------------------
    def images_to_tokens(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        if images_B3HW.numel() and (images_B3HW.min() < 0 or images_B3HW.max() > 1):
            raise ValueError(
                f"images must be in [0, 1] (RAR's tokenizer), got min {float(images_B3HW.min()):.3f} "
                f"max {float(images_B3HW.max()):.3f}"
            )
        with eval_mode(self.tokenizer), torch.no_grad():
            return self.tokenizer.encode(images_B3HW.float())

    def tokens_to_images(self, tokens_BL: torch.Tensor) -> torch.Tensor:
        _check_tokens(tokens_BL, self.config)
        with eval_mode(self.tokenizer), torch.no_grad():
            return self.tokenizer.decode(tokens_BL).float()

    # ---- the transformer -------------------------------------------------------------------
    def teacher_forced_logits(self, tokens_BL: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
        _check_tokens(tokens_BL, self.config)
        self._check_batch(labels_B, tokens_BL.shape[0])
        with eval_mode(self.transformer), torch.no_grad():
            condition_B = self.transformer.preprocess_condition(labels_B)
            return self.transformer.forward(tokens_BL, condition_B)[:, :-1].float()

    def sample(
        self,
        labels_B: torch.Tensor,
        generator: torch.Generator | None = None,
        guidance_scale: float | None = None,
        guidance_scale_pow: float | None = None,
        temperature: float | None = None,
    ) -> torch.Tensor:
        """KV-cached sampling (see :meth:`RARTransformer.generate`); unset keywords take the
        config's defaults (the official per-model settings for the official configs)."""
        with eval_mode(self.transformer):
            condition_B = self.transformer.preprocess_condition(labels_B)
            return self.transformer.generate(
                condition_B,
                guidance_scale=self.config.guidance_scale if guidance_scale is None else guidance_scale,
                guidance_scale_pow=self.config.guidance_scale_pow if guidance_scale_pow is None else guidance_scale_pow,
                temperature=self.config.temperature if temperature is None else temperature,
                generator=generator,
            )

    def greedy_from_prefix(self, tokens_BL: torch.Tensor, labels_B: torch.Tensor, n_prefix: int) -> torch.Tensor:
        valid = self.valid_prefix_lengths()
        if isinstance(n_prefix, bool) or not isinstance(n_prefix, int) or n_prefix not in valid:
            raise ValueError(f"n_prefix must be one of {valid[0]}..{valid[-1]} (every integer), got {n_prefix!r}")
        _check_tokens(tokens_BL, self.config)
        self._check_batch(labels_B, tokens_BL.shape[0])
        with eval_mode(self.transformer):
            condition_B = self.transformer.preprocess_condition(labels_B)
            return self.transformer.greedy_from_prefix(tokens_BL, condition_B, n_prefix)

    def _check_batch(self, labels_B: torch.Tensor, batch: int) -> None:
        _check_labels(labels_B, self.num_classes)
        if labels_B.shape[0] != batch:
            raise ValueError(f"labels must have one entry per image ({batch}), got {labels_B.shape[0]}")

    # ---- loading ---------------------------------------------------------------------------
    def after_load(self) -> None:
        self.transformer.rebuild_attn_mask()

