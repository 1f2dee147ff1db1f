# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Performance
#
# **Question: how much does measuring memorization cost, and does the code meet its
# performance targets?**
#
# ```{glue:md} lead
# :format: myst
# ```

# %% [markdown]
# This page runs nothing itself: it shows the latest results in `benchmarks/results.json`,
# written by the scripts in `benchmarks/` (`python benchmarks/run_all.py` and
# `python benchmarks/bench_book.py`; the README there describes each one). Every figure is the
# median of several timed runs, shown beside all runs, the machine it was measured on, the date,
# the load average of the machine at the time and OpenMP's wait policy. The scripts wait for a
# quiet machine and keep the user's environment: on two cores both matter (the README there
# gives the measured effect of each).
# Models marked "random weights" have the shape of the named model and untrained weights:
# their speed does not depend on the weights.
#
# ```{glue:md} rerun_box
# :format: myst
# ```

# %% tags=["parameters", "hide-input"]
params_file = "notebooks/params/testbed.yaml"  # the run's parameter file (named in the re-run box)
benchmark_results = "benchmarks/results.json"  # the file the benchmark scripts write

# %% tags=["hide-input"]
import json
import time
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import style
from memlib.config import make_config

started = time.time()
style.apply()

results_path = Path(make_config(benchmark_results=benchmark_results).book.benchmark_results)
entries = json.loads(results_path.read_text())["entries"]


def get(name):
    """The entry called ``name``, or None when it was never measured."""
    return entries.get(name)


def median(name):
    return entries[name]["median"]


def runs(name, digits=2):
    return ", ".join(f"{r:.{digits}f}" for r in entries[name]["runs"])


def verdict(entry):
    """'holds' or by how much the median misses its target."""
    t = entry["target"]
    if t["holds"]:
        return "holds"
    m, v = entry["median"], t["value"]
    return f"misses: {m:.3g} against {t['op']} {v:g} ({abs(m - v) / v:.0%} short)" if t["op"] == ">=" else \
        f"misses: {m:.3g} against {t['op']} {v:g} ({m - v:.3g} {entry['unit']} over)"


def target_sentences(named):
    """One sentence per (what, entry) pair: the entry's median, its target and :func:`verdict`."""
    return " ".join(f"{what}: median {e['median']:.{0 if e['unit'] == 's' else 2}f} {e['unit']}, "
                    f"target {e['target']['text']}: **{verdict(e)}**." for what, e in named)


def measured_on(names):
    """One line: machine, dates and load averages of the given entries."""
    ctxs = [entries[n]["context"] for n in names if n in entries]
    m = ctxs[0]["machine"]
    dates = sorted(c["date"][:16].replace("T", " ") for c in ctxs)
    loads = [c["load_average"][0] for c in ctxs]
    when = dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}"
    commits = ", ".join(sorted({f"`{c['git_commit'][:12]}{'+dirty' * c['git_commit'].endswith('+dirty')}`" for c in ctxs}))
    return (f"*Measured on {m['cpu']} ({m['logical_cores']} cores, torch {m['torch']}, {m['torch_threads']} "
            f"threads, OpenMP wait policy {m.get('omp_wait_policy', 'default')}), {when} UTC, 1-minute load "
            f"average {min(loads):.1f} to {max(loads):.1f}, commit {commits}.*")


# %% [markdown]
# ## Capture overhead
#
# UnitMem collection runs the teacher-forced forward with a hook on every fc1 that reduces the
# activation to per-image means inside the hook. On the same batches of synthetic images the
# benchmark times tokenization, the bare forward, the forward with collection's hooks, and
# `accumulate_unitmem` end to end. The target: collection keeps at least 0.9 of the throughput
# of the same work without capture, (tokenize + forward) / collect.

# %% tags=["hide-input"]
capture_models = [m for m in ("var-testbed", "rar-testbed", "var-d16") if get(f"capture/{m}/ratio")]
capture_table = pd.DataFrame(
    {
        "weights": [entries[f"capture/{m}/ratio"]["settings"]["weights"] for m in capture_models],
        "tokenize + forward (images/s)": [
            1 / (1 / median(f"capture/{m}/tokenize") + 1 / median(f"capture/{m}/forward")) for m in capture_models
        ],
        "collect (images/s)": [median(f"capture/{m}/collect") for m in capture_models],
        "ratio (median)": [median(f"capture/{m}/ratio") for m in capture_models],
        "ratio (all runs)": [runs(f"capture/{m}/ratio") for m in capture_models],
        "forward only: hooked / bare": [median(f"capture/{m}/forward_ratio") for m in capture_models],
        "target >= 0.9": [verdict(get(f"capture/{m}/ratio")) for m in capture_models],
    },
    index=pd.Index(capture_models, name="model"),
)
display(style.scroll_table(capture_table.style.format(precision=2)))
display(Markdown(measured_on([f"capture/{m}/ratio" for m in capture_models])))
capture_target = entries[f"capture/{capture_models[0]}/ratio"]["target"]["value"]
capture_runs = {m: entries[f"capture/{m}/ratio"]["runs"] for m in capture_models}
straddling = [
    f"{m} (runs {min(r):.2f} to {max(r):.2f})" for m, r in capture_runs.items() if min(r) < capture_target <= max(r)
]
if straddling:
    display(Markdown(
        f"Single runs fall on both sides of {capture_target:g} for " + ", ".join(straddling) + ": at this margin the "
        "verdict rests on the median, and a repeat of the benchmark on this machine can land on either side."
    ))

# %% [markdown]
# The column "forward only" isolates the forward pass (tokens computed beforehand): the hook's
# own work against the bare forward. The hook reads the GELU module's output (no recomputed
# nonlinearity), copies its absolute value into a reused buffer a few rows at a time (so the
# copy is still in cache when it is averaged) and takes every position group's mean with one
# matrix product. That is a fixed number of passes per fc1 output element, while the
# forward's matrix products cost in proportion to the model's width per element; so the
# hook's relative cost shrinks as models get wider, and is largest for the narrow testbed
# models.
#
# ## Memory: streaming against dense
#
# Peak resident memory of one collection over N synthetic images, each in a fresh process,
# above the process's state before collection. Streaming keeps three numbers per unit
# (`UnitMemAccumulator`); the dense approach keeps every per-image mean and computes UnitMem
# from the full (N, units) table (what the median variant needs).

# %% tags=["hide-input"]
stream_n = sorted(int(k.rsplit("/", 1)[1]) for k in entries if k.startswith("memory/stream/"))
dense_n = sorted(int(k.rsplit("/", 1)[1]) for k in entries if k.startswith("memory/dense/"))
all_n = sorted(set(stream_n) | set(dense_n))
memory_table = pd.DataFrame(
    {
        "streaming peak (MiB)": [median(f"memory/stream/{n}") if n in stream_n else None for n in all_n],
        "streaming runs": [runs(f"memory/stream/{n}", 1) if n in stream_n else "" for n in all_n],
        "dense peak (MiB)": [median(f"memory/dense/{n}") if n in dense_n else None for n in all_n],
        "dense runs": [runs(f"memory/dense/{n}", 1) if n in dense_n else "not measured" for n in all_n],
        "dense per-image means alone (MiB, computed)": [median(f"memory/dense_storage/{n}") for n in all_n],
    },
    index=pd.Index(all_n, name="N images"),
)
display(style.scroll_table(memory_table.style.format(precision=1, na_rep="-")))
growth = get("memory/stream_growth")
mem_settings = entries[f"memory/stream/{stream_n[0]}"]["settings"]
G, K, U = mem_settings["unit_grid_GKU"]
display(Markdown(
    f"Model: `{mem_settings['model']}` ({mem_settings['weights']}), {G} position groups x {K} blocks x {U} units, "
    f"batches of {mem_settings['batch_size']} images. The accumulator's state is "
    f"{median('memory/accumulator_state') * 1024:.0f} KiB for any N. From N = {growth['settings']['from_n']} "
    f"to N = {growth['settings']['to_n']} the streaming peak changes by {growth['median']:+.1f} MiB: "
    f"target (at most {growth['target']['value']:g} MiB) **{verdict(growth)}**."
))
display(Markdown(measured_on([f"memory/stream/{n}" for n in stream_n] + [f"memory/dense/{n}" for n in dense_n])))

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.5, 3.8))
ax.plot(stream_n, [median(f"memory/stream/{n}") for n in stream_n], "o-", label="streaming (measured)",
        color=style.OKABE_ITO["bluish green"])
ax.plot(dense_n, [median(f"memory/dense/{n}") for n in dense_n], "s-", label="dense (measured)",
        color=style.OKABE_ITO["reddish purple"])
ax.plot(all_n, [median(f"memory/dense_storage/{n}") for n in all_n], "k:", label="dense: per-image means alone (computed)")
ax.set_xscale("log")
ax.set_yscale("log")
ax.set_xlabel("images N")
ax.set_ylabel("peak memory above start (MiB)")
ax.set_title("UnitMem collection: peak memory")
ax.legend(frameon=False, fontsize=10)
fig.tight_layout()
glue("fig_memory", fig, display=False)
plt.close(fig)
memory_alt = style.alt_text(
    "Log-log line plot", "the peak memory of UnitMem collection against the number of images, streaming and dense",
    f"streaming stays between {min(median(f'memory/stream/{n}') for n in stream_n):.0f} and "
    f"{max(median(f'memory/stream/{n}') for n in stream_n):.0f} MiB from N = {stream_n[0]} to {stream_n[-1]}")

# %% [markdown]
# The figure of this section is the one at the top of the page.
#
# ## Generation: KV cache against full recomputation
#
# Tokens per second of class-conditional sampling with the family's guidance (two transformer
# rows per image), with the KV cache and with the whole sequence recomputed at every step. The
# target, a speed-up of at least 3 at 256 tokens, applies to the 255- and 256-token cases.
# "positions ratio" is how many more transformer positions recomputation processes: the
# speed-up the cache would give if time were proportional to positions.

# %% tags=["hide-input"]
gen_cases = [k.split("/")[1] for k in entries if k.startswith("generation/") and k.endswith("/speedup")]
gen_table = pd.DataFrame(
    {
        "tokens": [entries[f"generation/{c}/speedup"]["settings"]["tokens_per_image"] for c in gen_cases],
        "weights": [entries[f"generation/{c}/speedup"]["settings"]["weights"] for c in gen_cases],
        "KV cache (tokens/s)": [median(f"generation/{c}/kv_cache") for c in gen_cases],
        "recompute (tokens/s)": [median(f"generation/{c}/recompute") for c in gen_cases],
        "speed-up (median)": [median(f"generation/{c}/speedup") for c in gen_cases],
        "speed-up (all runs)": [runs(f"generation/{c}/speedup") for c in gen_cases],
        "positions ratio": [entries[f"generation/{c}/speedup"]["token_forward_ratio"] for c in gen_cases],
        "target >= 3 at 256 tokens": [
            verdict(entries[f"generation/{c}/speedup"]) if "target" in entries[f"generation/{c}/speedup"] else "-"
            for c in gen_cases
        ],
    },
    index=pd.Index(gen_cases, name="case"),
)
display(style.scroll_table(gen_table.style.format(precision=1)))
notes = [f"- `{c}`: recompute time {entries[f'generation/{c}/speedup']['settings']['recompute']}."
         for c in gen_cases if "recompute" in entries[f"generation/{c}/speedup"]["settings"]]
checks = [c for c in gen_cases if "estimate_error" in entries[f"generation/{c}/speedup"]]
notes += [f"- `{c}`: the same estimate differs from the measured recompute time by "
          f"{entries[f'generation/{c}/speedup']['estimate_error']:+.0%}." for c in checks]
if notes:
    display(Markdown("\n".join(notes)))
display(Markdown(measured_on([f"generation/{c}/speedup" for c in gen_cases])))

# %% tags=["hide-input"]
fig, ax = plt.subplots(figsize=(6.5, 3.6))
colors = [style.FAMILY_COLORS["var" if c.startswith("var") else "rar"] for c in gen_cases]
ax.bar(gen_cases, gen_table["speed-up (median)"], color=colors)
ax.axhline(3, color="k", linestyle=":", label="target at 256 tokens: 3x")
ax.set_yscale("log")
ax.set_ylabel("KV cache speed-up (x)")
ax.set_title("Generation: recompute time / KV-cached time (blue: VAR, orange: RAR)")
ax.tick_params(axis="x", labelrotation=30)
ax.legend(frameon=False, fontsize=10)
fig.tight_layout()
style.show(fig, style.alt_text(
    "Bar chart, log scale", "the KV-cache speed-up of generation for each case, VAR in blue and RAR in orange, with a "
    "dotted line at the target of 3", ", ".join(f"{c}: {x:.1f}x" for c, x in gen_table["speed-up (median)"].items())))

# %% [markdown]
# VAR predicts a whole scale per step, one step per scale, so recomputation only repeats the
# coarser scales: it processes only a few times more positions than the cached run (the
# positions ratio above), and the speed-up cannot exceed that ratio by much at any model size.
# RAR predicts one token per step, so recomputation grows quadratically with the sequence
# length; where its speed-up stays far below the positions ratio, fixed per-step costs
# (Python, small kernels, sampling, and on CPU reading all weights once per step) dominate the
# cached steps.
#
# ## Building the book
#
# Wall time of `make book` after `make clean` (cold), right after a build (warm) and cold beside
# two processes that keep a core busy each (busy), and each notebook's papermill time in those
# builds, from `python benchmarks/bench_book.py --busy 2`. The targets: a cold build within 20
# minutes on this 2-core machine, and at most 3x that beside the busy processes.

# %% tags=["hide-input"]
book_states = [s for s in ("cold", "warm", "busy") if get(f"book/make_book/{s}")]
if not book_states:
    display(Markdown("**Not measured yet**: run `python benchmarks/bench_book.py` (it rebuilds the book several times)."))
else:
    book_targets = [(what, get(name)) for what, name in [("cold build", "book/make_book/cold"),
                                                          ("busy / idle", "book/make_book/busy-ratio")]
                    if get(name) and "target" in get(name)]
    if book_targets:
        display(Markdown(target_sentences(book_targets)))
    rows = {f"make book ({s})": entries[f"book/make_book/{s}"] for s in book_states}
    rows.update({
        f"notebook {k.split('/')[2]} ({k.split('/')[3]})": v for k, v in entries.items() if k.startswith("book/notebook/")
    })
    display(pd.DataFrame(
        {"seconds (median)": [e["median"] for e in rows.values()],
         "all runs": [", ".join(f"{r:.1f}" for r in e["runs"]) for e in rows.values()]},
        index=pd.Index(list(rows), name="what"),
    ).style.format(precision=1))
    display(Markdown(measured_on([f"book/make_book/{s}" for s in book_states])))

# %% [markdown]
# ## Running the tests
#
# Wall time of `make test` (the suite on its two pytest-xdist workers, with the virtual
# environment already installed) on a quiet machine and beside two processes that keep a core
# busy each, from `python benchmarks/bench_tests.py --busy 2`. The target: within 15 minutes
# on this 2-core machine, busy or not.

# %% tags=["hide-input"]
test_states = [s for s in ("idle", "busy") if get(f"tests/make_test/{s}")]
if not test_states:
    display(Markdown("**Not measured yet**: run `python benchmarks/bench_tests.py` (it runs `make test` twice)."))
else:
    display(Markdown(target_sentences((f"make test ({s})", get(f"tests/make_test/{s}")) for s in test_states)))
    single = [s for s in test_states if get(f"tests/make_test/{s}")["n_runs"] < 2]
    if single:  # one run has no spread: say how close to the target it came
        display(Markdown(f"{' and '.join(single).capitalize()}: one run each, so the run-to-run spread is not "
                         "measured; margins to the target: " + ", ".join(
                             f"{s} {get(f'tests/make_test/{s}')['target']['value'] - median(f'tests/make_test/{s}'):.0f} s under it"
                             for s in single) + "."))
    display(Markdown(measured_on([f"tests/make_test/{s}" for s in test_states])))

# %% [markdown]
# ## The attack's stage A at scale
#
# Stage A over an ImageNet-layout folder of small synthetic JPEGs at two sizes, each in a fresh
# process, from `python benchmarks/bench_stage_a.py`: the stage as the attack runs it (list,
# decode in DataLoader workers, tokenize, score, keep the top candidates per class, shards),
# decoding alone and the forward alone. Its peak memory should not grow with N, and its wall time
# should be close to the larger of decoding and forward alone (their sum: no overlap).

# %% tags=["hide-input"]
stage_a_n = sorted(int(k.split("/")[2]) for k in entries if k.startswith("stage_a/stage_a/"))
if not stage_a_n:
    display(Markdown("**Not measured yet**: run `python benchmarks/bench_stage_a.py`."))
else:
    display(pd.DataFrame(
        {
            "stage A (s)": [median(f"stage_a/stage_a/{n}/seconds") for n in stage_a_n],
            "decoding alone (s)": [median(f"stage_a/decode/{n}/seconds") for n in stage_a_n],
            "forward alone (s)": [median(f"stage_a/forward/{n}/seconds") for n in stage_a_n],
            "stage A / larger": [median(f"stage_a/overlap/{n}") for n in stage_a_n],
            "stage A peak RSS (MiB)": [entries[f"stage_a/stage_a/{n}/seconds"]["peak_rss_mib"][0] for n in stage_a_n],
        },
        index=pd.Index(stage_a_n, name="N images"),
    ).style.format(precision=2))
    stage_a_growth = get("stage_a/memory_growth")
    stage_a_settings = entries[f"stage_a/stage_a/{stage_a_n[0]}/seconds"]["settings"]
    stage_a_overrides = stage_a_settings.get("model_overrides", {})
    display(Markdown(
        f"Model: `{stage_a_settings['model']}` reduced by `model_overrides` to {stage_a_overrides.get('depth', '?')} blocks at "
        f"{stage_a_overrides.get('resolution', '?')} x {stage_a_overrides.get('resolution', '?')} pixels "
        f"({stage_a_settings['weights']}), batches of {stage_a_settings['batch_size']}, "
        f"{stage_a_settings['num_workers']} decoding worker(s), {stage_a_settings['classes']} classes. Peak RSS from "
        f"N = {stage_a_growth['settings']['from_n']} to {stage_a_growth['settings']['to_n']}: {stage_a_growth['median']:+.1%} "
        f"(target at most {stage_a_growth['target']['value']:.0%}): **{verdict(stage_a_growth)}**. Overlap at the largest N: "
        f"**{verdict(entries[f'stage_a/overlap/{stage_a_n[-1]}'])}**."))
    display(Markdown(measured_on([f"stage_a/{v}/{n}/seconds" for v in ("stage_a", "decode", "forward") for n in stage_a_n])))

# %% [markdown]
# ## bf16 against fp32
#
# On a GPU the transformer runs under bf16 autocast (`amp: auto`). `python benchmarks/bench_bf16.py`
# computes, on the testbed models (CPU), the paper's top-k% UnitMem units and the stage-A
# candidates with and without autocast: the share of the fp32 choice that bf16 keeps. A full-scale
# run should measure its own model (book/full-scale.md).

# %% tags=["hide-input"]
bf16_models = sorted({k.split("/")[1] for k in entries if k.startswith("bf16/")})
if not bf16_models:
    display(Markdown("**Not measured yet**: run `python benchmarks/bench_bf16.py`."))
else:
    display(pd.DataFrame(
        {
            "top-k% units kept": [median(f"bf16/{m}/topk_agreement") for m in bf16_models],
            "k (%)": [entries[f"bf16/{m}/topk_agreement"]["settings"]["k_percent"] for m in bf16_models],
            "stage-A candidates kept": [median(f"bf16/{m}/candidate_agreement") for m in bf16_models],
            "largest score change": [entries[f"bf16/{m}/candidate_agreement"]["score_max_abs_diff"] for m in bf16_models],
        },
        index=pd.Index(bf16_models, name="model"),
    ).style.format(precision=3))
    display(Markdown(measured_on([f"bf16/{m}/{w}" for m in bf16_models for w in ("topk_agreement", "candidate_agreement")])))

# %% [markdown]
# ## On a GPU
#
# `benchmarks/gpu_check.py` measures var-d16- and rar-b-shaped models in bf16 on one CUDA
# device: images per second for UnitMem collection and for generation, and the fraction of the
# GPU's bf16 peak that the teacher-forced forward reaches.

# %% tags=["hide-input"]
gpu_status = get("gpu/status")
if gpu_status is None:
    display(Markdown("**Not measured yet**: run `python benchmarks/gpu_check.py` on a machine with a GPU."))
elif gpu_status["status"] == "not measured":
    m = gpu_status["context"]["machine"]
    display(Markdown(f"**Not measured: {gpu_status['reason']}** (gpu_check.py on {m['cpu']}, "
                     f"{gpu_status['context']['date'][:10]})."))
else:
    gpu_models = sorted({k.split("/")[1] for k in entries if k.startswith("gpu/") and k != "gpu/status"})
    display(pd.DataFrame(
        {
            "collect (images/s)": [median(f"gpu/{m}/collect") for m in gpu_models],
            "generate (images/s)": [median(f"gpu/{m}/generate") for m in gpu_models],
            "forward (TFLOP/s)": [median(f"gpu/{m}/forward_tflops") for m in gpu_models],
            "forward, fraction of bf16 peak": [
                median(f"gpu/{m}/forward_peak_fraction") if get(f"gpu/{m}/forward_peak_fraction") else None
                for m in gpu_models
            ],
        },
        index=pd.Index(gpu_models, name="model"),
    ).style.format(precision=2, na_rep="peak unknown"))
    display(Markdown(f"*Measured on {gpu_status['context']['machine']['gpu']}, {gpu_status['context']['date'][:10]}.*"))

# %% [markdown]
# ## Summary
#
# Every target with its latest median:

# %% tags=["hide-input"]
def why(name, entry):
    """Why a target is missed, from the measurements themselves ('' when it holds)."""
    if entry["target"]["holds"]:
        return ""
    kind, case = name.split("/")[:2]
    if kind == "capture":
        seconds = {part: 1 / median(f"capture/{case}/{part}") for part in ("tokenize", "forward", "hooked", "collect")}
        bare = seconds["tokenize"] + seconds["forward"]
        hooks = (seconds["hooked"] - seconds["forward"]) / bare
        rest = (seconds["collect"] - seconds["tokenize"] - seconds["hooked"]) / bare
        return (f"per image, the hooks (|.| and group means of every fc1 activation) add {hooks:.0%} of the "
                f"uncaptured work and the rest of collection (views, per-image means, accumulator) "
                f"{rest:.0%}, at this width")
    if kind == "generation" and case.startswith("var"):
        return (f"VAR decodes one scale per step, so recomputation processes only {entry['token_forward_ratio']:.1f}x "
                f"the positions of the cached run: a bound of the method, not of the cache")
    if kind == "generation":
        return (f"fixed per-step costs dominate the cached steps (recomputation processes "
                f"{entry['token_forward_ratio']:.0f}x the positions)")
    if kind == "stage_a" and case == "memory_growth":
        return "see the attack's stage A at scale"
    if kind == "stage_a":
        seconds = entry["settings"]["seconds"]
        return (f"stage A {seconds['stage_a']:.0f} s against decoding {seconds['decode']:.0f} s and forward "
                f"{seconds['forward']:.0f} s alone at N = {name.split('/')[2]}: decoding and the forward share the cores")
    return f"the streaming peak grew by {entry['median']:.1f} MiB; see Memory"


targets = {k: v for k, v in entries.items() if "target" in v}
summary = pd.DataFrame(
    {
        "target": [v["target"]["text"] for v in targets.values()],
        "median": [f"{v['median']:.3g} {v['unit']}" for v in targets.values()],
        "verdict": [verdict(v) for v in targets.values()],
        "why it misses": [why(k, v) for k, v in targets.items()],
    },
    index=pd.Index(list(targets), name="figure"),
)
display(style.scroll_table(summary.style.set_properties(**{"text-align": "left"})))
held = [name for name, entry in targets.items() if entry["target"]["holds"]]
missed = [f"{name} ({verdict(entry)})" for name, entry in targets.items() if not entry["target"]["holds"]]
glue("lead", Markdown(
    style.figure_md("fig_memory", memory_alt, "Peak memory of UnitMem collection against the number of images, "
                    "streaming against dense (log-log).", "fig-performance-memory") + "\n"
    + f"**{len(held)} of the {len(targets)} performance targets hold** (medians of the latest runs)"
    + (": missed are " + "; ".join(missed) if missed else "") + ". The table at the end of the page says why."),
    display=False)

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", Markdown(_style.rerun_box("performance", params_file, None)), display=False)
