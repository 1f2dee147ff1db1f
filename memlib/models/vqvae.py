"""VAR's multi-scale residual VQVAE (own code, official ``vae_ch160v4096z32.pth`` layout).

An image in [-1, 1] is encoded to a latent ``f`` (B, Cvae, h, w); the quantizer explains ``f``
as a sum of residual scales: at scale ``k`` the remaining residual is area-downsampled to
``pn_k x pn_k``, snapped to the nearest codebook rows, bicubically upsampled back to ``h x w``,
passed through one of a few shared "phi" convolutions, added to the reconstruction ``f_hat`` and
subtracted from the residual. The per-scale indices are VAR's tokens.

Tensor legend: B batch, C channels, H W image size, h w latent size (= last patch number),
V vocabulary, Cvae latent channels, SN number of scales, pn patch number of one scale,
l = pn * pn tokens of one scale, L tokens of all scales.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def _group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


# ---- convolutional building blocks (official models/basic_vae.py layout) ----------------------
class ResnetBlock(nn.Module):
    """``shortcut(x) + conv2(dropout(silu(norm2(conv1(silu(norm1(x)))))))``; the 1x1
    ``nin_shortcut`` exists only when the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        self.norm1 = _group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = _group_norm(out_channels)
        self.dropout = nn.Dropout(dropout) if dropout > 1e-6 else nn.Identity()
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=1, padding=0)
        else:
            self.nin_shortcut = nn.Identity()

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x_BCHW)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.nin_shortcut(x_BCHW) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with one fused 1x1 ``qkv`` conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.norm = _group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, kernel_size=1, stride=1, padding=0)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x_BCHW.shape
        q, k, v = self.qkv(self.norm(x_BCHW)).reshape(B, 3, C, H * W).unbind(1)  # each (B, C, HW)
        weights_BQK = torch.bmm(q.transpose(1, 2), k).mul_(C**-0.5).softmax(dim=2)
        h_BCQ = torch.bmm(v, weights_BQK.transpose(1, 2))
        return x_BCHW + self.proj_out(h_BCQ.view(B, C, H, W))


def _attn_or_identity(channels: int, enabled: bool) -> nn.Module:
    return AttnBlock(channels) if enabled else nn.Identity()


class Downsample2x(nn.Module):
    """Zero-pad right and bottom by one, then a stride-2 3x3 conv without padding."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x_BCHW, pad=(0, 1, 0, 1), mode="constant", value=0))


class Upsample2x(nn.Module):
    """Nearest-neighbour 2x upsampling, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x_BCHW, scale_factor=2, mode="nearest"))


class Encoder(nn.Module):
    """Image (B, in_channels, H, W) -> latent (B, z_channels, H / 2^(levels-1), ...).
    Attention follows every block of the last level only (when ``using_sa``)."""

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        dropout: float,
        in_channels: int,
        z_channels: int,
        using_sa: bool,
        using_mid_sa: bool,
    ):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, kernel_size=3, stride=1, padding=1)
        in_ch_mult = (1, *ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i_level in range(self.num_resolutions):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_in, block_out = ch * in_ch_mult[i_level], ch * ch_mult[i_level]
            for _ in range(num_res_blocks):
                block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if i_level == self.num_resolutions - 1 and using_sa:
                    attn.append(AttnBlock(block_in))
            down = nn.Module()
            down.block, down.attn = block, attn
            if i_level != self.num_resolutions - 1:
                down.downsample = Downsample2x(block_in)
            self.down.append(down)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = _attn_or_identity(block_in, using_mid_sa)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x_BCHW)
        for i_level, down in enumerate(self.down):
            for i_block in range(self.num_res_blocks):
                h = down.block[i_block](h)
                if len(down.attn) > 0:
                    h = down.attn[i_block](h)
            if i_level != self.num_resolutions - 1:
                h = down.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent (B, z_channels, h, w) -> image (B, in_channels, H, W), no clamp. Each level has
    ``num_res_blocks + 1`` blocks; attention after every block of the deepest level."""

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        dropout: float,
        in_channels: int,
        z_channels: int,
        using_sa: bool,
        using_mid_sa: bool,
    ):
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in, dropout)
        self.mid.attn_1 = _attn_or_identity(block_in, using_mid_sa)
        self.mid.block_2 = ResnetBlock(block_in, block_in, dropout)
        up_levels = []
        for i_level in reversed(range(self.num_resolutions)):
            block, attn = nn.ModuleList(), nn.ModuleList()
            block_out = ch * ch_mult[i_level]
            for _ in range(num_res_blocks + 1):
                block.append(ResnetBlock(block_in, block_out, dropout))
                block_in = block_out
                if i_level == self.num_resolutions - 1 and using_sa:
                    attn.append(AttnBlock(block_in))
            up = nn.Module()
            up.block, up.attn = block, attn
            if i_level != 0:
                up.upsample = Upsample2x(block_in)
            up_levels.insert(0, up)
        self.up = nn.ModuleList(up_levels)
        self.norm_out = _group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, in_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, z_BChw: torch.Tensor) -> torch.Tensor:
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(self.conv_in(z_BChw))))
        for i_level in reversed(range(self.num_resolutions)):
            up = self.up[i_level]
            for i_block in range(self.num_res_blocks + 1):
                h = up.block[i_block](h)
                if len(up.attn) > 0:
                    h = up.attn[i_block](h)
            if i_level != 0:
                h = up.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


# ---- the multi-scale residual quantizer (official models/quant.py layout) ---------------------
class Phi(nn.Conv2d):
    """``h * (1 - r) + conv3x3(h) * r`` with ``r = |quant_resi|``."""

    def __init__(self, channels: int, quant_resi: float):
        super().__init__(channels, channels, kernel_size=3, stride=1, padding=1)
        self.resi_ratio = abs(quant_resi)

    def forward(self, h_BChw: torch.Tensor) -> torch.Tensor:
        return h_BChw.mul(1 - self.resi_ratio) + super().forward(h_BChw).mul_(self.resi_ratio)


class PhiPartiallyShared(nn.Module):
    """K phi convs shared by the SN scales; which one a scale uses is :func:`phi_index_per_scale`."""

    def __init__(self, qresi_ls: nn.ModuleList):
        super().__init__()
        self.qresi_ls = qresi_ls


def phi_index_per_scale(num_scales: int, num_phi: int) -> list[int]:
    """Index of the phi conv used at each scale, exactly as the official float64 lookup:
    ``argmin |ticks - si / (SN - 1)|`` (first index on ties) with numpy ``linspace`` ticks
    (``1/(3K) .. 1 - 1/(3K)`` for K = 4, else ``1/(2K) .. 1 - 1/(2K)``).
    SN = 10 gives [0,0,1,1,1,2,2,3,3,3]; SN = 5 gives [0,1,2,2,3]."""
    if num_scales < 2:
        raise ValueError(f"num_scales={num_scales}: the multi-scale quantizer needs at least 2 scales")
    K = num_phi
    ticks = np.linspace(1 / 3 / K, 1 - 1 / 3 / K, K) if K == 4 else np.linspace(1 / 2 / K, 1 - 1 / 2 / K, K)
    return [int(np.argmin(np.abs(ticks - si / (num_scales - 1)))) for si in range(num_scales)]


class MultiScaleQuantizer(nn.Module):
    """VectorQuantizer2 of VAR (``using_znorm=False``, partially shared phi).

    State-dict names: ``ema_vocab_hit_SV`` [SN, V] (a training statistic), ``quant_resi.qresi_ls.{k}``,
    ``embedding.weight`` [V, Cvae].
    """

    def __init__(
        self,
        vocab_size: int,
        z_channels: int,
        patch_nums: Sequence[int],
        beta: float = 0.25,
        quant_resi: float = 0.5,
        share_quant_resi: int = 4,
    ):
        super().__init__()
        if share_quant_resi < 2:
            raise ValueError(
                f"share_quant_resi={share_quant_resi}: only partially shared phi (>= 2 convs, layout "
                "quant_resi.qresi_ls.{k}) is implemented"
            )
        self.vocab_size = vocab_size
        self.z_channels = z_channels
        self.patch_nums = tuple(int(pn) for pn in patch_nums)
        self.beta = beta
        self.phi_index = phi_index_per_scale(len(self.patch_nums), share_quant_resi)
        self.quant_resi = PhiPartiallyShared(
            nn.ModuleList(
                [
                    Phi(z_channels, quant_resi) if abs(quant_resi) > 1e-6 else nn.Identity()
                    for _ in range(share_quant_resi)
                ]
            )
        )
        self.register_buffer("ema_vocab_hit_SV", torch.zeros(len(self.patch_nums), vocab_size))
        self.record_hit = 0
        self.embedding = nn.Embedding(vocab_size, z_channels)

    @property
    def num_scales(self) -> int:
        return len(self.patch_nums)

    def phi(self, si: int, h_BChw: torch.Tensor) -> torch.Tensor:
        """Apply the phi conv of scale ``si``."""
        return self.quant_resi.qresi_ls[self.phi_index[si]](h_BChw)

    def _nearest_index(self, z_NC: torch.Tensor) -> torch.Tensor:
        codebook_VC = self.embedding.weight.detach()
        dist_NV = torch.sum(z_NC.square(), dim=1, keepdim=True) + torch.sum(codebook_VC.square(), dim=1)
        dist_NV.addmm_(z_NC, codebook_VC.T, alpha=-2, beta=1)
        return torch.argmin(dist_NV, dim=1)

    def _scale_to_full(self, si: int, h_BCpp: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Scale ``si``'s embeddings (B, Cvae, pn, pn) -> phi(bicubic to h x w); no upsampling at the last scale."""
        if si != self.num_scales - 1:
            h_BCpp = F.interpolate(h_BCpp, size=hw, mode="bicubic")
        return self.phi(si, h_BCpp)

    def idx_to_embed(self, idx_Bl: torch.Tensor, pn: int) -> torch.Tensor:
        """Indices (B, pn*pn) in row-major order -> embeddings (B, Cvae, pn, pn)."""
        return self.embedding(idx_Bl).transpose(1, 2).reshape(idx_Bl.shape[0], self.z_channels, pn, pn)

    @torch.no_grad()
    def f_to_idx_Bl_or_fhat(self, f_BChw: torch.Tensor, to_fhat: bool) -> list[torch.Tensor]:
        """Latent -> per-scale indices (B, pn*pn) (``to_fhat=False``) or the cumulative ``f_hat``
        after each scale (``to_fhat=True``)."""
        B, C, H, W = f_BChw.shape
        if self.patch_nums[-1] != H or H != W:
            raise ValueError(f"latent of size {H}x{W} does not match the last patch number {self.patch_nums[-1]}")
        f_rest = f_BChw.detach().clone()
        f_hat = torch.zeros_like(f_rest)
        out = []
        for si, pn in enumerate(self.patch_nums):
            z_BCpp = F.interpolate(f_rest, size=(pn, pn), mode="area") if si != self.num_scales - 1 else f_rest
            idx_N = self._nearest_index(z_BCpp.permute(0, 2, 3, 1).reshape(-1, C))
            h_BChw = self._scale_to_full(si, self.idx_to_embed(idx_N.view(B, pn * pn), pn), (H, W))
            f_hat.add_(h_BChw)
            f_rest.sub_(h_BChw)
            out.append(f_hat.clone() if to_fhat else idx_N.reshape(B, pn * pn))
        return out

    def idx_Bl_to_var_input(self, idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-scale indices -> VAR's teacher-forcing input (B, L - pn_0^2, Cvae): the input of
        scale k >= 1 is the cumulative reconstruction of scales 0..k-1 area-downsampled to pn_k."""
        B, hw = idx_Bl[0].shape[0], self.patch_nums[-1]
        f_hat = torch.zeros(B, self.z_channels, hw, hw, device=idx_Bl[0].device)
        next_scales = []
        for si in range(self.num_scales - 1):
            h_BCpp = self.idx_to_embed(idx_Bl[si], self.patch_nums[si])
            f_hat, next_BCpp = self.next_autoregressive_input(si, f_hat, h_BCpp)
            next_scales.append(next_BCpp.view(B, self.z_channels, -1).transpose(1, 2))
        return torch.cat(next_scales, dim=1)

    def next_autoregressive_input(
        self, si: int, f_hat_BChw: torch.Tensor, h_BCpp: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Add scale ``si``'s embeddings (B, Cvae, pn, pn) to ``f_hat``; return the new ``f_hat`` and
        the next scale's input (``f_hat`` area-downsampled to pn_{si+1}; ``f_hat`` itself after the last scale)."""
        hw = f_hat_BChw.shape[-2:]
        f_hat_BChw = f_hat_BChw + self._scale_to_full(si, h_BCpp, hw)
        if si == self.num_scales - 1:
            return f_hat_BChw, f_hat_BChw
        pn_next = self.patch_nums[si + 1]
        return f_hat_BChw, F.interpolate(f_hat_BChw, size=(pn_next, pn_next), mode="area")

    def embed_to_fhat(self, ms_h_BCpp: Sequence[torch.Tensor]) -> torch.Tensor:
        """Per-scale embeddings (B, Cvae, pn, pn) -> final ``f_hat`` (B, Cvae, h, w)."""
        hw = self.patch_nums[-1]
        f_hat = torch.zeros(ms_h_BCpp[0].shape[0], self.z_channels, hw, hw, device=ms_h_BCpp[0].device)
        for si, h_BCpp in enumerate(ms_h_BCpp):
            f_hat = f_hat + self._scale_to_full(si, h_BCpp, (hw, hw))
        return f_hat

    def idx_Bl_to_fhat(self, idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.embed_to_fhat([self.idx_to_embed(idx, pn) for idx, pn in zip(idx_Bl, self.patch_nums)])

    def forward(self, f_BChw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training quantization -> (straight-through ``f_hat``, vq loss, codebook hits (V,)).

        vq loss = mean over scales of ``beta * mse(f_hat.detach(), f) + mse(f_hat, f.detach())``,
        with the cumulative ``f_hat`` after each scale; gradients reach the encoder only through the
        commitment term and the straight-through output ``(f_hat - f).detach() + f``.
        """
        f_BChw = f_BChw.float()
        B, C, H, W = f_BChw.shape
        f_no_grad = f_BChw.detach()
        f_rest = f_no_grad.clone()
        f_hat = torch.zeros_like(f_rest)
        vq_loss = f_BChw.new_zeros(())
        vocab_hit_V = torch.zeros(self.vocab_size, device=f_BChw.device)
        for si, pn in enumerate(self.patch_nums):
            z_BCpp = F.interpolate(f_rest, size=(pn, pn), mode="area") if si != self.num_scales - 1 else f_rest
            idx_N = self._nearest_index(z_BCpp.permute(0, 2, 3, 1).reshape(-1, C))
            hit_V = idx_N.bincount(minlength=self.vocab_size).float()
            h_BChw = self._scale_to_full(si, self.idx_to_embed(idx_N.view(B, pn * pn), pn), (H, W))
            f_hat = f_hat + h_BChw
            f_rest = f_rest - h_BChw.detach()
            if self.training:
                self._record_hits(si, hit_V)
            vocab_hit_V.add_(hit_V)
            vq_loss = vq_loss + F.mse_loss(f_hat.detach(), f_BChw).mul(self.beta) + F.mse_loss(f_hat, f_no_grad)
        vq_loss = vq_loss / self.num_scales
        f_hat = (f_hat.detach() - f_no_grad) + f_BChw
        return f_hat, vq_loss, vocab_hit_V

    @torch.no_grad()
    def _record_hits(self, si: int, hit_V: torch.Tensor) -> None:
        """The official EMA of per-scale codebook hits (single process)."""
        if self.record_hit == 0:
            self.ema_vocab_hit_SV[si].copy_(hit_V)
        elif self.record_hit < 100:
            self.ema_vocab_hit_SV[si].mul_(0.9).add_(hit_V.mul(0.1))
        else:
            self.ema_vocab_hit_SV[si].mul_(0.99).add_(hit_V.mul(0.01))
        self.record_hit += 1


class VQVAEOutput(NamedTuple):
    recon_pm1: torch.Tensor  # (B, 3, H, W), decoder output (not clamped)
    vq_loss: torch.Tensor  # scalar
    vocab_hit_V: torch.Tensor  # (V,) codebook hits of this batch, all scales


class VQVAE(nn.Module):
    """Encoder + ``quant_conv`` + multi-scale quantizer + ``post_quant_conv`` + Decoder.

    The official checkpoint is ``vocab_size=4096, z_channels=32, ch=160, ch_mult=(1,1,2,2,4),
    num_res_blocks=2, using_sa=True, using_mid_sa=True, share_quant_resi=4, quant_resi=0.5``.
    Every size is a constructor argument; ``ch`` must be a multiple of 32 (GroupNorm(32, C)) and the
    last patch number must equal ``resolution / 2**(len(ch_mult) - 1)``.
    """

    def __init__(
        self,
        *,
        vocab_size: int = 4096,
        z_channels: int = 32,
        ch: int = 160,
        ch_mult: Sequence[int] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        using_sa: bool = True,
        using_mid_sa: bool = True,
        dropout: float = 0.0,
        beta: float = 0.25,
        quant_resi: float = 0.5,
        share_quant_resi: int = 4,
        patch_nums: Sequence[int] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
        resolution: int = 256,
    ):
        super().__init__()
        _validate_vqvae_sizes(vocab_size, z_channels, ch, ch_mult, num_res_blocks, patch_nums, resolution)
        self.vocab_size, self.z_channels, self.resolution = vocab_size, z_channels, resolution
        self.patch_nums = tuple(int(pn) for pn in patch_nums)
        ddconfig = dict(
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            dropout=dropout,
            in_channels=3,
            z_channels=z_channels,
            using_sa=using_sa,
            using_mid_sa=using_mid_sa,
        )
        self.encoder = Encoder(**ddconfig)
        self.decoder = Decoder(**ddconfig)
        self.quantize = MultiScaleQuantizer(
            vocab_size, z_channels, self.patch_nums, beta=beta, quant_resi=quant_resi, share_quant_resi=share_quant_resi
        )
        self.quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=3, stride=1, padding=1)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, kernel_size=3, stride=1, padding=1)

    def _check_images(self, img_B3HW: torch.Tensor) -> None:
        if img_B3HW.ndim != 4 or tuple(img_B3HW.shape[1:]) != (3, self.resolution, self.resolution):
            raise ValueError(
                f"images of shape {tuple(img_B3HW.shape)}; expected (B, 3, {self.resolution}, {self.resolution})"
            )

    def encode_f(self, img_pm1_B3HW: torch.Tensor) -> torch.Tensor:
        """Image in [-1, 1] -> continuous latent ``quant_conv(encoder(img))`` (B, Cvae, h, w)."""
        self._check_images(img_pm1_B3HW)
        return self.quant_conv(self.encoder(img_pm1_B3HW))

    @torch.no_grad()
    def img_to_idx_Bl(self, img_pm1_B3HW: torch.Tensor) -> list[torch.Tensor]:
        """Image in [-1, 1] -> list of SN int64 tensors (B, pn*pn)."""
        return self.quantize.f_to_idx_Bl_or_fhat(self.encode_f(img_pm1_B3HW), to_fhat=False)

    def idx_Bl_to_var_input(self, idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.quantize.idx_Bl_to_var_input(idx_Bl)

    def fhat_to_img(self, f_hat_BChw: torch.Tensor) -> torch.Tensor:
        """``f_hat`` -> image in [-1, 1] (clamped)."""
        return self.decoder(self.post_quant_conv(f_hat_BChw)).clamp_(-1, 1)

    def idx_Bl_to_img(self, idx_Bl: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.fhat_to_img(self.quantize.idx_Bl_to_fhat(idx_Bl))

    def forward(self, img_pm1_B3HW: torch.Tensor) -> VQVAEOutput:
        """Training path: image in [-1, 1] -> (reconstruction, vq loss, codebook hits)."""
        f_hat, vq_loss, vocab_hit_V = self.quantize(self.encode_f(img_pm1_B3HW))
        return VQVAEOutput(self.decoder(self.post_quant_conv(f_hat)), vq_loss, vocab_hit_V)


def _validate_vqvae_sizes(vocab_size, z_channels, ch, ch_mult, num_res_blocks, patch_nums, resolution) -> None:
    for name, value in (("vocab_size", vocab_size), ("z_channels", z_channels), ("num_res_blocks", num_res_blocks)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}; expected a positive integer")
    if not isinstance(ch, int) or ch < 32 or ch % 32 != 0:
        raise ValueError(f"ch={ch!r}; expected a positive multiple of 32 (the VAE uses GroupNorm(32, C))")
    if len(ch_mult) < 1 or any(not isinstance(m, int) or m < 1 for m in ch_mult):
        raise ValueError(f"ch_mult={tuple(ch_mult)!r}; expected a non-empty sequence of positive integers")
    if len(patch_nums) < 2 or any(not isinstance(pn, int) or pn < 1 for pn in patch_nums):
        raise ValueError(f"patch_nums={tuple(patch_nums)!r}; expected at least 2 positive integers")
    downsample = 2 ** (len(ch_mult) - 1)
    if resolution % downsample != 0 or resolution // downsample != patch_nums[-1]:
        raise ValueError(
            f"resolution={resolution} with ch_mult={tuple(ch_mult)} (downsample x{downsample}) gives a latent "
            f"of {resolution / downsample:g}; the last patch number is {patch_nums[-1]} and must equal it"
        )
    if max(patch_nums) > patch_nums[-1]:
        raise ValueError(f"patch_nums={tuple(patch_nums)!r}; no scale may exceed the last (the latent size)")
