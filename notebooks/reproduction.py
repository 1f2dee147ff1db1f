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
#
# ```{glue:md} rerun_box
# :format: myst
# ```

# %% tags=["parameters", "hide-input"]
params_file = "notebooks/params/testbed.yaml"  # the run: every setting (memlib/config.py, README table)
k_percent = None                 # the k% the mitigation page reported; None: the parameter file's (unset: the paper's)

# %% tags=["hide-input"]
import json
import math
import time

import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from memlib import stages
from memlib.config import REPO_ROOT, page_config, paper_numbers
from memlib.results import atomic_write_json, provenance, read_json, to_jsonable

config = page_config(params_file, k_percent=k_percent)
started = time.time()
PAPER_FILE = REPO_ROOT / "book" / "paper_numbers.yaml"
PAPER = paper_numbers()

# %% [markdown]
# ## The run's models
#
# The parameters are checked first (`memlib.config`): a bad value stops the notebook with a message
# naming the parameter. An empty `model` means the testbed pair `var-testbed` and `rar-testbed`; a
# full-scale run names one model.

# %% tags=["hide-input"]
runs = stages.make_runs(config, "sweep", usable_prefixes=True)
k_report = {family: run.config.sweep.k_percent for family, run in runs.items()}

# %% [markdown]
# ## This run's result files
#
# Each page of the run wrote a `summary-<page>.json` with its numbers and the parameters that
# produced them. A summary written with other parameters (an earlier run, or the page not run yet)
# stops this page with a message naming the page and the parameter that differs.

# %% tags=["hide-input"]
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
    mine = to_jsonable(run.config.flat())
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
                         f"for {run.config.model.model}, this page has {k_report[family]:g}%")
    print(f"{run.config.model.model}: read " + ", ".join(f"summary-{page}.json" for page in pages))

# %% [markdown]
# ## What can be compared
#
# The statement below is built from this run's parameters.

# %% tags=["hide-input"]
def run_kind(run) -> dict:
    cfg = run.config
    return {"testbed": cfg.data.dataset == "testbed", "sscd": cfg.attack.similarity == "sscd",
            "inception": cfg.fid.fid_feature == "inception", "paper_model": cfg.model.model in PAPER["models"]}


def comparability(family: str) -> str:
    run, kind = runs[family], run_kind(runs[family])
    name = run.config.model.model
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
    if run.config.attack.per_class != 5 or run.config.attack.threshold != PAPER["attack"]["threshold"]:
        issues.append("the attack's candidates per class or threshold differ from the paper's (5, 0.75)")
    if run.config.fid.fid_samples_per_class != 50:
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

# %% tags=["hide-input"]
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
        rows.append({"source": "this run", "model": run.config.model.model,
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

# %% tags=["hide-input"]
def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


findings = []
for family, run in runs.items():
    name, s = run.config.model.model, summaries[family]
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
        n_blocks = len(u["mean_unitmem_by_block"]["predicts-last"])
        findings.append({"model": name, "the paper": PAPER["localization"]["rar"],
                         "this run": f"peak block {u['peak_block_last']}, centre of mass {u['centre_of_mass_last']:.2f} "
                                     f"of blocks 0–{n_blocks - 1} (T-2, the position that predicts the last token)",
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

# %% tags=["hide-input"]
sweep_rows = [{"source": "the paper", "model": name, "k (%)": entry["k_percent"], "extracted": entry["extracted"],
               "distance": entry["fid"], "distance is": "FID (Inception, 50k)"}
              for name, paper in PAPER["models"].items() for entry in paper.get("sweep", [])]
for family, run in runs.items():
    t = summaries[family]["tradeoff"]
    for point in t["curves"]:
        if point["mode"] in ("baseline", "unitmem-half"):
            sweep_rows.append({"source": "this run", "model": run.config.model.model, "k (%)": point["k_percent"],
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

# %% tags=["hide-input"]
base_rows = [{"source": "the paper", "model": name, "FID": paper["fid_official"],
              "extracted": paper.get("extracted_before"), "extracted (attack paper)": paper.get("extracted_attack_paper")}
             for name, paper in PAPER["models"].items()]
for family, run in runs.items():
    m, e = summaries[family]["mitigation"], summaries[family]["extraction"]
    base_rows.append({"source": "this run", "model": run.config.model.model, "FID": m.get("fid_before"),
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

# %% tags=["hide-input"]
SHOWN = ["model", "checkpoint", "tokenizer_checkpoint", "dataset", "max_images", "n_views", "activation", "selection",
         "similarity", "threshold", "prefix_lengths", "per_class", "score_span", "k_percents", "sweep_modes",
         "random_seeds", "sweep_fid", "fid_feature", "fid_samples_per_class", "seed"]
parameter_table = pd.DataFrame({run.config.model.model: {key: json.dumps(to_jsonable(run.config.flat()[key])) for key in SHOWN}
                                for run in runs.values()})
parameter_table.index.name = "parameter"
if runs:
    first = next(iter(summaries.values()))["mitigation"]
    print(f"code version {first['_code_version']}; mitigation page started {first['_timing']['started']}")
    display(parameter_table)

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
lines = []
for family, run in runs.items():
    m = summaries[family]["mitigation"]
    before, after = m["extracted_before"], m["unitmem_half_extracted_mean"]
    line = (f"- **{run.config.model.model}** ({'testbed' if run_kind(run)['testbed'] else 'full scale'}): halving the top "
            f"{m['k_percent']:g}% UnitMem units takes extraction from {before} to {after:g}")
    line += f" ({change(before, after)})" if before else ""
    if "fid_before" in m:
        line += f"; {m['fid_metric']} {m['fid_before']:.2f} → {m['fid_after']:.2f}"
    lines.append(line + ".")
    atomic_write_json(run.out / "summary-reproduction.json",
                      {"numbers": {"notebook": "reproduction", "model": run.config.model.model,
                                   "mitigation_table": mitigation_table.to_dict(orient="records"),
                                   "findings": [f for f in findings if f["model"] == run.config.model.model]},
                       **provenance(run.config.flat(), run.config.run.seed, started)})
lines.append(f"- The paper's numbers: `{PAPER_FILE.relative_to(REPO_ROOT)}` ({PAPER['source']}).")
display(Markdown("\n".join(lines)))

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from IPython.display import Markdown as _Markdown  # noqa: E402

from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", _Markdown(_style.rerun_box("reproduction", params_file, None)), display=False)
