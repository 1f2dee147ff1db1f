"""The MaskGIT-VQGAN tokenizer used by RAR (own code, official checkpoint layout).

Module names and shapes equal ``maskgit-vqgan-imagenet-f16-256.bin`` (bytedance/1d-tokenizer,
``modeling/modules/maskgit_vqgan.py``), so the official file loads strictly. Images are in
**[0, 1]** (not [-1, 1]). Every size is a field of :class:`VQGANConfig`.

Two upstream quirks the checkpoint depends on are kept on purpose:

- a :class:`ResnetBlock` whose channel count changes adds ``nin_shortcut(h)`` -- the 1x1
  shortcut is applied to the block's *output* ``h`` (shape ``[cout, cout, 1, 1]``), and the
  block's input is dropped;
- the encoder downsamples with ``avg_pool2d(2, 2)`` (no conv) and the decoder upsamples with
  nearest x2 followed by ``up.{l}.upsample_conv``.

All convolutions have stride 1 and odd kernels, where upstream's TF-style SAME padding equals
symmetric padding ``k // 2``.

Tensor legend: B batch, C channels, H x W image size, h x w latent grid, Z latent channels
(``z_channels``), K codebook size, N = h * w codes per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

_GN_EPS = 1e-6


@dataclass(frozen=True)
class VQGANConfig:
    """Sizes of a MaskGIT-VQGAN. Defaults are the official ImageNet f16 256 px tokenizer."""

    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    hidden_channels: int = 128
    num_res_blocks: int = 2
    z_channels: int = 256
    codebook_size: int = 1024
    resolution: int = 256
    dropout: float = 0.0
    num_channels: int = 3
    norm_groups: int = 32
    commitment_cost: float = 0.25

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        if not self.channel_mult:
            raise ValueError("VQGANConfig.channel_mult must name at least one level, got ()")
        factor = 2 ** (len(self.channel_mult) - 1)
        if self.resolution % factor:
            raise ValueError(
                f"VQGANConfig.resolution={self.resolution} must be divisible by 2**(levels-1)={factor} "
                f"for channel_mult={self.channel_mult}"
            )
        widths = [self.hidden_channels * m for m in self.channel_mult]
        bad = [w for w in widths if w % self.norm_groups]
        if bad:
            raise ValueError(
                f"VQGANConfig: channel widths {widths} (hidden_channels x channel_mult) must all be "
                f"divisible by norm_groups={self.norm_groups}; {bad} are not"
            )

    @property
    def latent_size(self) -> int:
        """h = w, the side of the code grid."""
        return self.resolution // 2 ** (len(self.channel_mult) - 1)

    @property
    def num_tokens(self) -> int:
        """N = h * w codes per image."""
        return self.latent_size**2


def _conv(cin: int, cout: int, kernel: int, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)


def _norm(channels: int, config: VQGANConfig) -> nn.GroupNorm:
    return nn.GroupNorm(config.norm_groups, channels, eps=_GN_EPS, affine=True)


class ResnetBlock(nn.Module):
    """``h = conv2(dropout(silu(norm2(conv1(silu(norm1(x)))))))``; returns ``h + x`` when the
    width is kept, else ``h + nin_shortcut(h)`` (the upstream quirk, see module docstring)."""

    def __init__(self, cin: int, cout: int, config: VQGANConfig):
        super().__init__()
        self.norm1 = _norm(cin, config)
        self.conv1 = _conv(cin, cout, 3, bias=False)
        self.norm2 = _norm(cout, config)
        self.dropout = nn.Dropout(config.dropout)
        self.conv2 = _conv(cout, cout, 3, bias=False)
        self.changes_width = cin != cout
        if self.changes_width:
            self.nin_shortcut = _conv(cout, cout, 1, bias=False)

    def forward(self, x_BChw: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x_BChw)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.changes_width:
            return h + self.nin_shortcut(h)
        return h + x_BChw


class _Level(nn.Module):
    """One resolution level: ``block`` (a ModuleList of ResnetBlocks), plus ``upsample_conv``
    on decoder levels above 0. Holds parameters only; the encoder/decoder run it."""

    def __init__(self, cin: int, cout: int, config: VQGANConfig, upsample: bool):
        super().__init__()
        widths = [cin] + [cout] * config.num_res_blocks
        self.block = nn.ModuleList(ResnetBlock(a, b, config) for a, b in zip(widths[:-1], widths[1:]))
        if upsample:
            self.upsample_conv = _conv(cout, cout, 3)


class Encoder(nn.Module):
    """[0, 1] images (B, C, H, W) -> latents (B, Z, h, w) before quantization."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        hidden, mult = config.hidden_channels, config.channel_mult
        in_mult = (1,) + mult
        self.conv_in = _conv(config.num_channels, hidden, 3, bias=False)
        self.down = nn.ModuleList(
            _Level(hidden * in_mult[level], hidden * mult[level], config, upsample=False) for level in range(len(mult))
        )
        width = hidden * mult[-1]
        self.mid = nn.ModuleList(ResnetBlock(width, width, config) for _ in range(config.num_res_blocks))
        self.norm_out = _norm(width, config)
        self.conv_out = _conv(width, config.z_channels, 1)

    def forward(self, img_BCHW: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(img_BCHW)
        for level, stage in enumerate(self.down):
            for block in stage.block:
                h = block(h)
            if level != len(self.down) - 1:
                h = F.avg_pool2d(h, kernel_size=2, stride=2)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Quantized latents (B, Z, h, w) -> raw images (B, C, H, W), not clamped."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        hidden, mult = config.hidden_channels, config.channel_mult
        width = hidden * mult[-1]
        self.conv_in = _conv(config.z_channels, width, 3)
        self.mid = nn.ModuleList(ResnetBlock(width, width, config) for _ in range(config.num_res_blocks))
        # up[l] maps the width of level l+1 (the top level: itself) to the width of level l.
        cin_per_level = [hidden * m for m in mult[1:]] + [width]
        self.up = nn.ModuleList(
            _Level(cin_per_level[level], hidden * mult[level], config, upsample=level != 0)
            for level in range(len(mult))
        )
        self.norm_out = _norm(hidden * mult[0], config)
        self.conv_out = _conv(hidden * mult[0], config.num_channels, 3)

    def forward(self, z_BZhw: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z_BZhw)
        for block in self.mid:
            h = block(h)
        for level in reversed(range(len(self.up))):
            stage = self.up[level]
            for block in stage.block:
                h = block(h)
            if level != 0:
                h = stage.upsample_conv(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """Nearest-codebook-entry quantization with the squared-L2 distance computed as upstream:
    ``addmm(|z|^2 + |e|^2, z, e^T, alpha=-2)`` then ``argmin`` (first index on ties)."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.commitment_cost = config.commitment_cost
        self.embedding = nn.Embedding(config.codebook_size, config.z_channels)
        nn.init.uniform_(self.embedding.weight, -1.0 / config.codebook_size, 1.0 / config.codebook_size)

    def squared_distances(self, z_BhwZ: torch.Tensor) -> torch.Tensor:
        """(B, h, w, Z) latents -> (B*h*w, K) squared distances to every codebook entry."""
        z_MZ = z_BhwZ.reshape(-1, z_BhwZ.shape[-1])
        codebook_ZK = self.embedding.weight.t()
        z_sq_M1 = z_MZ.pow(2.0).sum(dim=1, keepdim=True)
        codebook_sq_1K = codebook_ZK.pow(2.0).sum(dim=0, keepdim=True)
        return torch.addmm(z_sq_M1 + codebook_sq_1K, z_MZ, codebook_ZK, alpha=-2.0)

    def codes(self, z_BZhw: torch.Tensor) -> torch.Tensor:
        """Latents (B, Z, h, w) -> codes (B, h*w), int64, row-major over the grid."""
        z_BhwZ = z_BZhw.permute(0, 2, 3, 1).contiguous()
        return self.squared_distances(z_BhwZ).argmin(dim=1).reshape(z_BZhw.shape[0], -1)

    def lookup(self, codes_BN: torch.Tensor, side: int) -> torch.Tensor:
        """Codes (B, side*side) -> quantized latents (B, Z, side, side)."""
        return self.embedding(codes_BN).reshape(codes_BN.shape[0], side, side, -1).permute(0, 3, 1, 2)

    def forward(self, z_BZhw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training path -> (z_q with straight-through gradient to z, codes (B, h*w), vq loss).

        vq loss = ``mse(z_q, z.detach())`` (moves the codebook) ``+ commitment_cost *
        mse(z_q.detach(), z)`` (commits the encoder), as in the VQ-VAE paper. Upstream's
        ``VectorQuantizer`` puts the 0.25 on the codebook term instead; it is only used for
        training, which the official tokenizer checkpoint does not depend on.
        """
        codes_BN = self.codes(z_BZhw)
        z_q_BZhw = self.lookup(codes_BN, z_BZhw.shape[-1])
        loss = F.mse_loss(z_q_BZhw, z_BZhw.detach()) + self.commitment_cost * F.mse_loss(z_q_BZhw.detach(), z_BZhw)
        z_q_straight_through = z_BZhw + (z_q_BZhw - z_BZhw).detach()
        return z_q_straight_through, codes_BN, loss


class MaskGITVQGAN(nn.Module):
    """Encoder + quantizer + decoder (state-dict prefixes ``encoder.``, ``decoder.``, ``quantize.``)."""

    def __init__(self, config: VQGANConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = VectorQuantizer(config)

    def _check_images(self, img_01_BCHW: torch.Tensor) -> None:
        c, r = self.config.num_channels, self.config.resolution
        if img_01_BCHW.ndim != 4 or tuple(img_01_BCHW.shape[1:]) != (c, r, r):
            raise ValueError(f"images must have shape (B, {c}, {r}, {r}), got {tuple(img_01_BCHW.shape)}")

    def encode(self, img_01_BCHW: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, C, H, W) -> codes (B, h*w), int64, row-major."""
        self._check_images(img_01_BCHW)
        return self.quantize.codes(self.encoder(img_01_BCHW))

    def decode_raw(self, codes_BN: torch.Tensor) -> torch.Tensor:
        """Codes (B, h*w) -> decoder output (B, C, H, W), not clamped."""
        side = self.config.latent_size
        if codes_BN.ndim != 2 or codes_BN.shape[1] != side * side:
            raise ValueError(f"codes must have shape (B, {side * side}), got {tuple(codes_BN.shape)}")
        return self.decoder(self.quantize.lookup(codes_BN, side))

    def decode(self, codes_BN: torch.Tensor) -> torch.Tensor:
        """Codes (B, h*w) -> images clamped to [0, 1], (B, C, H, W)."""
        return self.decode_raw(codes_BN).clamp(0.0, 1.0)

    def forward(self, img_01_BCHW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training path: images in [0, 1] -> (reconstruction, unclamped; vq loss), with the
        straight-through estimator carrying the reconstruction gradient into the encoder."""
        self._check_images(img_01_BCHW)
        z_q_BZhw, _, vq_loss = self.quantize(self.encoder(img_01_BCHW))
        return self.decoder(z_q_BZhw), vq_loss
