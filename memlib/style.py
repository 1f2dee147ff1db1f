"""The book's figure style: one colour-blind-safe palette, one set of axis labels, the re-run box.

Every page colours the same thing the same way and names it the same way, so a reader who has
learnt one figure can read the next. The palette is Okabe-Ito (Okabe and Ito, "Color Universal
Design", 2008), distinguishable under the common colour-vision deficiencies; the planted
duplication levels, which are ordered, use the ``cividis`` map (designed to read the same with
and without red-green deficiency), stopped before its pale yellow end so every level shows on
white.

In a notebook::

    from memlib import style
    style.apply()                                    # once, after the imports
    ax.plot(k, extracted, color=style.EDIT_COLORS["unitmem-half"], label=style.EDIT_NAMES["unitmem-half"])
    ax.set_xlabel(style.LABELS["block"])
    glue("rerun_box", Markdown(style.rerun_box("mitigation", params_file, None)), display=False)

Roles that share a figure never share a colour: within each group (the two families, the edits
of the sweep, the image groups) the colours are distinct (tests/test_style.py checks it); a
colour may recur across groups that never meet in one figure.
"""

import base64
import html
import io
import json

import matplotlib as mpl
from matplotlib.colors import to_hex

# Okabe-Ito, by the names of the original paper (plus the grey commonly used with it for controls)
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky blue": "#56B4E9",
    "bluish green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish purple": "#CC79A7",
    "grey": "#999999",
}

# model families (spec/method.md: VAR predicts the next scale, RAR the next token)
FAMILY_COLORS = {"var": OKABE_ITO["blue"], "rar": OKABE_ITO["orange"]}
FAMILY_NAMES = {"var": "VAR", "rar": "RAR"}

# the edits of the mitigation sweep, keyed by the sweep's mode names ("unedited": k = 0)
EDIT_COLORS = {
    "unedited": OKABE_ITO["black"],
    "unitmem-half": OKABE_ITO["vermillion"],    # the paper's edit: top UnitMem units, fc1 rows x 0.5
    "random-half": OKABE_ITO["grey"],           # the random-unit control
    "magnitude-half": OKABE_ITO["sky blue"],    # the magnitude baseline: top units by mean activation
    "unitmem-zero": OKABE_ITO["reddish purple"],  # zeroing instead of halving
    "per-block-half": OKABE_ITO["bluish green"],  # top UnitMem units within each block
}
EDIT_NAMES = {
    "unedited": "unedited",
    "unitmem-half": "top UnitMem, halved",
    "random-half": "random units, halved",
    "magnitude-half": "top mean activation, halved",
    "unitmem-zero": "top UnitMem, zeroed",
    "per-block-half": "top UnitMem per block, halved",
}



def edit_color(mode: str) -> str:
    """Colour of a mode of the sweep (``memlib.sweep.MODES``; its unedited row is mode "baseline")."""
    return EDIT_COLORS["unedited" if mode == "baseline" else mode]


def edit_palette() -> dict[str, str]:
    """Colour of every edit keyed by its display name (``EDIT_NAMES``), for a seaborn ``hue``."""
    return {EDIT_NAMES[mode]: color for mode, color in EDIT_COLORS.items()}


# image groups of the testbed (memlib.data.TestbedData.groups: "control", then "2x", "4x", ...)
CONTROL_COLOR = OKABE_ITO["bluish green"]   # chosen like the planted images, seen once
ORDINARY_COLOR = "#BBBBBB"                   # every other training image, seen once
PLANTED_CMAP = "cividis"
_PLANTED_RANGE = (0.0, 0.8)                  # cividis from dark blue to olive; its yellow end is too pale on white
# readings of one measurement on a page (the run's chosen reading first: 10 views, T-2), then its options
READING_COLORS = [OKABE_ITO["vermillion"], OKABE_ITO["sky blue"], OKABE_ITO["grey"]]
HIGHLIGHT_COLOR = OKABE_ITO["vermillion"]    # a title or mark that singles out a planted or extracted image
PLANTED_VS_OTHER = {"planted": OKABE_ITO["vermillion"], "not planted": OKABE_ITO["blue"]}
SEQUENTIAL_CMAP = "cividis"                  # every ordered quantity (scales, heatmaps of UnitMem or shares)

# axis and legend texts, the same on every page
LABELS = {
    "block": "block",
    "scale": "scale",
    "unit": "fc1 unit",
    "unitmem": "UnitMem",
    "mean_unitmem": "mean UnitMem",
    "k_percent": "k (% of fc1 units edited)",
    "extracted": "extracted candidates",
    "prefix": "prefix length (tokens)",
    "level": "duplication level (copies per epoch)",
    "testbed_fid": "testbed FID (testbed classifier, not Inception)",
    "fid": "FID",
    "similarity": "similarity to the training image",
    "group": "group (copies per epoch)",
    "model": "model",
}

FIGURE_WIDTH_IN = 9.0        # the book's text column at 1300 px holds about 9 inches at 100 dpi
RC_PARAMS = {
    "figure.figsize": (FIGURE_WIDTH_IN, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "lines.linewidth": 2.0,
    "lines.markersize": 6,
    "image.cmap": PLANTED_CMAP,
}


def apply() -> None:
    """Set matplotlib's rcParams for the book: readable sizes and the palette as the colour cycle.

    Call it once per notebook after the imports (and after any ``sns.set_theme``, which would
    overwrite it)."""
    cycle = [FAMILY_COLORS["var"], FAMILY_COLORS["rar"], EDIT_COLORS["unitmem-half"], OKABE_ITO["bluish green"],
             OKABE_ITO["reddish purple"], OKABE_ITO["sky blue"], OKABE_ITO["black"], OKABE_ITO["grey"]]
    mpl.rcParams.update(RC_PARAMS)
    mpl.rcParams["axes.prop_cycle"] = mpl.cycler(color=cycle)


def family_name(family: str, model: str | None = None) -> str:
    """Display name of a model: "VAR (testbed)" for the testbed models (``model`` None or a
    ``*-testbed`` config), else the official name ("var-d30" -> "VAR-d30", "rar-xxl" -> "RAR-XXL")."""
    if family not in FAMILY_NAMES:
        raise ValueError(f"family must be one of {', '.join(FAMILY_NAMES)}, got {family!r}")
    if model is None or model.endswith("-testbed"):
        return f"{FAMILY_NAMES[family]} (testbed)"
    prefix = f"{family}-"
    if not model.startswith(prefix):
        raise ValueError(f"model {model!r} is not of family {family!r} (expected a name starting with {prefix!r})")
    size = model.removeprefix(prefix)
    return f"{FAMILY_NAMES[family]}-{size if family == 'var' else size.upper()}"


def ordered_colors(n: int) -> list[str]:
    """``n`` hex colours for an ordered series (the scales of VAR, coarse to fine): cividis from
    dark to light, stopped before its pale end, like the planted levels."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"ordered_colors needs a whole number of colours >= 1, got {n!r}")
    cmap = mpl.colormaps[SEQUENTIAL_CMAP]
    low, high = _PLANTED_RANGE
    step = (high - low) / max(n - 1, 1)
    return [to_hex(cmap(low + i * step)) for i in range(n)]


def planted_colors(levels) -> dict[str, str]:
    """Hex colour of every planted level, keyed like ``TestbedData.groups`` ("2x", "4x", ...):
    darker for fewer copies, lighter for more, evenly spaced over the ascending levels."""
    levels = sorted(int(level) for level in levels)
    if not levels or levels[0] < 2 or len(set(levels)) != len(levels):
        raise ValueError(f"levels must be distinct duplication levels >= 2, got {levels}")
    cmap = mpl.colormaps[PLANTED_CMAP]
    low, high = _PLANTED_RANGE
    step = (high - low) / max(len(levels) - 1, 1)
    return {f"{level}x": to_hex(cmap(low + i * step)) for i, level in enumerate(levels)}


def group_colors(levels) -> dict[str, str]:
    """Colours of every image group of the testbed: "control", the planted levels, "ordinary"."""
    return {"control": CONTROL_COLOR, **planted_colors(levels), "ordinary": ORDINARY_COLOR}


def scroll_table(table, folded: str | None = None) -> "IPython.display.HTML":
    """A table (pandas DataFrame or Styler) as HTML in a horizontally scrolling box, so that no
    column is cut off at the edge of the book's text column whatever the window's width. With
    ``folded`` (a one-line summary) the box is folded under that summary until clicked (a
    ``<details>`` element): for a long table whose content a figure above already shows."""
    from IPython.display import HTML

    box = f'<div class="table-scroll" style="overflow-x: auto; max-width: 100%;">{table.to_html()}</div>'
    if folded is not None:
        box = f"<details><summary>{html.escape(folded)}</summary>{box}</details>"
    return HTML(box)


def rerun_command(page: str, params_file: str) -> str:
    """The command that re-executes one page of the book with a parameter file."""
    return f".venv/bin/python scripts/run_notebooks.py --params {params_file} --only {page}"


def papermill_command(page: str, params_file: str) -> str:
    """The same run with papermill directly (passes every key of the file; see the README)."""
    return (f".venv/bin/jupytext --to ipynb --set-kernel python3 -o - notebooks/{page}.py \\\n"
            f"  | .venv/bin/papermill -k python3 -f {params_file} - executed/{page}.ipynb")


def rerun_box(page: str, params_file: str, seconds: float | None,
              parameters_doc: str = "../book/parameters") -> str:
    """MyST markdown of the "Re-run this page" admonition of notebook page ``page``.

    ``params_file``: the parameter file of this run, relative to the repository root (e.g.
    ``notebooks/params/testbed.yaml``); ``seconds``: the page's measured execution time, or
    None to show the value the page itself glues as ``page_seconds`` (so a box placed at the
    top of a page can show the time of the run that executed it); ``parameters_doc``: the
    book document holding the parameter table, as a ``{doc}`` target relative to the page
    (executed pages sit in ``executed/``).

    Paste it with ``glue("rerun_box", Markdown(box), display=False)`` and a ``{glue:md}``
    directive with ``:format: myst`` (a plain Markdown output is rendered as CommonMark,
    which does not know admonitions)."""
    if not page or "/" in page or page.endswith((".py", ".ipynb")):
        raise ValueError(f"page must be a notebook name such as 'mitigation', got {page!r}")
    if params_file.startswith("/"):
        raise ValueError(f"params_file must be relative to the repository root, got the absolute path {params_file!r}")
    if seconds is not None and not seconds >= 0:
        raise ValueError(f"seconds must be a non-negative number or None, got {seconds!r}")
    took = "{glue:text}`page_seconds:.0f` s" if seconds is None else _duration(seconds)
    return "\n".join([
        ":::{admonition} Re-run this page",
        ":class: tip",
        "",
        f"This page was executed with `{params_file}` in {took}. From the repository root:",
        "",
        "```bash",
        rerun_command(page, params_file),
        "```",
        "",
        "or with papermill directly, where `-p NAME VALUE` changes one parameter:",
        "",
        "```bash",
        papermill_command(page, params_file),
        "```",
        "",
        f"Every parameter, its meaning and its default: {{doc}}`{parameters_doc}`.",
        ":::",
    ])


def exercise_command(exercise_id: str, params_file: str = "notebooks/params/testbed.yaml") -> str:
    """The command that runs one exercise variant (notebooks/exercises.yaml) of a page."""
    return f".venv/bin/python scripts/run_notebooks.py --params {params_file} --exercise {exercise_id}"


def exercise_rerun_box(exercise_id: str, page: str, params_file: str, overrides: dict) -> str:
    """MyST markdown of the re-run box of an exercise run: the page ``page`` executed with
    ``overrides`` over ``params_file``; the time is the one the run glued (``page_seconds``)."""
    if not overrides:
        raise ValueError(f"exercise {exercise_id!r}: an exercise run changes at least one setting, got no overrides")
    changed = ", ".join(f"`{key}: {json.dumps(value)}`" for key, value in overrides.items())
    return "\n".join([
        ":::{admonition} Re-run this exercise",
        ":class: tip",
        "",
        f"This page is {{doc}}`{page}` executed with {changed} over `{params_file}`, in "
        "{glue:text}`page_seconds:.0f` s (stages it leaves unchanged read from the main run's cache). From the repository root:",
        "",
        "```bash",
        exercise_command(exercise_id, params_file),
        "```",
        "",
        "The variants are listed in `notebooks/exercises.yaml`; every parameter, its meaning and its default: "
        "{doc}`../book/parameters`.",
        ":::",
    ])


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def alt_text(kind: str, subject: str, finding: str | None = None) -> str:
    """One sentence of alt text: what the figure is, of what, and (when given) what it shows.

    ``alt_text("Line plot", "extracted candidates against k for the three edits",
    "the UnitMem edit falls fastest")`` -> "Line plot of extracted candidates against k for
    the three edits: the UnitMem edit falls fastest." The finding should be the page's computed
    verdict, not a sentence typed before the run."""
    kind, subject = kind.strip(), subject.strip()
    if not kind or not subject:
        raise ValueError(f"alt text needs a kind and a subject, got kind={kind!r}, subject={subject!r}")
    text = f"{kind} of {subject}"
    if finding and finding.strip():
        text += f": {finding.strip().rstrip('.')}"
    return text + "."


def image_grid_alt(rows: list[str], columns: int, what: str) -> str:
    """Alt text of an image grid. ``image_grid_alt(["training image", "generation"], 10,
    "planted images of each class")`` gives "Grid of 2 rows by 10 columns of planted images
    of each class; rows: training image, generation." """
    if not rows or columns < 1:
        raise ValueError(f"an image grid needs at least one row and one column, got {len(rows)} rows, {columns} columns")
    return f"Grid of {len(rows)} rows by {columns} columns of {what.strip()}; rows: {', '.join(rows)}."


def localization_figure(frames: dict, k_percent: float, title: str):
    """The two panels of a UnitMem page's "localization against the planted ground truth":
    per image group, the share of the top-k% units' argmax images (bars, 95% intervals) beside
    the group's share of D' (black marks), and the AUC against ordinary images. ``frames`` maps
    a reading's label (e.g. "10 views", "T-2") to the (shares, aucs) DataFrames of
    :func:`memlib.summaries.localization_by_group`; the first reading's base rates are marked.
    Returns the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax_share, ax_auc) = plt.subplots(1, 2, figsize=(12, 3.8))
    width = 0.8 / max(1, len(frames))
    for r, (label, (shares, aucs)) in enumerate(frames.items()):
        x = np.arange(len(shares)) + (r - (len(frames) - 1) / 2) * width
        for ax, table, column in ((ax_share, shares, "share"), (ax_auc, aucs, "auc")):
            ax.bar(x, table[column], width, label=label, color=READING_COLORS[r % len(READING_COLORS)])
            below, above = table[column] - table[f"{column}_lo"], table[f"{column}_hi"] - table[column]
            ax.errorbar(x, table[column], yerr=np.clip([below, above], 0, None), fmt="none", ecolor="black", capsize=2)
    shares, aucs = next(iter(frames.values()))
    ax_share.scatter(np.arange(len(shares)), shares["base_rate"], marker="_", s=400, color="black", label="share of D'")
    ax_share.set_ylabel(f"share of top-{k_percent:g}% units' argmax")
    ax_auc.axhline(0.5, color="gray", linestyle="--")
    ax_auc.set_ylim(0, 1.05)
    ax_auc.set_ylabel("AUC against ordinary images")
    for ax, table in ((ax_share, shares), (ax_auc, aucs)):
        ax.set_xticks(range(len(table)), table["group"])
        ax.set_xlabel("group (copies per epoch)")
    ax_share.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def localization_alt(frames: dict, k_percent: float) -> str:
    """Alt text of :func:`localization_figure`, with the finding of its first reading at the most
    duplicated group (the last row of its tables): share against base rate, and AUC."""
    label, (shares, aucs) = next(iter(frames.items()))
    top_share, top_auc = shares.iloc[-1], aucs.iloc[-1]
    return alt_text(
        "Two grouped bar charts",
        f"the share of the top-{k_percent:g}% units whose argmax image is in each image group, beside the group's "
        f"share of D', and of each group's AUC against ordinary images, for the readings {', '.join(frames)}",
        f"with {label}, the {top_share['group']} group holds {top_share['share']:.2f} of the argmax images against a "
        f"base rate of {top_share['base_rate']:.2f}, and its AUC is {top_auc['auc']:.2f}")


class FigureWithAlt:
    """A rendered figure that carries its alt text: a PNG for notebook viewers and, for the book,
    an ``<img>`` with the PNG inline and an ``alt`` attribute. myst-nb prefers the HTML
    representation in an HTML build, and takes alt text for a plain image output only from the
    (static) cell metadata, so this is how a figure drawn in a loop gets alt text computed from
    its data."""

    def __init__(self, png: bytes, alt: str):
        alt = " ".join(alt.split())
        if not alt:
            raise ValueError("a figure needs alt text that says what it shows, got an empty string")
        self.png, self.alt = png, alt

    def _repr_png_(self) -> bytes:
        return self.png

    def _repr_html_(self) -> str:
        data = base64.b64encode(self.png).decode("ascii")
        return f'<img src="data:image/png;base64,{data}" alt="{html.escape(self.alt, quote=True)}" style="max-width: 100%;" />'


def show(fig, alt: str) -> None:
    """Display ``fig`` in the notebook with alt text ``alt`` (see :class:`FigureWithAlt`) and close it."""
    import matplotlib.pyplot as plt
    from IPython.display import display

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=mpl.rcParams["figure.dpi"], bbox_inches="tight")
    plt.close(fig)
    display(FigureWithAlt(buffer.getvalue(), alt))


def figure_md(key: str, alt: str, caption: str = "", name: str | None = None) -> str:
    """MyST of a ``{glue:figure}`` of the glued figure ``key`` with alt text ``alt`` (computed
    from the data), an optional ``caption`` (MyST, may use ``{glue:text}``) and an optional
    label ``name``. Glue it as ``Markdown`` and paste it with ``{glue:md}`` and ``:format: myst``:
    the figure can then stand at the top of its page, before the cell that draws it."""
    alt = " ".join(alt.split())
    if not key or not alt:
        raise ValueError(f"a glued figure needs a key and alt text, got key={key!r}, alt={alt!r}")
    lines = [f"```{{glue:figure}} {key}", f":alt: {alt}"]
    if name:
        lines.append(f":name: {name}")
    return "\n".join([*lines, "", caption.strip(), "```"]) + "\n"
