"""Stand-ins for the files of a full-scale run, in their official formats, at tiny sizes: what
tests/test_rehearsal.py runs the whole full-scale path on.

- :func:`write_official_checkpoints`: random-weight VAR (``var_d16.pth`` + ``vae_ch160v4096z32.pth``)
  or RAR (``rar_b.bin`` + ``maskgit-vqgan-imagenet-f16-256.bin``) files as the official code saves
  them (``torch.save`` of a plain state dict; the official key layout, layer numbers aside, and
  dtypes, checked against tests/data/manifests; VAR's tokenizer with the official 10-scale ``ema_vocab_hit_SV``), at tiny
  sizes with all 1000 classes.
- :func:`write_imagenet_folder`: ``train/<wnid>/<wnid>_<n>.JPEG`` with real wnids and the
  awkward files ImageNet holds (grayscale and CMYK JPEGs, a PNG with alpha under a ``.JPEG``
  name, odd aspect ratios) plus one broken file.
- :func:`write_sscd` / :func:`write_inception`: TorchScript modules with the real interfaces
  (SSCD: (B, 3, 320, 320) -> (B, 512); clean-fid's Inception: ``.layers`` mapping (B, 3, 299, 299)
  to (B, 2048, 1, 1)).
- :func:`write_adm_reference`: an ADM-style reference batch (``arr_0`` uint8 images, ``mu``
  (2048,), ``sigma`` (2048, 2048)).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from memlib.data import imagenet_wnids
from memlib.models.registry import build_generator, get_config

MANIFESTS = Path(__file__).parent / "data" / "manifests"

# Tiny sizes of the official families, all 1000 ImageNet classes (the wnid labels reach 999).
TINY = {
    "var": ("var-d16", {"depth": 2, "width": 32, "num_heads": 2, "patch_nums": [1, 2, 4], "vocab_size": 16,
                        "z_channels": 4, "ch": 32, "ch_mult": [1, 1, 1, 2], "num_res_blocks": 1,
                        "using_sa": True, "using_mid_sa": True, "resolution": 32}),
    "rar": ("rar-b", {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 64,
                      "image_seq_len": 16, "codebook_size": 32, "pos_embed_extra_rows": 8, "timestep_extra_rows": 4,
                      "image_size": 16, "tokenizer_channel_mult": [1, 1, 2], "tokenizer_hidden_channels": 16,
                      "tokenizer_z_channels": 8, "tokenizer_num_res_blocks": 1, "tokenizer_norm_groups": 8}),
}
OFFICIAL_FILES = {  # (generator file, tokenizer file, their manifests)
    "var": ("var_d16.pth", "vae_ch160v4096z32.pth", "var_d16.json", "vae_ch160v4096z32.json"),
    "rar": ("rar_b.bin", "maskgit-vqgan-imagenet-f16-256.bin", "rar_b.json", "maskgit_vqgan_imagenet_f16_256.json"),
}
OFFICIAL_SCALES = 10  # VAR's released tokenizer was trained with 10 scales (ema_vocab_hit_SV rows)


def tiny_config(family: str):
    name, overrides = TINY[family]
    return get_config(name, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})


def write_official_checkpoints(folder: Path, family: str, seed: int = 0) -> tuple[Path, Path]:
    """Save a random tiny model of ``family`` under the official file names; returns the two paths.
    Each state dict's keys (in order) and dtypes are the official manifest's."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    gen = build_generator(tiny_config(family))
    with torch.no_grad():  # official init leaves VAR's blocks near the identity: perturb so that they matter
        for p in gen.transformer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    gen_file, tok_file, gen_manifest, tok_manifest = OFFICIAL_FILES[family]
    generator_sd = {k: v.detach().clone() for k, v in gen.transformer.state_dict().items()}
    tokenizer_sd = {k: v.detach().clone() for k, v in gen.tokenizer.state_dict().items()}
    if family == "var":
        tokenizer_sd["quantize.ema_vocab_hit_SV"] = torch.rand(OFFICIAL_SCALES, tokenizer_sd["quantize.ema_vocab_hit_SV"].shape[1])
    for state, manifest in ((generator_sd, gen_manifest), (tokenizer_sd, tok_manifest)):
        official = json.loads((MANIFESTS / manifest).read_text())["state_dict"]
        assert layout(state) == {_pattern(k): e["dtype"] for k, e in official.items()}, manifest
    torch.save(generator_sd, folder / gen_file)
    torch.save(tokenizer_sd, folder / tok_file)
    return folder / gen_file, folder / tok_file


def _pattern(key: str) -> str:
    """A state-dict key with its layer numbers as ``*`` (``blocks.3.ffn.fc1.weight`` -> ``blocks.*.ffn.fc1.weight``)."""
    return re.sub(r"\.\d+(?=\.|$)", ".*", key)


def layout(state: dict[str, torch.Tensor]) -> dict[str, str]:
    """The key patterns of a state dict (layer numbers as ``*``) and their dtypes: what a tiny
    model shares with the official one of its family."""
    return {_pattern(k): str(v.dtype).removeprefix("torch.") for k, v in state.items()}


WNID_INDICES = (0, 217, 508, 999)  # first, an ordinary, a middle and the last official class


def _photo(width: int, height: int, seed: int) -> Image.Image:
    """A smooth colour image (gradients and a blob), so crops and tokens differ between images."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    a, b, c = rng.uniform(0.5, 3.0, 3)
    rgb = np.stack([np.sin(a * x * 6 + b), np.cos(b * y * 6 + c), np.sin(c * (x + y) * 4 + a)], -1)
    return Image.fromarray(((rgb + 1) * 127.5).clip(0, 255).astype(np.uint8))


def write_imagenet_folder(root: Path) -> dict:
    """``root/<wnid>/`` for the four wnids of :data:`WNID_INDICES`, three or four images each,
    among them every awkward kind; returns what was written (root, wnids, the broken file)."""
    wnids = [imagenet_wnids()[i] for i in WNID_INDICES]
    sizes = [(500, 353), (640, 427), (353, 500), (1024, 683), (96, 64), (64, 96)]  # odd aspect ratios
    for c, wnid in enumerate(wnids):
        folder = root / wnid
        folder.mkdir(parents=True)
        for i in range(3):
            width, height = sizes[(c + i) % len(sizes)]
            _photo(width, height, 10 * c + i).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    first, second, third, last = wnids
    _photo(120, 90, 100).convert("L").save(root / first / f"{first}_gray.JPEG")  # grayscale JPEG
    _photo(90, 120, 101).convert("CMYK").save(root / second / f"{second}_cmyk.JPEG")  # CMYK JPEG
    rgba = _photo(100, 100, 102).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile(np.linspace(0, 255, 100, dtype=np.uint8), (100, 1))))
    rgba.save(root / third / f"{third}_png.JPEG", format="PNG")  # a PNG with alpha under a .JPEG name
    broken = root / last / f"{last}_broken.JPEG"
    broken.write_bytes(_jpeg_bytes(_photo(80, 80, 103))[:200])  # truncated: PIL cannot decode it
    return {"root": root, "wnids": wnids, "broken": broken}


def _jpeg_bytes(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


class _SSCDStandIn(nn.Module):
    """SSCD's interface: (B, 3, 320, 320) normalised images -> (B, 512) descriptors."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(8)
        self.proj = nn.Linear(3 * 8 * 8, 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(x).flatten(1))


class _InceptionLayers(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.proj = nn.Linear(3 * 4 * 4, 2048)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.proj(self.pool(x).flatten(1)))[:, :, None, None]


class _InceptionStandIn(nn.Module):
    """clean-fid's TorchScript Inception's interface: ``layers`` (B, 3, 299, 299) -> (B, 2048, 1, 1)."""

    def __init__(self):
        super().__init__()
        self.layers = _InceptionLayers()

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.layers(x).flatten(1)


def _script(module: nn.Module, path: Path, seed: int) -> Path:
    import warnings

    torch.manual_seed(seed)
    module = module()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning)
        torch.jit.script(module.eval()).save(str(path))
    return path


def write_sscd(path: Path) -> Path:
    return _script(_SSCDStandIn, path, seed=1)


def write_inception(path: Path) -> Path:
    return _script(_InceptionStandIn, path, seed=2)


def write_adm_reference(path: Path, inception: Path, n: int = 12) -> Path:
    """An ADM-style reference batch: ``arr_0`` (n, 64, 64, 3) uint8 images and the ``mu``/``sigma``
    of the stand-in Inception's features of them (clean-fid's preprocessing), as the real file
    holds its evaluator's statistics."""
    from memlib.fid import InceptionFeatures, feature_stats

    images = np.stack([np.asarray(_photo(64, 64, 200 + i)) for i in range(n)])
    stats = feature_stats(InceptionFeatures(inception), torch.from_numpy(images).permute(0, 3, 1, 2))
    np.savez(path, arr_0=images, mu=stats.mu.astype(np.float64), sigma=stats.sigma.astype(np.float64))
    return path
