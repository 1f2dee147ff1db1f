"""Train the testbed's tokenizers and generators (``var-testbed``, ``rar-testbed``).

    python -m memlib.train all --out data/checkpoints --seed 0

Stages, in data-flow order (``all`` runs the four):

1. ``var-tokenizer`` / ``rar-tokenizer``: the tokenizer on the training images, loss = MSE
   reconstruction (in the tokenizer's own pixel range) + the quantizer's VQ loss. Codebook
   collapse is avoided with dead-code restarts: every ``restart_every`` steps, each code that
   no latent chose since the last restart is moved onto a latent vector of the current batch
   (for VAR's residual quantizer: a residual at a random scale, i.e. what that scale quantizes).
   The first restart comes right after step 1, so nearly every code starts on a data vector.
2. ``var`` / ``rar``: the transformer is trained with AdamW, linear warmup + cosine decay,
   batch 64 and label dropout 0.1 (so that guidance works) on
   :func:`memlib.data.training_indices`: every training image once per epoch, each planted
   image as many times as its duplication level (``train_copies``). Each presentation is, with
   probability ``augment_prob`` (0.25), a fresh augmented view of its image
   (:func:`memlib.data.testbed_views`: the family's own augmentation, as the paper's models
   were trained) and otherwise the family's centre view, tokenized by the frozen tokenizer.
   Why not always augmented: with every presentation augmented, 10 CPU epochs memorized
   nothing, not even the 32-copy images (data/README.md); the paper's models saw each image
   under augmentation some 300 times more often than the testbed can afford. The tokenizer
   trains on augmented views throughout. RAR's random-order annealing is off by default: the
   official schedule ends in raster order anyway (random ratio 0 for the last quarter of
   training), the attack decodes in raster order, and a few CPU epochs of random orders
   would spend the budget on orders never used again (``--rar-random-order`` turns it on).

Stopping point (spec/testbed-notes.md, lesson 1: memorization spreads to ordinary images
once the held-out loss passes its minimum). The held-out loss (teacher-forced cross-entropy
on the centre views of the held-out split, no label dropout) is measured after every epoch; training stops when
it has not improved for ``patience`` epochs or after ``epochs``, and the weights of the epoch
with the lowest held-out loss are the ones saved. The full per-epoch log is in the JSON.
What the shipped run did is in data/README.md and in each checkpoint's JSON log.

One torch thread is the default: on the shared 2-core machine two threads ran 4-5x slower.

Each stage writes ``<name>.safetensors`` (transformer) or ``<name>-tokenizer.safetensors``
and a JSON beside it (config, settings, seed, steps, losses, log, wall time, library
versions, sha256 of the weights and of the training data), each atomically (temp file,
then ``os.replace``). Generators also get a quick memorization check: greedy decoding from a
ground-truth prefix (centre views), counting images whose non-prefix tokens match the
original for at least 90%, per duplication level, for the control group, other training
images and held-out images.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tqdm.auto import tqdm

from memlib import data as mdata
from memlib.models.generator import Generator, eval_mode
from memlib.models.loading import load_strict, read_state_dict
from memlib.models.rar import ar_loss
from memlib.models.registry import build_generator, get_config
from memlib.results import atomic_write_bytes, atomic_write_with, file_sha256, library_versions

STAGES = ("var-tokenizer", "var", "rar-tokenizer", "rar")
MODEL_NAMES = {"var": "var-testbed", "rar": "rar-testbed"}
CHECK_PREFIX = {"var": 30, "rar": 8}  # the book's reported prefixes: VAR scales 1x1 to 4x4; RAR the first token row of 8x8
MATCH_THRESHOLD = 0.9  # fraction of non-prefix tokens equal to the original's


@dataclass(frozen=True)
class TokenizerSettings:
    steps: int = 400  # optimizer steps (batches); 400 x 32 images ~ 2.1 epochs of the train split
    batch_size: int = 32
    augment: bool = True  # train on the family's augmented views (False: centre views)
    lr: float = 2e-3
    warmup_steps: int = 20
    restart_every: int = 25  # dead-code restart period in steps (0: never)
    log_every: int = 50  # steps between log entries (train loss, reconstruction of 200 held-out images)


@dataclass(frozen=True)
class GeneratorSettings:
    epochs: int = 10  # at most; see patience
    patience: int = 2  # stop after this many epochs without a lower held-out loss
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05  # of all steps of `epochs` epochs
    label_dropout: float = 0.1
    augment_prob: float = 0.25  # chance that a presentation is a fresh augmented view (else the centre view)
    rar_random_order: bool = False  # RAR's random-order annealing (1 -> 0 between 50% and 75% of training)
    max_steps: int | None = None  # stop after this many steps (tests); None: no limit


# ---------------------------------------------------------------------------------------------
# small utilities
# ---------------------------------------------------------------------------------------------


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warmup to ``peak`` over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def save_checkpoint(module: torch.nn.Module, weights_path: Path, record: dict) -> dict:
    """Write ``module``'s state dict as safetensors and ``record`` (+ the file's sha256) as JSON
    beside it (same stem), both atomically. Returns the record as written."""
    weights_path = Path(weights_path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    atomic_write_with(weights_path, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
    record = {**record, "weights_file": weights_path.name, "weights_sha256": file_sha256(weights_path)}
    atomic_write_bytes(weights_path.with_suffix(".json"), (json.dumps(record, indent=2) + "\n").encode("utf-8"))
    return record


def tokenize(generator: Generator, images_N3HW: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Token ids (N, L) of images in [0, 1], tokenizer in eval mode (restored afterwards)."""
    with eval_mode(generator.tokenizer), torch.no_grad():
        return torch.cat([generator.images_to_tokens(b) for b in images_N3HW.split(batch_size)])


# ---------------------------------------------------------------------------------------------
# tokenizers
# ---------------------------------------------------------------------------------------------


def _tokenizer_step(generator: Generator, images_B3HW: torch.Tensor):
    """One training forward -> (loss, reconstruction MSE, codes chosen (flat), latent (B, Z, h, w))."""
    tok = generator.tokenizer
    if generator.family == "var":
        target = images_B3HW * 2 - 1  # the VQVAE works in [-1, 1]
        latent = tok.encode_f(target)
        f_hat, vq_loss, hit_V = tok.quantize(latent)
        recon = tok.decoder(tok.post_quant_conv(f_hat))
        used = hit_V.nonzero().flatten()
    else:
        target = images_B3HW  # the MaskGIT-VQGAN works in [0, 1]
        latent = tok.encoder(target)
        z_q, codes_BN, vq_loss = tok.quantize(latent)
        recon = tok.decoder(z_q)
        used = codes_BN.flatten().unique()
    mse = F.mse_loss(recon, target)
    return mse + vq_loss, mse.detach(), used, latent.detach()


@torch.no_grad()
def _restart_candidates(generator: Generator, latent_BZhw: torch.Tensor) -> torch.Tensor:
    """Vectors a restarted code may take (M, Z): the latents themselves (VQGAN), or for VAR's
    residual quantizer the residual each scale quantizes, at that scale's grid."""
    if generator.family != "var":
        return latent_BZhw.permute(0, 2, 3, 1).reshape(-1, latent_BZhw.shape[1])
    quantizer = generator.tokenizer.quantize
    before = [torch.zeros_like(latent_BZhw)] + quantizer.f_to_idx_Bl_or_fhat(latent_BZhw, to_fhat=True)[:-1]
    return torch.cat(
        [
            F.interpolate(latent_BZhw - f_hat, size=(pn, pn), mode="area").permute(0, 2, 3, 1).reshape(-1, latent_BZhw.shape[1])
            for f_hat, pn in zip(before, quantizer.patch_nums)
        ]
    )


@torch.no_grad()
def _restart_dead_codes(embedding: torch.nn.Embedding, hits_V: torch.Tensor, candidates_MZ: torch.Tensor, generator: torch.Generator) -> int:
    """Move every code with zero hits onto a random candidate vector; returns how many moved."""
    dead = (hits_V == 0).nonzero().flatten()
    if len(dead):
        pick = torch.randint(0, len(candidates_MZ), (len(dead),), generator=generator)
        embedding.weight[dead] = candidates_MZ[pick].to(embedding.weight.dtype)
    return len(dead)


@torch.no_grad()
def reconstruction_mse(generator: Generator, images_N3HW: torch.Tensor) -> tuple[float, int]:
    """Pixel MSE in [0, 1] of decode(encode(x)) and the number of distinct codes used."""
    tokens = tokenize(generator, images_N3HW)
    with eval_mode(generator.tokenizer):
        recon = torch.cat([generator.tokens_to_images(t) for t in tokens.split(256)])
    return float(F.mse_loss(recon, images_N3HW)), int(tokens.unique().numel())


def train_tokenizer(
    generator: Generator,
    images_NHW: np.ndarray,
    heldout_NHW: np.ndarray,
    settings: TokenizerSettings,
    seed: int,
    progress: bool = True,
) -> dict:
    """Train ``generator.tokenizer`` in place on views of the uint8 testbed images; returns the
    log (see module docstring). Held-out reconstruction is measured on centre views."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    restart_gen = torch.Generator().manual_seed(seed)
    view_gen = torch.Generator().manual_seed(seed + 1) if settings.augment else None
    heldout_N3HW = mdata.testbed_views(heldout_NHW, generator.family)
    tok = generator.tokenizer
    tok.train()
    optimizer = torch.optim.AdamW(tok.parameters(), lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.0)
    codebook = tok.quantize.embedding
    hits_V = torch.zeros(codebook.num_embeddings)
    order = rng.permutation(len(images_NHW))
    cursor, log, losses, restarted = 0, [], [], 0
    bar = tqdm(range(settings.steps), desc=f"{generator.family}-tokenizer", disable=not progress, file=sys.stderr, mininterval=2.0)
    for step in bar:
        if cursor + settings.batch_size > len(order):
            order, cursor = rng.permutation(len(images_NHW)), 0
        batch = mdata.testbed_views(images_NHW[order[cursor : cursor + settings.batch_size]], generator.family, view_gen)
        cursor += settings.batch_size
        lr = lr_at(step, settings.steps, settings.warmup_steps, settings.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss, mse, used, latent = _tokenizer_step(generator, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        hits_V[used] += 1
        if settings.restart_every and step % settings.restart_every == 0:
            # codes unused since the last restart (after step 0: all but the few the first batch hit)
            candidates = _restart_candidates(generator, latent)
            restarted += _restart_dead_codes(codebook, hits_V, candidates, restart_gen)
            hits_V.zero_()
        losses.append(float(mse))
        bar.set_postfix(mse=f"{float(mse):.4f}")
        if (step + 1) % settings.log_every == 0 or step + 1 == settings.steps:
            last = step + 1 == settings.steps  # the full held-out split at the end, its first 200 before
            heldout_mse, codes_used = reconstruction_mse(generator, heldout_N3HW if last else heldout_N3HW[:200])
            tok.train()
            log.append(
                {
                    "step": step + 1,
                    "lr": lr,
                    # in the tokenizer's own range: [-1, 1] for VAR's VQVAE (4x the [0, 1] value), [0, 1] for RAR's
                    "train_recon_mse": float(np.mean(losses[-settings.log_every :])),
                    "heldout_recon_mse_01": heldout_mse,
                    "heldout_codes_used": codes_used,
                    "codes_restarted_so_far": restarted,
                }
            )
    tok.eval()
    return {"steps": settings.steps, "log": log, "final": log[-1] if log else {}}


# ---------------------------------------------------------------------------------------------
# generators
# ---------------------------------------------------------------------------------------------


def _transformer_loss(
    generator: Generator,
    tokens_BL: torch.Tensor,
    labels_B: torch.Tensor,
    settings: GeneratorSettings,
    random_ratio: float,
    rng: torch.Generator,
) -> torch.Tensor:
    """Training cross-entropy of one batch, with label dropout (and RAR's random orders)."""
    transformer = generator.transformer
    if generator.family == "var":
        sizes = [pn * pn for pn in generator.config.patch_nums]
        with torch.no_grad():  # the teacher-forcing input of each scale: the upsampled sum of the coarser ones
            var_input = generator.tokenizer.idx_Bl_to_var_input(list(tokens_BL.split(sizes, dim=1)))
        logits_BLV = transformer(labels_B, var_input, label_dropout_p=settings.label_dropout, generator=rng)
        return F.cross_entropy(logits_BLV.reshape(-1, logits_BLV.shape[-1]), tokens_BL.reshape(-1))
    condition_B = transformer.preprocess_condition(labels_B, settings.label_dropout, rng)
    orders = transformer.sample_orders(len(labels_B), random_ratio, rng) if random_ratio > 0 else None
    logits, targets = transformer.forward(tokens_BL, condition_B, orders, return_labels=True)
    return ar_loss(logits, targets)


def heldout_loss(generator: Generator, tokens_NL: torch.Tensor, labels_N: torch.Tensor, batch_size: int = 250) -> float:
    """Mean teacher-forced cross-entropy per token (no label dropout, eval mode, restored)."""
    total = 0.0
    with eval_mode(generator.transformer), torch.no_grad():
        for tokens, labels in zip(tokens_NL.split(batch_size), labels_N.split(batch_size)):
            logits = generator.teacher_forced_logits(tokens, labels)
            total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens.reshape(-1), reduction="sum"))
    return total / tokens_NL.numel()


def _rar_random_ratio(step: int, total: int) -> float:
    """RAR's annealing: 1 for the first half of training, linearly to 0 at 3/4, then 0."""
    return float(np.clip(1.0 - (step / total - 0.5) / 0.25, 0.0, 1.0))


def train_transformer(
    generator: Generator,
    images_NHW: np.ndarray,
    labels_N: torch.Tensor,
    epoch_indices: np.ndarray,
    heldout_tokens: torch.Tensor,
    heldout_labels: torch.Tensor,
    settings: GeneratorSettings,
    seed: int,
    progress: bool = True,
) -> dict:
    """Train ``generator.transformer`` in place on views of ``images_NHW[epoch_indices]`` (uint8
    testbed images; shuffled every epoch with ``numpy.random.default_rng(seed)``; each
    presentation a fresh augmented view with probability ``settings.augment_prob``, else the
    centre view, tokenized by the frozen tokenizer); keeps the weights of the epoch with the
    lowest held-out loss. Returns the log."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch_rng = torch.Generator().manual_seed(seed)
    view_gen = torch.Generator().manual_seed(seed + 1)
    transformer = generator.transformer
    centre_tokens = tokenize(generator, mdata.testbed_views(images_NHW, generator.family))

    def batch_tokens(ids: np.ndarray) -> torch.Tensor:
        """The batch's token sequences: each an augmented view with probability ``augment_prob``."""
        tokens = centre_tokens[torch.as_tensor(ids)].clone()
        augmented = torch.rand(len(ids), generator=view_gen) < settings.augment_prob
        if augmented.any():
            views = mdata.testbed_views(images_NHW[ids[augmented.numpy()]], generator.family, view_gen)
            tokens[augmented] = tokenize(generator, views)
        return tokens

    steps_per_epoch = math.ceil(len(epoch_indices) / settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    warmup = max(1, round(settings.warmup_frac * total_steps))
    decay, no_decay = [], []
    for name, param in transformer.named_parameters():
        (decay if param.ndim >= 2 and "embed" not in name and "pos" not in name else no_decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
        betas=(0.9, 0.95),
    )
    log = [{"epoch": 0, "step": 0, "train_loss": None, "heldout_loss": heldout_loss(generator, heldout_tokens, heldout_labels)}]
    best = {"epoch": 0, "heldout_loss": log[0]["heldout_loss"], "state": copy.deepcopy(transformer.state_dict())}
    step, start = 0, time.time()
    bar = tqdm(total=total_steps, desc=MODEL_NAMES[generator.family], disable=not progress, file=sys.stderr, mininterval=2.0)
    for epoch in range(1, settings.epochs + 1):
        transformer.train()
        order = rng.permutation(epoch_indices)
        batch_losses = []
        for lo in range(0, len(order), settings.batch_size):
            if step >= total_steps:
                break
            ids = order[lo : lo + settings.batch_size]
            lr = lr_at(step, total_steps, warmup, settings.lr)
            for group in optimizer.param_groups:
                group["lr"] = lr
            ratio = _rar_random_ratio(step, total_steps) if settings.rar_random_order and generator.family == "rar" else 0.0
            loss = _transformer_loss(generator, batch_tokens(ids), labels_N[torch.as_tensor(ids)], settings, ratio, torch_rng)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
            optimizer.step()
            batch_losses.append(loss.detach().item())
            step += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{batch_losses[-1]:.3f}")
        if not batch_losses:
            break
        held = heldout_loss(generator, heldout_tokens, heldout_labels)
        log.append(
            {
                "epoch": epoch,
                "step": step,
                "lr": lr,
                "train_loss": float(np.mean(batch_losses)),
                "heldout_loss": held,
                "seconds": round(time.time() - start, 1),
            }
        )
        if progress:
            bar.write(f"epoch {epoch}: train loss {log[-1]['train_loss']:.4f}, held-out loss {held:.4f}", file=sys.stderr)
        if held < best["heldout_loss"]:
            best = {"epoch": epoch, "heldout_loss": held, "state": copy.deepcopy(transformer.state_dict())}
        elif epoch - best["epoch"] >= settings.patience:
            break
    bar.close()
    transformer.load_state_dict(best["state"])
    transformer.eval()
    return {
        "steps": step,
        "epochs_run": log[-1]["epoch"],
        "steps_per_epoch": steps_per_epoch,
        "kept_epoch": best["epoch"],
        "kept_heldout_loss": best["heldout_loss"],
        "stopping_rule": f"keep the epoch with the lowest held-out loss; stop after {settings.patience} epochs "
        f"without improvement or after {settings.epochs} epochs",
        "log": log,
    }


@torch.no_grad()
def count_reproduced(
    generator: Generator, tokens_NL: torch.Tensor, labels_N: torch.Tensor, n_prefix: int, batch_size: int = 100
) -> np.ndarray:
    """Per image: does greedy decoding from the true first ``n_prefix`` tokens reproduce at least
    90% of the remaining tokens? -> bool (N,)."""
    hits = []
    for tokens, labels in zip(tokens_NL.split(batch_size), labels_N.split(batch_size)):
        generated = generator.greedy_from_prefix(tokens, labels, n_prefix)
        match = (generated[:, n_prefix:] == tokens[:, n_prefix:]).float().mean(dim=1)
        hits.append((match >= MATCH_THRESHOLD).numpy())
    return np.concatenate(hits)


def memorization_check(
    generator: Generator, data: mdata.TestbedData, train_tokens: torch.Tensor, heldout_tokens: torch.Tensor, seed: int, n_others: int = 200
) -> dict:
    """Counts of reproduced images at the family's check prefix (and twice it for RAR), on centre
    views: per group of :meth:`TestbedData.groups` (control, then each duplication level), a
    seeded sample of the other training images, and as many held-out images."""
    rng = np.random.default_rng(seed)
    others = np.flatnonzero(~data.is_planted() & ~data.is_control())
    others = np.sort(rng.choice(others, size=min(n_others, len(others)), replace=False))
    heldout = np.sort(rng.choice(len(heldout_tokens), size=min(n_others, len(heldout_tokens)), replace=False))
    labels = torch.as_tensor(data.train_labels)
    held_labels = torch.as_tensor(data.heldout_labels)
    prefixes = [CHECK_PREFIX[generator.family]] + ([2 * CHECK_PREFIX["rar"]] if generator.family == "rar" else [])
    result = {"match_threshold": MATCH_THRESHOLD, "prefixes": {}}
    for n_prefix in prefixes:
        counts = {
            name: count_reproduced(generator, train_tokens[ids], labels[ids], n_prefix)
            for name, ids in {**data.groups(), "other_train": others}.items()
        }
        counts["heldout"] = count_reproduced(generator, heldout_tokens[heldout], held_labels[heldout], n_prefix)
        result["prefixes"][str(n_prefix)] = {name: f"{int(hit.sum())}/{len(hit)}" for name, hit in counts.items()}
    return result


# ---------------------------------------------------------------------------------------------
# stages
# ---------------------------------------------------------------------------------------------


def checkpoint_paths(out_dir: Path, family: str) -> tuple[Path, Path]:
    """(transformer weights, tokenizer weights) of a family's testbed model in ``out_dir``."""
    name = MODEL_NAMES[family]
    return Path(out_dir) / f"{name}.safetensors", Path(out_dir) / f"{name}-tokenizer.safetensors"


def _record(stage: str, config, settings, seed: int, data: mdata.TestbedData, wall: float, command: str | None) -> dict:
    return {
        "stage": stage,
        "model": MODEL_NAMES[config.family],
        "config": dataclasses.asdict(config),
        "settings": dataclasses.asdict(settings),
        "seed": seed,
        "data_file": data.path.name,
        "data_sha256": file_sha256(data.path),
        "train_images": int(len(data.train_labels)),
        "wall_seconds": round(wall, 1),
        "versions": library_versions(),
        "command": command,
    }


def run_tokenizer_stage(
    family: str,
    data: mdata.TestbedData,
    out_dir: Path,
    seed: int,
    settings: TokenizerSettings,
    config=None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Train the family's tokenizer and write ``<name>-tokenizer.safetensors`` + JSON; returns the record."""
    config = config if config is not None else get_config(MODEL_NAMES[family])
    start = time.time()
    generator = build_generator(config)
    result = train_tokenizer(generator, data.train_images, data.heldout_images, settings, seed, progress)
    record = {**_record(f"{family}-tokenizer", config, settings, seed, data, time.time() - start, command), **result}
    return save_checkpoint(generator.tokenizer, checkpoint_paths(out_dir, family)[1], record)


def run_generator_stage(
    family: str,
    data: mdata.TestbedData,
    out_dir: Path,
    seed: int,
    settings: GeneratorSettings,
    config=None,
    progress: bool = True,
    command: str | None = None,
) -> dict:
    """Train the transformer on views tokenized by the saved tokenizer, run the memorization
    check (on centre views) and write ``<name>.safetensors`` + JSON; returns the record."""
    config = config if config is not None else get_config(MODEL_NAMES[family])
    start = time.time()
    weights_path, tokenizer_path = checkpoint_paths(out_dir, family)
    generator = build_generator(config)
    load_strict(
        generator.tokenizer,
        generator.adapt_tokenizer_state_dict(read_state_dict(tokenizer_path)),
        source=str(tokenizer_path),
        config=config,
    )
    generator.tokenizer.eval()
    heldout_tokens = tokenize(generator, mdata.testbed_views(data.heldout_images, family))
    labels = torch.as_tensor(data.train_labels)
    result = train_transformer(
        generator,
        data.train_images,
        labels,
        mdata.training_indices(data),
        heldout_tokens,
        torch.as_tensor(data.heldout_labels),
        settings,
        seed,
        progress,
    )
    train_seconds = time.time() - start
    train_tokens = tokenize(generator, mdata.testbed_views(data.train_images, family))
    check = memorization_check(generator, data, train_tokens, heldout_tokens, seed)
    record = {
        **_record(family, config, settings, seed, data, train_seconds, command),
        **result,
        "tokenizer_file": tokenizer_path.name,
        "tokenizer_sha256": file_sha256(tokenizer_path),
        "memorization_check": check,
        "check_seconds": round(time.time() - start - train_seconds, 1),
    }
    return save_checkpoint(generator.transformer, weights_path, record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m memlib.train", description="Train the testbed tokenizers and generators (see module docstring)."
    )
    parser.add_argument("stage", choices=[*STAGES, "all"], help="what to train; 'all' runs the four stages in order")
    parser.add_argument("--out", type=Path, default=mdata.DATA_DIR / "checkpoints", help="checkpoint folder")
    parser.add_argument("--data", type=Path, default=None, help="testbed npz (default: data/fashion_mnist_testbed.npz)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: fastest on the shared 2-core machine)")
    parser.add_argument("--epochs", type=int, default=GeneratorSettings.epochs, help="maximum generator epochs")
    parser.add_argument("--patience", type=int, default=GeneratorSettings.patience)
    parser.add_argument("--tokenizer-steps", type=int, default=TokenizerSettings.steps)
    parser.add_argument("--rar-random-order", action="store_true", help="RAR's random-order annealing (off by default)")
    parser.add_argument("--augment-prob", type=float, default=GeneratorSettings.augment_prob,
                        help="chance that a training presentation is an augmented view (else the centre view)")
    parser.add_argument("--no-augment", action="store_true", help="train the tokenizer on centre views only")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    data = mdata.load_testbed(args.data)
    tokenizer_settings = TokenizerSettings(steps=args.tokenizer_steps, augment=not args.no_augment)
    if not 0.0 <= args.augment_prob <= 1.0:
        raise ValueError(f"--augment-prob: expected a probability in [0, 1], got {args.augment_prob}")
    generator_settings = GeneratorSettings(
        epochs=args.epochs, patience=args.patience, augment_prob=args.augment_prob, rar_random_order=args.rar_random_order
    )
    stages = STAGES if args.stage == "all" else (args.stage,)
    command = "python -m memlib.train " + " ".join(argv if argv is not None else sys.argv[1:])
    records = {}
    for stage in stages:
        family, _, part = stage.partition("-")
        start = time.time()
        if part == "tokenizer":
            records[stage] = run_tokenizer_stage(
                family, data, args.out, args.seed, tokenizer_settings, progress=not args.no_progress, command=command
            )
        else:
            records[stage] = run_generator_stage(
                family, data, args.out, args.seed, generator_settings, progress=not args.no_progress, command=command
            )
        summary = records[stage].get("memorization_check", records[stage].get("final"))
        print(f"{stage}: {time.time() - start:.0f} s -> {args.out}; {json.dumps(summary)}", flush=True)
    return records


if __name__ == "__main__":
    main()
