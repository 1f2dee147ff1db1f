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
# Each claim with this run's computed verdict (holds / does not hold / cannot tell at this noise;
# "—": a claim about the other architecture); the numbers and intervals behind each are in "The
# findings, one by one" below.
#
# ```{glue:any} verdict_table
# ```
#
# The table of the paper's numbers is read from `book/paper_numbers.yaml`, one data file labelled
# as the paper's {cite:p}`kasliwal2025localizing`; nothing on this page is typed by hand. This run's
# numbers come from this run's result files, read through `memlib.findings` (the same records and
# verdict rules as {doc}`unitmem-var`, {doc}`unitmem-rar`, {doc}`extraction` and {doc}`mitigation`).
# The cell below holds the parameters; papermill replaces them.
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

import numpy as np
import pandas as pd
from IPython.display import HTML, Markdown, display
from myst_nb import glue

from memlib import findings, stages, summaries
from memlib.config import REPO_ROOT, page_config, paper_numbers
from memlib.protocol import protocol_mismatches
from memlib.results import provenance, to_jsonable, write_record

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

# %% [markdown]
# ## This run's numbers
#
# `memlib.findings.gather` takes every number of this page from the run's result files through
# the stages: UnitMem, the attack and the sweep are read back from their cached, checked records
# (written by {doc}`unitmem-var`, {doc}`unitmem-rar`, {doc}`extraction` and {doc}`mitigation` with
# the same parameters), or computed here when no page has written them yet. The verdicts are the
# ones those pages compute (`memlib.summaries`).

# %% tags=["remove-stderr"]
numbers = {family: findings.gather(run) for family, run in runs.items()}
for n in numbers.values():
    print(f"{n.model}: k = {n.k_percent:g}% ({n.units_edited} units), prefix "
          f"{n.prefix}, {n.candidates} candidates, {len(n.findings)} findings")

# %% [markdown]
# ## What can be compared
#
# The statement below is built from this run's parameters.

# %% tags=["hide-input"]
def comparability(family: str) -> str:
    run = runs[family]
    name = run.config.model.model
    if run.config.data.dataset == "testbed":
        return (f"**{name} is a testbed model.** It is a small model trained on Fashion-MNIST with planted "
                "duplicates, its copy decision is a pixel-space similarity rather than SSCD and its image-quality "
                "distance is a testbed FID rather than FID. Its numbers are **not comparable in magnitude** to the "
                "paper's. What can be compared is the *direction* of each finding: whether the top UnitMem units sit "
                "where the paper says, whether halving them cuts extraction, by more than halving random units, "
                "and at what cost in image quality.")
    mismatches = protocol_mismatches(run.config)  # every setting of memlib.protocol.PAPER_PROTOCOL it does not meet
    if not mismatches:
        return (f"**{name} is one of the paper's models**, measured with the paper's protocol (every setting of "
                "`memlib.protocol.PAPER_PROTOCOL`). Its numbers are comparable to the paper's up to the choices the "
                "paper leaves open (see the method page) and the numerical differences of an independent "
                "implementation.")
    return (f"**{name}** is measured at full scale, but not with the paper's protocol: "
            + "; ".join(f"`{m}`" for m in mismatches) + ". Its numbers are comparable only in direction.")


display(Markdown("\n\n".join(comparability(family) for family in runs) or "No model in this run."))

# %% [markdown]
# ## Mitigation: the paper's table beside this run
#
# Rows labelled *the paper* come from `book/paper_numbers.yaml`; rows labelled *this run* from this
# run's result files. "Extracted" counts candidates at each model's reported prefix
# (`reported_prefix`; the paper: 30 tokens); the FID column says which distance it is.

# %% tags=["hide-input"]
def fmt(value, spec: str = "g") -> str:
    """A number for a table, or an em dash when there is none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec) if isinstance(value, (int, float)) else str(value)


def short_similarity(name: str) -> str:
    return "SSCD" if "SSCD" in name else "pixel, not SSCD" if name.startswith("pixel") else name


rows = []
for family in ("var", "rar"):
    for name, paper in PAPER["models"].items():
        if paper["family"] == family and "extracted_before" in paper:
            rows.append({"source": "the paper", "model": name, "units halved": f"top {paper['k_percent']:g}%",
                         "extracted before → after": f"{paper['extracted_before']} → {paper['extracted_after']}",
                         "random units, halved": "—",
                         "FID before → after": f"{paper['fid_official']:.2f} → {paper['fid_after']:.2f} (FID)",
                         "attack": f"{PAPER['attack']['candidates']} candidates, prefix {PAPER['attack']['prefix_tokens']}, "
                         f"{short_similarity(PAPER['attack']['similarity'])} > {PAPER['attack']['threshold']:g}"})
    if family in numbers:
        n = numbers[family]
        random = (f"{np.mean(n.random_extracted):.1f} ({min(n.random_extracted)}–{max(n.random_extracted)}, "
                  f"{len(n.random_extracted)} seeds)" if n.random_extracted else "—")
        rows.append({"source": "this run", "model": n.model, "units halved": f"top {n.k_percent:g}% ({n.units_edited} units)",
                     "extracted before → after": f"{n.extracted_before} → {n.extracted_after}",
                     "random units, halved": random,
                     "FID before → after": (f"{n.fid_before:.2f} → {n.fid_after:.2f} ({n.fid_metric})"
                                            if n.fid_before is not None else "not measured"),
                     "attack": f"{n.candidates} candidates, prefix {n.prefix}, {short_similarity(n.similarity)} > {n.threshold:g}"})
        glue(f"{family}_extracted_before", n.extracted_before, display=False)
        glue(f"{family}_extracted_after", n.extracted_after, display=False)
        if n.fid_before is not None:
            glue(f"{family}_fid_before", n.fid_before, display=False)
            glue(f"{family}_fid_after", n.fid_after, display=False)
mitigation_table = pd.DataFrame(rows)
display(mitigation_table.style.hide(axis="index"))

# %% [markdown]
# ## The findings, one by one
#
# Each row states a claim of the paper (or a control the paper did not run) and what this run
# measured for it; the verdict is computed from this run's numbers and their interval
# (`memlib.summaries`): **holds** when the interval lies on the claimed side, **does not hold**
# when it rules the claimed direction out, otherwise **cannot tell at this noise**. On the testbed
# a verdict is about the direction of a finding, not its size.

# %% tags=["hide-input"]
finding_rows = [{"model": n.model, "claim": f.claim, "this run": f.this_run,
                 "effect [95% interval]": f.effect.text() if f.effect is not None else "—", "verdict": f.verdict}
                for n in numbers.values() for f in n.findings]
for family, n in numbers.items():
    for f in n.findings:
        glue(f"{family}_{f.key}_verdict", f.verdict, display=False)
display(pd.DataFrame(finding_rows).style.hide(axis="index") if finding_rows else Markdown("No model in this run."))
# the intro page shows this table, in findings.ORDER ("—": a claim about the other architecture)
claims = {f.key: f.claim for n in numbers.values() for f in n.findings}
claims = {key: claims[key] for key in sorted(claims, key=lambda k: findings.ORDER.index(k) if k in findings.ORDER else 99)}
verdict_table = pd.DataFrame({n.model: {f.claim: f.verdict for f in n.findings} for n in numbers.values()},
                             index=list(claims.values())).fillna("—").rename_axis("claim")
glue("verdict_table", HTML(verdict_table.reset_index().to_html(index=False, classes="verdicts", border=0)
                           if len(verdict_table.columns) else "<p>No model in this run.</p>"), display=False)
display(Markdown(f"The paper on zeroing: *{PAPER['zeroing_note']}*"))

# %% [markdown]
# ## The k sweep
#
# The paper's appendix sweep (RAR-XXL) beside this run's UnitMem edit at every k of the sweep, for
# each model of the run (k = 0: the unedited model).

# %% tags=["hide-input"]
sweep_rows = [{"source": "the paper", "model": name, "k (%)": entry["k_percent"], "extracted": entry["extracted"],
               "distance": entry["fid"], "distance is": "FID (Inception, 50k)"}
              for name, paper in PAPER["models"].items() for entry in paper.get("sweep", [])]
for n in numbers.values():
    for point in n.sweep.itertuples():
        sweep_rows.append({"source": "this run", "model": n.model, "k (%)": point.k_percent, "extracted": point.extracted,
                           "distance": point.fid, "distance is": n.fid_metric or "not measured"})
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
for n in numbers.values():
    base_rows.append({"source": "this run", "model": n.model + (f" ({n.fid_metric})" if n.fid_metric else ""),
                      "FID": n.fid_before, "extracted": n.extracted_before, "extracted (attack paper)": None})
display(pd.DataFrame(base_rows).style.format({"FID": lambda v: fmt(v, ".2f"), "extracted": lambda v: fmt(v, "g"),
                                              "extracted (attack paper)": lambda v: fmt(v, "g")}).hide(axis="index"))

# %% [markdown]
# ## The parameters of this run
#
# The values of the keys that shape the numbers above, per model (the collapsed cell at the top
# of every page lists what papermill passed it).

# %% tags=["hide-input"]
SHOWN = ["model", "checkpoint", "tokenizer_checkpoint", "dataset", "max_images", "n_views", "activation", "selection",
         "similarity", "threshold", "prefix_lengths", "per_class", "score_span", "k_percents", "sweep_modes",
         "random_seeds", "sweep_fid", "fid_feature", "fid_samples_per_class", "seed"]
PATHS = ("checkpoint", "tokenizer_checkpoint")  # shown relative to the repository (stages.shown_path)
parameter_table = pd.DataFrame({run.config.model.model: {
    key: json.dumps(stages.shown_path(value) if key in PATHS and value else to_jsonable(value))
    for key, value in ((key, run.config.flat()[key]) for key in SHOWN)} for run in runs.values()})
parameter_table.index.name = "parameter"
if runs:
    display(parameter_table)

# %% [markdown]
# ## Summary

# %% tags=["hide-input"]
lines = []
for family, n in numbers.items():
    run = runs[family]
    verdicts = {f.key: f.verdict for f in n.findings}
    line = (f"- **{n.model}** ({'testbed' if run.config.data.dataset == 'testbed' else 'full scale'}): "
            + "; ".join(f"{f.claim}: **{f.verdict}**" for f in n.findings if f.key not in summaries.MITIGATION_CLAIMS)
            + f"; halving the top {n.k_percent:g}% UnitMem units takes "
            f"extraction from {n.extracted_before} to {n.extracted_after} (that it reduces extraction: "
            f"**{verdicts['reduces']}**)")
    if n.fid_before is not None:
        line += f"; {n.fid_metric} {n.fid_before:.2f} → {n.fid_after:.2f}"
    lines.append(line + ".")
    write_record(run.out / "summary-reproduction.json",
                      {"numbers": {"notebook": "reproduction", "model": n.model,
                                   "mitigation_table": mitigation_table.to_dict(orient="records"),
                                   "findings": [r for r in finding_rows if r["model"] == n.model]},
                       **provenance(run.config.flat(), run.config.run.seed, started)})
lines.append(f"- The paper's numbers: `{PAPER_FILE.relative_to(REPO_ROOT)}` ({PAPER['source']}).")
display(Markdown("\n".join(lines)))

# %% tags=["remove-cell"]
# The page's execution time (the re-run box and the teaching page show it) and its re-run box.
from IPython.display import Markdown as _Markdown  # noqa: E402

from memlib import style as _style  # noqa: E402

glue("page_seconds", time.time() - started, display=False)
glue("rerun_box", _Markdown(_style.rerun_box("reproduction", params_file, None)), display=False)
