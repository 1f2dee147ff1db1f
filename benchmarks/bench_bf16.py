"""How far bf16 autocast (the default on CUDA, ``amp: auto``) moves the results from fp32.

    python benchmarks/bench_bf16.py [--unitmem-images 120] [--attack-images 1000]

On the trained testbed models (CPU; bf16 autocast on the CPU runs the same bf16 matrix products
that it runs on a GPU, though the kernels differ, so this measures the testbed's sensitivity, not a
GPU run's), each computed twice, with ``amp`` false and true, exactly as the stages call them:

- ``bf16/<model>/topk_agreement``: UnitMem (``memlib.collect.accumulate_unitmem``, the family's
  views, on the testbed D' of ``--unitmem-images``): the share of the paper's top-k% units of the
  fp32 ranking (``memlib.intervene.select_units``, the family's selection score; VAR 10%, RAR 5%)
  that the bf16 ranking also selects;
- ``bf16/<model>/candidate_agreement``: the attack's stage A (tokenize in fp32, then
  ``memlib.extract.score_images`` under autocast, as ``memlib.stages.stage_a``) on the first
  ``--attack-images`` training images, then stage B (``select_candidates``, 10 per class): the share
  of the fp32 candidates that bf16 also selects; ``score_max_abs_diff`` beside it.

A full-scale run should measure the same on its own model (book/full-scale.md says so): the
agreement depends on the model and its scores' margins.
"""

from __future__ import annotations

import argparse

import torch

import common

PER_CLASS = 10
BATCH_SIZE = 64


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """|a ∩ b| / |a| of two sets of ids (rows of units or image indices)."""
    rows = lambda t: {tuple(r) if t.ndim > 1 else int(r) for r in t.tolist()}  # noqa: E731
    return len(rows(a) & rows(b)) / max(1, len(rows(a)))


def unitmem_topk(gen, images, dprime, n_views: int, amp: bool, k_percent: float) -> torch.Tensor:
    from memlib.collect import UnitMemResult, accumulate_unitmem, collection_groups
    from memlib.intervene import select_units

    acc = accumulate_unitmem(gen, images.dataset, dprime.tolist(), n_views=n_views, views=images.views,
                             batch_size=BATCH_SIZE, seed=0, amp=amp)
    result = UnitMemResult(acc.state_dict(), [g.name for g in collection_groups(gen)], list(gen.fc1_names()), gen.family)
    return select_units(result.selection_scores(), k_percent)


def stage_a_candidates(gen, tokens_NL, labels_N, amp: bool) -> tuple[torch.Tensor, torch.Tensor]:
    from memlib.extract import score_images, select_candidates

    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        scores_N = score_images(gen, tokens_NL, labels_N, batch_size=BATCH_SIZE)
    return scores_N, select_candidates(scores_N, labels_N, per_class=PER_CLASS)


def main(argv=None) -> None:
    from types import SimpleNamespace

    from PIL import Image

    from memlib import data
    from memlib.config import paper_k_percent

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--unitmem-images", type=int, default=120)
    parser.add_argument("--n-views", type=int, default=2)
    parser.add_argument("--attack-images", type=int, default=1000)
    args = parser.parse_args(argv)
    common.setup_torch()
    testbed = data.load_testbed()
    entries = []
    for name in ("var-testbed", "rar-testbed"):
        gen, weights = common.testbed_generator(name)
        k = paper_k_percent(gen.family)
        ctx = common.context()
        images = SimpleNamespace(dataset=torch.utils.data.TensorDataset(torch.as_tensor(testbed.train_images),
                                                                         torch.as_tensor(testbed.train_labels)),
                                 views=lambda image, n, g, family=gen.family, res=gen.image_size: data.family_views(
                                     Image.fromarray(image.numpy(), mode="L"), family, res, n, g))
        dprime = data.testbed_dprime(testbed, args.unitmem_images, seed=0)
        fp32, bf16 = (unitmem_topk(gen, images, dprime, args.n_views, amp, k) for amp in (False, True))
        settings = {"model": name, "weights": weights, "dprime_images": len(dprime), "n_views": args.n_views,
                    "k_percent": k, "selection": "the family's default", "device": "cpu"}
        entries.append(common.entry(
            f"bf16/{name}/topk_agreement", [agreement(fp32, bf16)], "fraction",
            f"share of fp32's top {k:g}% UnitMem units that bf16 autocast also selects", settings=settings, ctx=ctx,
            units=len(fp32)))
        views_N3HW = data.testbed_views(testbed.train_images[: args.attack_images], gen.family)
        labels_N = torch.as_tensor(testbed.train_labels[: args.attack_images])
        with torch.no_grad():
            tokens_NL = torch.cat([gen.images_to_tokens(views_N3HW[i : i + BATCH_SIZE])
                                   for i in range(0, len(views_N3HW), BATCH_SIZE)])
        (s32, c32), (s16, c16) = (stage_a_candidates(gen, tokens_NL, labels_N, amp) for amp in (False, True))
        entries.append(common.entry(
            f"bf16/{name}/candidate_agreement", [agreement(c32, c16)], "fraction",
            f"share of fp32's stage-A candidates ({PER_CLASS} per class) that bf16 autocast also selects",
            settings={"model": name, "weights": weights, "images": len(labels_N), "per_class": PER_CLASS,
                      "score_span": "the whole sequence", "device": "cpu"},
            ctx=common.context(), candidates=len(c32), score_max_abs_diff=float((s32 - s16).abs().max()),
            scores_changed=int((s32 != s16).sum())))
        print(f"[bf16] {name}: top-{k:g}% agreement {entries[-2]['median']:.3f}, "
              f"candidate agreement {entries[-1]['median']:.3f}", flush=True)
    common.write_entries(entries, replace_prefix="bf16/")


if __name__ == "__main__":
    main()
