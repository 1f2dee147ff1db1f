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
# # The paper's numbers beside this run's
#
# **Question: which of the paper's findings does this run reproduce, and which of its numbers can be
# compared at all?**
#
# The table of the paper's numbers is read from `book/paper_numbers.yaml`, one data file labelled
# as the paper's {cite:p}`kasliwal2025localizing`; nothing on this page is typed by hand. This run's
# numbers are read from the summary files the other pages of this run wrote
# ({doc}`unitmem-var`, {doc}`unitmem-rar`, {doc}`extraction`, {doc}`mitigation`, {doc}`tradeoff`),
# after checking that they were written with this page's parameters. The cell below holds the
# parameters; papermill replaces them.

# %% tags=["parameters"]
# -- the run
seed = 0                         # seeds every random choice (the random units use random_seeds)
device = "auto"                  # "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"
results_dir = "results/testbed"  # result files, figures and summaries (git-ignored)
batch_size = 64                  # rows per forward pass
shard_size = 256                 # images or candidates per resumable shard
amp = "auto"                     # bf16 autocast: "auto" (on CUDA only), true or false
# -- the model: "" is the testbed pair (var-testbed, rar-testbed) with the shipped checkpoints
model = ""                       # a name of memlib's model registry, e.g. "var-d30"
model_overrides = {}             # config fields to replace (testing only)
checkpoint = ""                  # the transformer's weights file (full scale)
tokenizer_checkpoint = ""        # the tokenizer's weights file (full scale)
# -- the images
dataset = "testbed"              # "testbed" or "imagenet"
testbed_file = ""                # "": data/fashion_mnist_testbed.npz
imagenet_train_dir = ""          # ImageNet-1k train folder (dataset "imagenet")
strict_images = False            # an unreadable ImageNet file: error (true) or skipped (false)
unitmem_fraction = 0.01          # share of every ImageNet class in D' (the paper: 1%)
max_images = 0                   # use only the first N training images (0: all)
# -- UnitMem (as in the UnitMem pages)
n_views = 1                      # views per image (testbed: 1, its views are the image itself)
activation = "post"              # "post": |GELU(fc1)|, "pre": |fc1|
unitmem_pooled = False           # also collect the activation pooled over all positions
selection = "default"            # ranking score: VAR "mean"/"max"/"pooled", RAR "last"/"all"
# -- the attack (as in the extraction page)
similarity = "pixel"             # "pixel" (testbed) or "sscd" (the paper)
sscd_torchscript = ""            # sscd_disc_mixup.torchscript.pt (similarity "sscd")
threshold = 0.99                 # extracted when similarity > threshold (the paper, SSCD: 0.75)
prefix_lengths = [0, 1, 5, 8]     # prefix lengths in tokens; each model uses those it accepts
per_class = 10                   # candidates per class (the paper: 5)
score_span = None                # stage A positions [start, stop]; None: the whole sequence
# -- the intervention sweep
k_percent = None                 # the k% the mitigation page reported; None: the paper's (VAR 10%, RAR 5%)
k_percents = [0, 1, 5, 10, 20]  # every k% the sweep edits (0: the unedited model)
sweep_modes = ["unitmem-half", "random-half", "unitmem-zero"]  # how units are chosen and scaled
random_seeds = [0, 1, 2]         # seeds of the random-unit control (at least 3)
sweep_fid = True                 # measure FID (testbed: "testbed FID") for every sweep row
# -- FID
fid_feature = "testbed"          # "testbed" (the testbed classifier) or "inception"
fid_samples_per_class = 20       # class-conditional samples per class (the paper: 50)
inception_torchscript = ""       # clean-fid's inception-2015-12-05.pt (fid_feature "inception")
fid_reference_npz = ""           # reference statistics (full scale: the ADM ImageNet 256 batch)
classifier_checkpoint = "data/checkpoints/classifier.safetensors"  # the testbed FID's classifier
sampling_kwargs = {}             # Generator.sample keywords for FID ({}: the family's defaults)

# %%
import json
import math
import time
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import cli
from memlib.params import REPO_ROOT, SPECS, paper_k_percent, paper_numbers, run_models
from memlib.results import atomic_write_json, provenance, read_json, to_jsonable

given = {key: value for key, value in globals().items() if key in SPECS}
started = time.time()
PAPER_FILE = REPO_ROOT / "book" / "paper_numbers.yaml"
PAPER = paper_numbers()

# %% [markdown]
# ## The run's models
#
# The parameters are checked first (`memlib.params`): a bad value stops the notebook with a message
# naming the parameter. An empty `model` means the testbed pair `var-testbed` and `rar-testbed`; a
# full-scale run names one model.

# %% tags=["hide-input"]
models = run_models(given, "sweep", filter_prefixes=True)
runs = {family: cli.make_run(params, Path(params["results_dir"])) for family, params in models.items()}
k_report = {family: float(k_percent if k_percent is not None else paper_k_percent(family)) for family in runs}

# %% [markdown]
# ## This run's result files
#
# Each page of the run wrote a `summary-<page>.json` with its numbers and the parameters that
# produced them. A summary written with other parameters (an earlier run, or the page not run yet)
# stops this page with a message naming the page and the parameter that differs.

# %%
MODEL_KEYS = ["model", "model_overrides", "checkpoint", "tokenizer_checkpoint", "dataset", "testbed_file",
              "imagenet_train_dir", "strict_images", "max_images", "seed"]
UNITMEM_KEYS = MODEL_KEYS + ["unitmem_fraction", "n_views", "activation", "unitmem_pooled", "selection"]
ATTACK_KEYS = MODEL_KEYS + ["similarity", "sscd_torchscript", "threshold", "prefix_lengths", "per_class", "score_span"]
SWEEP_KEYS = sorted(set(UNITMEM_KEYS + ATTACK_KEYS) | {"k_percents", "sweep_modes", "random_seeds", "sweep_fid",
                                                        "fid_feature", "fid_samples_per_class", "inception_torchscript",
                                                        "fid_reference_npz", "classifier_checkpoint", "sampling_kwargs"})
PAGES = {"var": {"unitmem-var": UNITMEM_KEYS}, "rar": {"unitmem-rar": UNITMEM_KEYS}}
COMMON_PAGES = {"extraction": ATTACK_KEYS, "mitigation": SWEEP_KEYS, "tradeoff": SWEEP_KEYS}


def read_summary(run, page: str, keys: list[str]) -> dict:
    """The numbers of ``summary-<page>.json`` in the model's results folder, after checking that
    the page ran with this page's values of ``keys``."""
    path = run.out / f"summary-{page}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the page '{page}' with these parameters first "
                                f"(scripts/run_notebooks.py runs every page in book order)")
    record = read_json(path)
    mine = to_jsonable(run.params)
    differ = [key for key in keys if record["params"].get(key) != mine.get(key)]
    if differ:
        key = differ[0]
        raise ValueError(f"{path} was written with {key} = {record['params'].get(key)!r}, this page has "
                         f"{mine.get(key)!r}: run the page '{page}' again with these parameters")
    return {**record["numbers"], "_code_version": record["code_version"], "_timing": record["timing"]}


summaries = {}
for family, run in runs.items():
    pages = {**PAGES[family], **COMMON_PAGES}
    summaries[family] = {page: read_summary(run, page, keys) for page, keys in pages.items()}
    if summaries[family]["mitigation"]["k_percent"] != k_report[family]:
        raise ValueError(f"k_percent: the mitigation page reported k = {summaries[family]['mitigation']['k_percent']:g}% "
                         f"for {run.params['model']}, this page has {k_report[family]:g}%")
    print(f"{run.params['model']}: read " + ", ".join(f"summary-{page}.json" for page in pages))

# %% [markdown]
# ## What can be compared
#
# The statement below is built from this run's parameters.

# %%
def run_kind(run) -> dict:
    p = run.params
    return {"testbed": p["dataset"] == "testbed", "sscd": p["similarity"] == "sscd",
            "inception": p["fid_feature"] == "inception", "paper_model": p["model"] in PAPER["models"]}


def comparability(family: str) -> str:
    run, kind = runs[family], run_kind(runs[family])
    name = run.params["model"]
    if kind["testbed"]:
        return (f"**{name} is a testbed model.** It is a small model trained on Fashion-MNIST with planted "
                "duplicates, its copy decision is a pixel-space similarity rather than SSCD and its image-quality "
                "distance is a testbed FID rather than FID. Its numbers are **not comparable in magnitude** to the "
                "paper's. What can be compared is the *direction* of each finding: whether the top UnitMem units sit "
                "where the paper says, whether halving them cuts extraction, by more than halving random units, "
                "and at what cost in image quality.")
    issues = []
    if not kind["sscd"]:
        issues.append("the copy decision is not SSCD")
    if not kind["inception"]:
        issues.append("the image-quality distance is not Inception FID")
    if run.params["per_class"] != 5 or run.params["threshold"] != PAPER["attack"]["threshold"]:
        issues.append("the attack's candidates per class or threshold differ from the paper's (5, 0.75)")
    if run.params["fid_samples_per_class"] != 50:
        issues.append("FID uses another number of samples than the paper's 50,000")
    if not issues and kind["paper_model"]:
        return (f"**{name} is one of the paper's models**, measured with the paper's attack settings, SSCD and "
                "Inception FID. Its numbers are comparable to the paper's up to the choices the paper leaves "
                "open (see the method page) and the numerical differences of an independent implementation.")
    return f"**{name}** is measured at full scale, but " + "; ".join(issues) + ", so its numbers are comparable only in direction."


display(Markdown("\n\n".join(comparability(family) for family in runs) or "No model in this run."))

# %% [markdown]
# ## Mitigation: the paper's table beside this run
#
# Rows labelled *the paper* come from `book/paper_numbers.yaml`; rows labelled *this run* from this
# run's mitigation and extraction summaries. "Extracted" counts candidates at the longest prefix of
# the run; the FID column says which distance it is.

# %%
def fmt(value, spec: str = "g") -> str:
    """A number for a table, or an em dash when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def change(before, after) -> str:
    return fmt(100 * (after - before) / before, "+.1f") + "%" if before else "—"


def short_similarity(name: str) -> str:
    return "SSCD" if "SSCD" in name else "pixel, not SSCD" if name.startswith("pixel") else name


rows = []
for family in ("var", "rar"):
    for name, paper in PAPER["models"].items():
        if paper["family"] == family and "extracted_before" in paper:
            rows.append({"source": "the paper", "model": name, "units halved": f"top {paper['k_percent']:g}%",
                         "extracted before → after (change)": f"{paper['extracted_before']} → {paper['extracted_after']} "
                         f"({change(paper['extracted_before'], paper['extracted_after'])})",
                         "random units, halved": "—",
                         "FID before → after": f"{paper['fid_official']:.2f} → {paper['fid_after']:.2f} (FID)",
                         "attack": f"{PAPER['attack']['candidates']} candidates, prefix {PAPER['attack']['prefix_tokens']}, "
                         f"{short_similarity(PAPER['attack']['similarity'])} > {PAPER['attack']['threshold']:g}"})
    if family in runs:
        run, m, e = runs[family], summaries[family]["mitigation"], summaries[family]["extraction"]
        before, after = m["extracted_before"], m["unitmem_half_extracted_mean"]
        random = (f"{m['random_half_extracted_mean']:.1f} ({m['random_half_extracted_min']}–"
                  f"{m['random_half_extracted_max']}, {m['random_half_seeds']} seeds)"
                  if "random_half_extracted_mean" in m else "—")
        rows.append({"source": "this run", "model": run.params["model"],
                     "units halved": f"top {m['k_percent']:g}% ({m['units_edited']} units)",
                     "extracted before → after (change)": f"{before} → {after:g} ({change(before, after)})",
                     "random units, halved": random,
                     "FID before → after": (f"{m['fid_before']:.2f} → {m['fid_after']:.2f} ({m['fid_metric']})"
                                            if "fid_before" in m else "not measured"),
                     "attack": f"{e['candidates']} candidates, prefix {e['headline_prefix']}, "
                               f"{short_similarity(e['similarity'])} > {e['threshold']:g}"})
        glue(f"{family}_extracted_before", int(before), display=False)
        glue(f"{family}_extracted_after", float(after), display=False)
        if before:
            glue(f"{family}_extracted_change", (after - before) / before, display=False)
        if "fid_before" in m:
            glue(f"{family}_fid_before", m["fid_before"], display=False)
            glue(f"{family}_fid_after", m["fid_after"], display=False)
mitigation_table = pd.DataFrame(rows)
display(mitigation_table.style.hide(axis="index"))

# %% [markdown]
# ## The findings, one by one
#
# Each row states a finding of the paper and what this run shows for it; the last column is
# computed from this run's numbers.

# %%
def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


findings = []
for family, run in runs.items():
    name, s = run.params["model"], summaries[family]
    m = s["mitigation"]
    if family == "var":
        u = s["unitmem-var"]
        centres = u["centre_of_mass_by_scale"][1:]
        findings.append({"model": name, "the paper": PAPER["localization"]["var"],
                         "this run": "centre of mass of mean UnitMem by image scale: "
                                     + ", ".join(f"{c:.2f}" for c in centres) + " (block index, 0 = first)",
                         "same direction": yes_no(u["centre_moves_deeper_with_scale"])})
    else:
        u = s["unitmem-rar"]
        n_blocks = len(u["mean_unitmem_by_block"]["last"])
        findings.append({"model": name, "the paper": PAPER["localization"]["rar"],
                         "this run": f"peak block {u['peak_block_last']}, centre of mass {u['centre_of_mass_last']:.2f} "
                                     f"of blocks 0–{n_blocks - 1} (last position)",
                         "same direction": yes_no(u["centre_of_mass_last"] > (n_blocks - 1) / 2)})
    before, after = m["extracted_before"], m["unitmem_half_extracted_mean"]
    findings.append({"model": name, "the paper": "halving the top-k% UnitMem units cuts extraction",
                     "this run": f"{before} → {after:g} at k = {m['k_percent']:g}%",
                     "same direction": yes_no(after < before) if before else "— (nothing extracted before the edit)"})
    if "random_half_extracted_mean" in m:
        findings.append({"model": name, "the paper": "the UnitMem choice matters (control: random units, not in the paper)",
                         "this run": f"UnitMem {after:g} vs random {m['random_half_extracted_mean']:.1f} "
                                     f"(range {m['random_half_extracted_min']}–{m['random_half_extracted_max']})",
                         "same direction": yes_no(after < m["random_half_extracted_mean"]) if before else "—"})
    if "unitmem_zero_extracted_mean" in m:
        findings.append({"model": name, "the paper": PAPER["zeroing_note"],
                         "this run": f"zeroing {m['unitmem_zero_extracted_mean']:g} vs halving {after:g}",
                         "same direction": "— (no number to compare)"})
    if "fid_before" in m:
        this_run = f"{m['fid_metric']} {m['fid_before']:.2f} → {m['fid_after']:.2f}"
        verdict = yes_no(m["fid_after"] > m["fid_before"])
        if "random_half_fid_min" in m:
            this_run += f" (random units: {m['random_half_fid_min']:.2f}–{m['random_half_fid_max']:.2f})"
            if m["fid_after"] > m["fid_before"] and m["random_half_fid_min"] <= m["fid_after"] <= m["random_half_fid_max"]:
                verdict = "yes, but within the spread of the random edits"
        findings.append({"model": name, "the paper": "the edit costs image quality (FID rises)",
                         "this run": this_run, "same direction": verdict})
display(pd.DataFrame(findings).style.hide(axis="index") if findings else Markdown("No model in this run."))

# %% [markdown]
# ## The k sweep
#
# The paper's appendix sweep (RAR-XXL) beside this run's UnitMem edit at every k of the sweep, for
# each model of the run.

# %%
sweep_rows = [{"source": "the paper", "model": name, "k (%)": entry["k_percent"], "extracted": entry["extracted"],
               "distance": entry["fid"], "distance is": "FID (Inception, 50k)"}
              for name, paper in PAPER["models"].items() for entry in paper.get("sweep", [])]
for family, run in runs.items():
    t = summaries[family]["tradeoff"]
    for point in t["curves"]:
        if point["mode"] in ("baseline", "unitmem-half"):
            sweep_rows.append({"source": "this run", "model": run.params["model"], "k (%)": point["k_percent"],
                               "extracted": point["extracted"], "distance": point["fid"],
                               "distance is": t["fid_metric"] or "not measured"})
sweep_table = pd.DataFrame(sweep_rows)
display(sweep_table.style.format({"distance": lambda v: fmt(v, ".2f"), "extracted": lambda v: fmt(v, "g")})
        .hide(axis="index"))

# %% [markdown]
# ## Unedited models
#
# The FID of the unedited models (the paper: the official numbers) and the number of images the
# attack extracts from them; the attack paper {cite:p}`kowalczuk2025privacy` reported its own counts
# with the same pipeline.

# %%
base_rows = [{"source": "the paper", "model": name, "FID": paper["fid_official"],
              "extracted": paper.get("extracted_before"), "extracted (attack paper)": paper.get("extracted_attack_paper")}
             for name, paper in PAPER["models"].items()]
for family, run in runs.items():
    m, e = summaries[family]["mitigation"], summaries[family]["extraction"]
    base_rows.append({"source": "this run", "model": run.params["model"], "FID": m.get("fid_before"),
                      "extracted": e["extracted"], "extracted (attack paper)": None})
    if m.get("fid_metric"):
        base_rows[-1]["model"] += f" ({m['fid_metric']})"
display(pd.DataFrame(base_rows).style.format({"FID": lambda v: fmt(v, ".2f"), "extracted": lambda v: fmt(v, "g"),
                                              "extracted (attack paper)": lambda v: fmt(v, "g")}).hide(axis="index"))

# %% [markdown]
# ## The parameters of this run
#
# The values every page of this run used for the keys that shape the numbers above (the collapsed
# cell at the top of every page lists what papermill passed it).

# %%
SHOWN = ["model", "checkpoint", "tokenizer_checkpoint", "dataset", "max_images", "n_views", "activation", "selection",
         "similarity", "threshold", "prefix_lengths", "per_class", "score_span", "k_percents", "sweep_modes",
         "random_seeds", "sweep_fid", "fid_feature", "fid_samples_per_class", "seed"]
parameter_table = pd.DataFrame({run.params["model"]: {key: json.dumps(to_jsonable(run.params[key])) for key in SHOWN}
                                for run in runs.values()})
parameter_table.index.name = "parameter"
if runs:
    first = next(iter(summaries.values()))["mitigation"]
    print(f"code version {first['_code_version']}; mitigation page started {first['_timing']['started']}")
    display(parameter_table)

# %% [markdown]
# ## Summary

# %%
lines = []
for family, run in runs.items():
    m = summaries[family]["mitigation"]
    before, after = m["extracted_before"], m["unitmem_half_extracted_mean"]
    line = (f"- **{run.params['model']}** ({'testbed' if run_kind(run)['testbed'] else 'full scale'}): halving the top "
            f"{m['k_percent']:g}% UnitMem units takes extraction from {before} to {after:g}")
    line += f" ({change(before, after)})" if before else ""
    if "fid_before" in m:
        line += f"; {m['fid_metric']} {m['fid_before']:.2f} → {m['fid_after']:.2f}"
    lines.append(line + ".")
    atomic_write_json(run.out / "summary-reproduction.json",
                      {"numbers": {"notebook": "reproduction", "model": run.params["model"],
                                   "mitigation_table": mitigation_table.to_dict(orient="records"),
                                   "findings": [f for f in findings if f["model"] == run.params["model"]]},
                       **provenance(run.params, run.params["seed"], started)})
lines.append(f"- The paper's numbers: `{PAPER_FILE.relative_to(REPO_ROOT)}` ({PAPER['source']}).")
display(Markdown("\n".join(lines)))
