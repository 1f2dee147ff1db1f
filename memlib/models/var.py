"""VAR: next-scale prediction transformer (own code, official ``var_d*.pth`` layout), its
configs and the :class:`VARGenerator` that joins it with the multi-scale VQVAE.

Tensor legend: B batch (2B with classifier-free guidance: conditional rows first, then null
class rows), L tokens of all scales, l tokens of the scales in the current chunk, C width,
D conditioning width (= C), H heads, c head dim, V vocabulary, Cvae latent channels,
U fc1 units, SN number of scales, pn patch number of a scale.

Token order: scales coarse to fine, row-major inside a scale. Transformer position l predicts
token l (no shift): the class/start position predicts scale 0, the positions of scale k >= 1
hold the reconstruction of scales 0..k-1 area-downsampled to scale k's grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .generator import Generator, PositionGroup
from .vqvae import VQVAE, MultiScaleQuantizer

PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)


@dataclass(frozen=True)
class VARConfig:
    """Every size of a VAR generator (transformer and VQVAE tokenizer)."""

    family: str = "var"
    # transformer
    depth: int = 16
    width: int = 1024  # C = D = embed_dim
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    shared_aln: bool = False
    attn_l2_norm: bool = True
    norm_eps: float = 1e-6
    patch_nums: tuple[int, ...] = PATCH_NUMS_256
    # VQVAE tokenizer
    vocab_size: int = 4096
    z_channels: int = 32  # Cvae
    ch: int = 160
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    using_sa: bool = True
    using_mid_sa: bool = True
    resolution: int = 256
    dropout: float = 0.0
    beta: float = 0.25
    quant_resi: float = 0.5
    share_quant_resi: int = 4

    @property
    def seq_len(self) -> int:
        return sum(pn * pn for pn in self.patch_nums)


def _official(depth: int, **overrides) -> VARConfig:
    """The official rule: width = 64 * depth, heads = depth (head dim 64)."""
    return VARConfig(depth=depth, width=64 * depth, num_heads=depth, **overrides)


CONFIGS: dict[str, VARConfig] = {
    "var-d16": _official(16),
    "var-d20": _official(20),
    "var-d24": _official(24),
    "var-d30": _official(30),
    "var-d36": _official(36, shared_aln=True, patch_nums=PATCH_NUMS_512, resolution=512),
}


def scale_boundaries(patch_nums: Sequence[int]) -> list[int]:
    """``[0, pn_0^2, pn_0^2 + pn_1^2, ..., L]``: token index where each scale begins, then L."""
    bounds = [0]
    for pn in patch_nums:
        bounds.append(bounds[-1] + pn * pn)
    return bounds


def level_index_1L(patch_nums: Sequence[int]) -> torch.Tensor:
    """Scale index of every token, int64 (1, L)."""
    return torch.cat([torch.full((pn * pn,), si, dtype=torch.int64) for si, pn in enumerate(patch_nums)]).view(1, -1)


def block_causal_bias(patch_nums: Sequence[int]) -> torch.Tensor:
    """(1, 1, L, L) float32: 0 where the query's scale >= the key's scale, else -inf."""
    lvl_L = level_index_1L(patch_nums)[0]
    return torch.where(lvl_L[:, None] >= lvl_L[None, :], 0.0, -torch.inf).reshape(1, 1, lvl_L.numel(), -1)


# ---- blocks (official models/basic_var.py layout) ---------------------------------------------
class SelfAttention(nn.Module):
    """Multi-head attention with L2-normalised q/k and a learned per-head temperature
    ``exp(min(scale_mul_1H11, ln 100))`` (when ``attn_l2_norm``); k has no bias. Optional KV cache."""

    def __init__(self, embed_dim: int, num_heads: int, attn_l2_norm: bool):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.attn_l2_norm = attn_l2_norm
        if attn_l2_norm:
            self.scale = 1.0
            self.scale_mul_1H11 = nn.Parameter(torch.full((1, num_heads, 1, 1), 4.0).log())
            self.max_scale_mul = torch.tensor(100.0, device="cpu").log().item()  # float32 ln 100, as official
        else:
            self.scale = 0.25 / math.sqrt(self.head_dim)
        self.mat_qkv = nn.Linear(embed_dim, 3 * embed_dim, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(embed_dim))
        self.v_bias = nn.Parameter(torch.zeros(embed_dim))
        self.register_buffer("zero_k_bias", torch.zeros(embed_dim))
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.caching = False
        self.cached_k: torch.Tensor | None = None
        self.cached_v: torch.Tensor | None = None

    def kv_caching(self, enable: bool) -> None:
        """Switch the KV cache on or off; both empty it."""
        self.caching, self.cached_k, self.cached_v = enable, None, None

    def forward(self, x_BlC: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        B, l, C = x_BlC.shape
        bias = torch.cat((self.q_bias, self.zero_k_bias, self.v_bias))
        qkv = F.linear(x_BlC, self.mat_qkv.weight, bias).view(B, l, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, l, c)
        if self.attn_l2_norm:
            scale_mul = self.scale_mul_1H11.clamp_max(self.max_scale_mul).exp()
            q = F.normalize(q, dim=-1).mul(scale_mul)
            k = F.normalize(k, dim=-1)
        if self.caching:
            if self.cached_k is not None:
                k = torch.cat((self.cached_k, k), dim=2)
                v = torch.cat((self.cached_v, v), dim=2)
            self.cached_k, self.cached_v = k, v
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_bias, scale=self.scale)
        return self.proj(out.transpose(1, 2).reshape(B, l, C))


class FFN(nn.Module):
    """``fc2(act(fc1(x)))`` with ``act = GELU(approximate='tanh')``; fc1 outputs are the studied units."""

    def __init__(self, in_features: int, hidden_features: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden_features, in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SharedAdaLin(nn.Linear):
    """One AdaLN projection shared by all blocks (d36-s): (B, D) -> (B, 1, 6, C)."""

    def forward(self, cond_BD: torch.Tensor) -> torch.Tensor:
        return super().forward(cond_BD).view(-1, 1, 6, self.weight.shape[0] // 6)


class AdaLNSelfAttn(nn.Module):
    """Transformer block modulated by the class embedding::

        gamma1, gamma2, scale1, scale2, shift1, shift2 = ada_lin(cond)   (order matters)
        x = x + attn(LN(x) * (1 + scale1) + shift1) * gamma1
        x = x + ffn(LN(x) * (1 + scale2) + shift2) * gamma2
    """

    def __init__(
        self, embed_dim: int, num_heads: int, mlp_ratio: float, norm_eps: float, shared_aln: bool, attn_l2_norm: bool
    ):
        super().__init__()
        self.C = embed_dim
        self.shared_aln = shared_aln
        if shared_aln:
            self.ada_gss = nn.Parameter(torch.randn(1, 1, 6, embed_dim) / embed_dim**0.5)
        self.attn = SelfAttention(embed_dim, num_heads, attn_l2_norm)
        self.ffn = FFN(embed_dim, round(embed_dim * mlp_ratio))
        self.ln_wo_grad = nn.LayerNorm(embed_dim, eps=norm_eps, elementwise_affine=False)
        if not shared_aln:
            self.ada_lin = nn.Sequential(nn.SiLU(inplace=False), nn.Linear(embed_dim, 6 * embed_dim))

    def forward(
        self, x_BlC: torch.Tensor, cond_BD_or_gss: torch.Tensor, attn_bias: torch.Tensor | None
    ) -> torch.Tensor:
        if self.shared_aln:
            modulation = (self.ada_gss + cond_BD_or_gss).unbind(2)
        else:
            modulation = self.ada_lin(cond_BD_or_gss).view(-1, 1, 6, self.C).unbind(2)
        gamma1, gamma2, scale1, scale2, shift1, shift2 = modulation  # each (B, 1, C)
        x_BlC = x_BlC + self.attn(self.ln_wo_grad(x_BlC).mul(scale1.add(1)).add_(shift1), attn_bias).mul_(gamma1)
        x_BlC = x_BlC + self.ffn(self.ln_wo_grad(x_BlC).mul(scale2.add(1)).add_(shift2)).mul(gamma2)
        return x_BlC


class AdaLNBeforeHead(nn.Module):
    """``LN(x) * (1 + scale) + shift`` with ``scale, shift = ada_lin(cond)``."""

    def __init__(self, C: int, D: int, norm_eps: float):
        super().__init__()
        self.C = C
        self.ln_wo_grad = nn.LayerNorm(C, eps=norm_eps, elementwise_affine=False)
        self.ada_lin = nn.Sequential(nn.SiLU(inplace=False), nn.Linear(D, 2 * C))

    def forward(self, x_BlC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        scale, shift = self.ada_lin(cond_BD).view(-1, 1, 2, self.C).unbind(2)
        return self.ln_wo_grad(x_BlC).mul(scale.add(1)).add_(shift)


def filter_top_k_top_p_(logits_BlV: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """VAR's ``sample_with_top_k_top_p_`` filter, in place: logits outside the top k, then outside
    the smallest set of largest logits with probability mass >= top_p, become -inf (0 disables)."""
    V = logits_BlV.shape[-1]
    if top_k > 0:
        kth_BL1 = logits_BlV.topk(min(top_k, V), largest=True, sorted=False, dim=-1)[0].amin(dim=-1, keepdim=True)
        logits_BlV.masked_fill_(logits_BlV < kth_BL1, -torch.inf)
    if top_p > 0:
        sorted_logits, sorted_idx = logits_BlV.sort(dim=-1, descending=False)
        sorted_remove = sorted_logits.softmax(dim=-1).cumsum_(dim=-1) <= (1 - top_p)
        sorted_remove[..., -1:] = False
        logits_BlV.masked_fill_(sorted_remove.scatter(sorted_idx.ndim - 1, sorted_idx, sorted_remove), -torch.inf)
    return logits_BlV


def sample_top_k_top_p(
    logits_BlV: torch.Tensor, top_k: int, top_p: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Filter (on a copy) and draw one index per row with a single ``torch.multinomial`` -> (B, l)."""
    B, l, V = logits_BlV.shape
    probs_NV = filter_top_k_top_p_(logits_BlV.clone(), top_k, top_p).softmax(dim=-1).view(-1, V)
    return torch.multinomial(probs_NV, num_samples=1, replacement=True, generator=generator).view(B, l)


# ---- the transformer (official models/var.py layout) ------------------------------------------
class VAR(nn.Module):
    """The next-scale transformer. Not holding the VQVAE: methods that need the quantizer take it."""

    def __init__(self, config: VARConfig):
        super().__init__()
        _validate_transformer_sizes(config)
        C = config.width
        self.config = config
        self.C = self.D = C
        self.num_classes = config.num_classes
        self.z_channels, self.vocab_size = config.z_channels, config.vocab_size
        self.patch_nums = tuple(config.patch_nums)
        self.bounds = scale_boundaries(self.patch_nums)
        self.L, self.first_l = self.bounds[-1], self.bounds[1]
        init_std = math.sqrt(1 / C / 3)

        self.word_embed = nn.Linear(self.z_channels, C)
        self.class_emb = nn.Embedding(self.num_classes + 1, C)  # row num_classes = null class
        self.pos_start = nn.Parameter(torch.empty(1, self.first_l, C))
        self.pos_1LC = nn.Parameter(torch.empty(1, self.L, C))
        self.lvl_embed = nn.Embedding(len(self.patch_nums), C)
        if config.shared_aln:
            self.shared_ada_lin = nn.Sequential(nn.SiLU(inplace=False), SharedAdaLin(C, 6 * C))
        else:
            self.shared_ada_lin = nn.Identity()
        self.blocks = nn.ModuleList(
            [
                AdaLNSelfAttn(
                    C, config.num_heads, config.mlp_ratio, config.norm_eps, config.shared_aln, config.attn_l2_norm
                )
                for _ in range(config.depth)
            ]
        )
        self.register_buffer("lvl_1L", level_index_1L(self.patch_nums))
        self.register_buffer("attn_bias_for_masking", block_causal_bias(self.patch_nums))
        self.head_nm = AdaLNBeforeHead(C, C, config.norm_eps)
        self.head = nn.Linear(C, self.vocab_size)
        self.init_weights(init_std)

    @torch.no_grad()
    def init_weights(
        self, init_std: float, init_adaln: float = 0.5, init_adaln_gamma: float = 1e-5, init_head: float = 0.02
    ) -> None:
        """The official initialisation (``build_vae_var``: ``init_std = sqrt(1 / (3C))``)."""
        nn.init.trunc_normal_(self.pos_start, mean=0, std=init_std)
        nn.init.trunc_normal_(self.pos_1LC, mean=0, std=init_std)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=init_std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                nn.init.trunc_normal_(module.weight, std=init_std)
        self.head.weight.mul_(init_head)
        self.head.bias.zero_()
        self.head_nm.ada_lin[-1].weight.mul_(init_adaln)
        self.head_nm.ada_lin[-1].bias.zero_()
        for block in self.blocks:
            block.attn.proj.weight.div_(math.sqrt(2 * len(self.blocks)))
            block.ffn.fc2.weight.div_(math.sqrt(2 * len(self.blocks)))
            if block.shared_aln:
                block.ada_gss[:, :, 2:].mul_(init_adaln)
                block.ada_gss[:, :, :2].mul_(init_adaln_gamma)
            else:
                block.ada_lin[-1].weight[2 * self.C :].mul_(init_adaln)
                block.ada_lin[-1].weight[: 2 * self.C].mul_(init_adaln_gamma)
                block.ada_lin[-1].bias.zero_()

    def rebuild_structure_buffers(self) -> None:
        """Recompute ``lvl_1L`` and ``attn_bias_for_masking`` (pure functions of ``patch_nums``)."""
        device = self.pos_1LC.device
        self.lvl_1L = level_index_1L(self.patch_nums).to(device)
        self.attn_bias_for_masking = block_causal_bias(self.patch_nums).to(device)

    # ---- shared pieces ---------------------------------------------------------------------
    def _sos(self, cond_BD: torch.Tensor) -> torch.Tensor:
        """Class embedding + ``pos_start`` for the first scale's positions (B, first_l, C)."""
        B = cond_BD.shape[0]
        return cond_BD.unsqueeze(1).expand(B, self.first_l, -1) + self.pos_start.expand(B, self.first_l, -1)

    def _run_blocks(self, x_BlC: torch.Tensor, cond_BD: torch.Tensor, attn_bias: torch.Tensor | None) -> torch.Tensor:
        cond_BD_or_gss = self.shared_ada_lin(cond_BD)
        for block in self.blocks:
            x_BlC = block(x_BlC, cond_BD_or_gss, attn_bias)
        return x_BlC

    def get_logits(self, h_BlC: torch.Tensor, cond_BD: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_nm(h_BlC.float(), cond_BD).float()).float()

    # ---- teacher forcing ---------------------------------------------------------------------
    def forward(
        self,
        label_B: torch.Tensor,
        x_BLCv_wo_first_l: torch.Tensor,
        label_dropout_p: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, L, V). ``label_B`` holds 0..num_classes (num_classes = null);
        with ``label_dropout_p > 0`` each label is replaced by the null class with that probability
        (drawn from ``generator``; training uses 0.1, analysis keeps the default 0)."""
        B = x_BLCv_wo_first_l.shape[0]
        if label_dropout_p > 0:
            drop_B = torch.rand(B, generator=generator, device=label_B.device) < label_dropout_p
            label_B = torch.where(drop_B, self.num_classes, label_B)
        cond_BD = self.class_emb(label_B)
        x_BLC = torch.cat((self._sos(cond_BD), self.word_embed(x_BLCv_wo_first_l.float())), dim=1)
        x_BLC = x_BLC + (self.lvl_embed(self.lvl_1L.expand(B, -1)) + self.pos_1LC)
        x_BLC = self._run_blocks(x_BLC, cond_BD, self.attn_bias_for_masking)
        return self.get_logits(x_BLC, cond_BD)

    # ---- scale-by-scale decoding ----------------------------------------------------------------
    @torch.no_grad()
    def decode_scales(
        self,
        quantizer: MultiScaleQuantizer,
        label_Bx: torch.Tensor,
        choose: Callable[[int, torch.Tensor], torch.Tensor],
        prefix_idx_Bl: Sequence[torch.Tensor] = (),
        num_images: int | None = None,
        use_kv_cache: bool = True,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Generate scales after the ground-truth prefix, one scale per step.

        ``label_Bx`` (Bx,) are the labels of the transformer rows; Bx is a multiple of the number of
        images B (``num_images``, needed only without a prefix) and every group of B rows gets the same
        scale inputs (guidance: rows [:B] conditional, [B:] null). ``choose(si, logits_BxlV)`` returns the
        indices (B, pn^2) of scale ``si``. The first chunk holds the inputs of the prefix scales and of
        the first generated scale, under the block-causal mask; later chunks are one scale each, seeing
        all earlier positions through the KV cache (or, with ``use_kv_cache=False``, by recomputing the
        whole sequence under the mask each step). Returns (indices of all SN scales, final f_hat).
        """
        k = len(prefix_idx_Bl)
        B = prefix_idx_Bl[0].shape[0] if k else num_images
        if B is None or label_Bx.shape[0] % B != 0:
            raise ValueError(f"{label_Bx.shape[0]} label rows do not split into groups of B={B} images")
        repeats = label_Bx.shape[0] // B
        SN, hw = len(self.patch_nums), self.patch_nums[-1]
        cond_BD = self.class_emb(label_Bx)
        lvl_pos_1LC = self.lvl_embed(self.lvl_1L) + self.pos_1LC
        f_hat = torch.zeros(B, self.z_channels, hw, hw, device=cond_BD.device)
        idx_Bl = [idx.to(cond_BD.device) for idx in prefix_idx_Bl]
        if k == SN:
            return idx_Bl, quantizer.idx_Bl_to_fhat(idx_Bl)

        def scale_input(si: int, next_BCpp: torch.Tensor) -> torch.Tensor:
            """Scale si's transformer input from f_hat area-downsampled to its grid (B, Cvae, pn, pn)."""
            lo, hi = self.bounds[si], self.bounds[si + 1]
            x = self.word_embed(next_BCpp.view(B, self.z_channels, -1).transpose(1, 2)) + lvl_pos_1LC[:, lo:hi]
            return x.repeat(repeats, 1, 1)

        chunks = [self._sos(cond_BD) + lvl_pos_1LC[:, : self.first_l]]
        for si in range(k):
            h_BCpp = quantizer.idx_to_embed(idx_Bl[si], self.patch_nums[si])
            f_hat, next_BCpp = quantizer.next_autoregressive_input(si, f_hat, h_BCpp)
            chunks.append(scale_input(si + 1, next_BCpp))
        x_BlC = torch.cat(chunks, dim=1)
        seen_BLC = x_BlC
        attns = [block.attn for block in self.blocks]
        try:
            for attn in attns:
                attn.kv_caching(use_kv_cache)
            for si in range(k, SN):
                pn2 = self.patch_nums[si] ** 2
                if use_kv_cache:  # only the first chunk spans several scales and needs the mask
                    span = x_BlC.shape[1]
                    bias = self.attn_bias_for_masking[:, :, :span, :span] if si == k else None
                    h_BlC = self._run_blocks(x_BlC, cond_BD, bias)[:, -pn2:]
                else:
                    end = self.bounds[si + 1]
                    h_BlC = self._run_blocks(seen_BLC, cond_BD, self.attn_bias_for_masking[:, :, :end, :end])[:, -pn2:]
                idx = choose(si, self.get_logits(h_BlC, cond_BD))
                idx_Bl.append(idx)
                h_BCpp = quantizer.idx_to_embed(idx, self.patch_nums[si])
                f_hat, next_BCpp = quantizer.next_autoregressive_input(si, f_hat, h_BCpp)
                if si != SN - 1:
                    x_BlC = scale_input(si + 1, next_BCpp)
                    if not use_kv_cache:
                        seen_BLC = torch.cat((seen_BLC, x_BlC), dim=1)
        finally:
            for attn in attns:
                attn.kv_caching(False)
        return idx_Bl, f_hat

    def sample(
        self,
        quantizer: MultiScaleQuantizer,
        label_B: torch.Tensor,
        generator: torch.Generator | None = None,
        cfg: float = 1.5,
        top_k: int = 0,
        top_p: float = 0.0,
        use_kv_cache: bool = True,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``autoregressive_infer_cfg`` (more_smooth=False): at scale si the guidance is
        ``t = cfg * si / (SN - 1)``, ``logits = (1 + t) * cond - t * uncond``, then top-k / top-p and one
        multinomial draw per scale from ``generator``. Returns (indices per scale, final f_hat)."""
        B = label_B.shape[0]
        label_2B = torch.cat((label_B, torch.full_like(label_B, self.num_classes)))
        SN = len(self.patch_nums)

        def choose(si: int, logits_2BlV: torch.Tensor) -> torch.Tensor:
            t = cfg * (si / (SN - 1))
            mixed_BlV = (1 + t) * logits_2BlV[:B] - t * logits_2BlV[B:]
            return sample_top_k_top_p(mixed_BlV, top_k, top_p, generator)

        return self.decode_scales(quantizer, label_2B, choose, num_images=B, use_kv_cache=use_kv_cache)

    def greedy_from_prefix(
        self,
        quantizer: MultiScaleQuantizer,
        label_B: torch.Tensor,
        prefix_idx_Bl: Sequence[torch.Tensor],
        use_kv_cache: bool = True,
    ) -> list[torch.Tensor]:
        """Keep the given ground-truth scales, then argmax per scale (conditional only, no guidance)."""

        def choose(si: int, logits_BlV: torch.Tensor) -> torch.Tensor:
            return logits_BlV.argmax(dim=-1)

        num_images = label_B.shape[0]
        return self.decode_scales(quantizer, label_B, choose, prefix_idx_Bl, num_images, use_kv_cache)[0]


def _validate_transformer_sizes(config: VARConfig) -> None:
    for name in ("depth", "width", "num_heads", "num_classes", "vocab_size", "z_channels"):
        value = getattr(config, name)
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}; expected a positive integer")
    if config.width % config.num_heads != 0:
        raise ValueError(f"width={config.width} is not divisible by num_heads={config.num_heads}")
    if len(config.patch_nums) < 2:
        raise ValueError(f"patch_nums={tuple(config.patch_nums)!r}; expected at least 2 scales")


# ---- the Generator ------------------------------------------------------------------------------
class VARGenerator(Generator):
    """VAR transformer + multi-scale VQVAE behind the family-independent :class:`Generator` API."""

    family = "var"

    def __init__(self, config: VARConfig, device: str | torch.device = "cpu"):
        if config.family != "var":
            raise ValueError(f"config.family={config.family!r}; VARGenerator needs a 'var' config")
        self.config = config
        with torch.device(device):
            self.transformer = VAR(config)
            self.tokenizer = VQVAE(
                vocab_size=config.vocab_size,
                z_channels=config.z_channels,
                ch=config.ch,
                ch_mult=config.ch_mult,
                num_res_blocks=config.num_res_blocks,
                using_sa=config.using_sa,
                using_mid_sa=config.using_mid_sa,
                dropout=config.dropout,
                beta=config.beta,
                quant_resi=config.quant_resi,
                share_quant_resi=config.share_quant_resi,
                patch_nums=config.patch_nums,
                resolution=config.resolution,
            )
        self.num_classes = config.num_classes
        self.image_size = config.resolution
        self.seq_len = config.seq_len
        self._bounds = scale_boundaries(config.patch_nums)

    # ---- structure -----------------------------------------------------------------------------
    def fc1_names(self) -> list[str]:
        return [f"blocks.{i}.ffn.fc1" for i in range(self.config.depth)]

    def fc1_activation_names(self) -> list[str]:
        return [f"blocks.{i}.ffn.act" for i in range(self.config.depth)]

    def position_groups(self) -> list[PositionGroup]:
        spans = zip(self._bounds[:-1], self._bounds[1:])
        return [PositionGroup(f"scale{k}", lo, hi) for k, (lo, hi) in enumerate(spans)]

    def valid_prefix_lengths(self) -> list[int]:
        return list(self._bounds)

    # ---- tokens <-> images -----------------------------------------------------------------------
    def _split_tokens(self, tokens_BL: torch.Tensor) -> list[torch.Tensor]:
        if tokens_BL.ndim != 2 or tokens_BL.shape[1] != self.seq_len:
            raise ValueError(f"tokens of shape {tuple(tokens_BL.shape)}; expected (B, {self.seq_len})")
        if tokens_BL.dtype.is_floating_point or tokens_BL.dtype == torch.bool:
            raise TypeError(f"tokens of dtype {tokens_BL.dtype}; expected an integer tensor")
        tokens_BL = tokens_BL.long()
        if tokens_BL.numel() and (int(tokens_BL.min()) < 0 or int(tokens_BL.max()) >= self.config.vocab_size):
            raise ValueError(
                f"token ids must lie in [0, {self.config.vocab_size}); "
                f"got [{int(tokens_BL.min())}, {int(tokens_BL.max())}]"
            )
        return [tokens_BL[:, lo:hi] for lo, hi in zip(self._bounds[:-1], self._bounds[1:])]

    def _check_labels(self, labels_B: torch.Tensor, batch: int | None = None) -> torch.Tensor:
        if labels_B.ndim != 1 or (batch is not None and labels_B.shape[0] != batch):
            expected = batch if batch is not None else "B"
            raise ValueError(f"labels of shape {tuple(labels_B.shape)}; expected ({expected},)")
        labels_B = labels_B.long()
        if labels_B.numel() and (int(labels_B.min()) < 0 or int(labels_B.max()) >= self.num_classes):
            raise ValueError(
                f"class labels must lie in [0, {self.num_classes}); got [{int(labels_B.min())}, {int(labels_B.max())}]"
            )
        return labels_B.to(self.device)

    @torch.no_grad()
    def images_to_tokens(self, images_B3HW: torch.Tensor) -> torch.Tensor:
        images = images_B3HW.to(device=self.device, dtype=torch.float32)
        return torch.cat(self.tokenizer.img_to_idx_Bl(images * 2 - 1), dim=1)

    @torch.no_grad()
    def tokens_to_images(self, tokens_BL: torch.Tensor) -> torch.Tensor:
        idx_Bl = [idx.to(self.device) for idx in self._split_tokens(tokens_BL)]
        return self.tokenizer.idx_Bl_to_img(idx_Bl).add(1).mul(0.5)

    # ---- the transformer -------------------------------------------------------------------------
    def teacher_forced_logits(self, tokens_BL: torch.Tensor, labels_B: torch.Tensor) -> torch.Tensor:
        idx_Bl = [idx.to(self.device) for idx in self._split_tokens(tokens_BL)]
        labels_B = self._check_labels(labels_B, tokens_BL.shape[0])
        with torch.no_grad():
            x_BLCv_wo_first_l = self.tokenizer.idx_Bl_to_var_input(idx_Bl)
        return self.transformer(labels_B, x_BLCv_wo_first_l, label_dropout_p=0.0)

    def sample(
        self,
        labels_B: torch.Tensor,
        generator: torch.Generator | None = None,
        cfg: float = 1.5,
        top_k: int = 0,
        top_p: float = 0.0,
    ) -> torch.Tensor:
        labels_B = self._check_labels(labels_B)
        quantizer = self.tokenizer.quantize
        idx_Bl, _ = self.transformer.sample(quantizer, labels_B, generator, cfg=cfg, top_k=top_k, top_p=top_p)
        return torch.cat(idx_Bl, dim=1)

    def greedy_from_prefix(self, tokens_BL: torch.Tensor, labels_B: torch.Tensor, n_prefix: int) -> torch.Tensor:
        valid = self.valid_prefix_lengths()
        if n_prefix not in valid:
            raise ValueError(f"n_prefix={n_prefix!r} is not a scale boundary; valid values: {valid}")
        idx_Bl = [idx.to(self.device) for idx in self._split_tokens(tokens_BL)]
        labels_B = self._check_labels(labels_B, tokens_BL.shape[0])
        prefix_idx_Bl = idx_Bl[: valid.index(n_prefix)]
        return torch.cat(self.transformer.greedy_from_prefix(self.tokenizer.quantize, labels_B, prefix_idx_Bl), dim=1)

    # ---- loading ---------------------------------------------------------------------------------
    def adapt_tokenizer_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The official ``VQVAE.load_state_dict`` quirk: a ``quantize.ema_vocab_hit_SV`` whose first
        dimension (number of scales) differs from the model's is replaced by a fresh (zero) buffer."""
        key = "quantize.ema_vocab_hit_SV"
        own = self.tokenizer.quantize.ema_vocab_hit_SV
        if key in state_dict and state_dict[key].shape[0] != own.shape[0]:
            state_dict = {**state_dict, key: torch.zeros(own.shape, dtype=own.dtype)}
        return state_dict

    def after_load(self) -> None:
        self.transformer.rebuild_structure_buffers()
