"""memlib.style: the palette is colour-blind safe and distinct where colours share a figure,
names are stable, apply() sets the book's rcParams, and the re-run box carries the exact command."""

import matplotlib as mpl
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from memlib import style

OKABE_ITO_PUBLISHED = {"#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7"}


def to_hex_upper(color) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color).upper()


def distinct(colors) -> bool:
    return len({to_rgb(c) for c in colors}) == len(list(colors))


def test_palette_is_okabe_ito_and_distinct_within_each_figure_role():
    assert set(style.OKABE_ITO.values()) - {"#999999"} == OKABE_ITO_PUBLISHED
    assert set(style.FAMILY_COLORS.values()) | set(style.EDIT_COLORS.values()) <= set(style.OKABE_ITO.values())
    assert distinct(style.FAMILY_COLORS.values())
    assert distinct(style.EDIT_COLORS.values())
    assert distinct(style.group_colors([2, 4, 8, 16, 32]).values())
    assert distinct(style.READING_COLORS) and set(style.READING_COLORS) <= set(style.OKABE_ITO.values())


def test_names_are_stable():
    assert set(style.EDIT_COLORS) == set(style.EDIT_NAMES) == {
        "unedited", "unitmem-half", "random-half", "magnitude-half", "unitmem-zero", "per-block-half"}
    assert style.EDIT_NAMES["unitmem-half"] == "top UnitMem, halved"
    assert style.LABELS["block"] == "block" and style.LABELS["scale"] == "scale" and style.LABELS["unit"] == "fc1 unit"
    assert style.family_name("var") == "VAR (testbed)" and style.family_name("rar", "rar-testbed") == "RAR (testbed)"
    assert style.family_name("var", "var-d30") == "VAR-d30" and style.family_name("rar", "rar-xxl") == "RAR-XXL"
    with pytest.raises(ValueError, match="'rar-b' is not of family 'var'"):
        style.family_name("var", "rar-b")
    with pytest.raises(ValueError, match="family must be one of var, rar"):
        style.family_name("dit")


def test_planted_levels_run_dark_to_light_in_dose_order():
    colors = style.planted_colors([32, 2, 8, 4, 16])
    assert list(colors) == ["2x", "4x", "8x", "16x", "32x"]  # ascending, keyed like TestbedData.groups
    luminance = [float(np.dot(to_rgb(c), [0.2126, 0.7152, 0.0722])) for c in colors.values()]
    assert all(a < b for a, b in zip(luminance, luminance[1:])), luminance
    assert max(luminance) < 0.75, "the lightest level must still show on white"
    assert list(style.group_colors([2, 4])) == ["control", "2x", "4x", "ordinary"]
    with pytest.raises(ValueError, match="distinct duplication levels >= 2"):
        style.planted_colors([1, 2])


def test_apply_sets_readable_sizes_and_the_palette_cycle():
    with mpl.rc_context():
        mpl.rcdefaults()
        style.apply()
        assert mpl.rcParams["font.size"] >= 11 and mpl.rcParams["figure.figsize"][0] == style.FIGURE_WIDTH_IN
        cycle = [c.upper() for c in mpl.rcParams["axes.prop_cycle"].by_key()["color"]]
        assert cycle[:2] == [style.FAMILY_COLORS["var"], style.FAMILY_COLORS["rar"]]
        assert distinct(cycle)
    assert mpl.rcParams["font.size"] == mpl.rcParamsDefault["font.size"]  # rc_context restored it


def test_rerun_box_carries_the_exact_commands_the_time_and_the_table_link():
    box = style.rerun_box("mitigation", "notebooks/params/testbed.yaml", 754.0)
    assert box.startswith(":::{admonition} Re-run this page") and box.rstrip().endswith(":::")
    assert ".venv/bin/python scripts/run_notebooks.py --params notebooks/params/testbed.yaml --only mitigation" in box
    assert "notebooks/mitigation.py" in box and "-f notebooks/params/testbed.yaml - executed/mitigation.ipynb" in box
    assert "12.6 min" in box
    assert "{doc}`../book/parameters`" in box
    assert "31 s" in style.rerun_box("testbed", "notebooks/params/smoke.yaml", 31.2)


def test_rerun_box_without_a_time_pastes_the_pages_glued_time():
    box = style.rerun_box("testbed", "notebooks/params/smoke.yaml", None)
    assert "{glue:text}`page_seconds:.0f` s" in box


@pytest.mark.parametrize("args, message", [
    (("executed/testbed", "notebooks/params/smoke.yaml", 1.0), "notebook name"),
    (("testbed.py", "notebooks/params/smoke.yaml", 1.0), "notebook name"),
    (("testbed", "/notebooks/params/smoke.yaml", 1.0), "absolute path"),
    (("testbed", "notebooks/params/smoke.yaml", float("nan")), "non-negative"),
])
def test_rerun_box_refuses_bad_input_naming_it(args, message):
    with pytest.raises(ValueError, match=message):
        style.rerun_box(*args)


def test_alt_text_is_one_sentence_saying_what_and_what_it_shows():
    assert style.alt_text("Line plot", "extracted candidates against k", "the UnitMem edit falls fastest.") == \
        "Line plot of extracted candidates against k: the UnitMem edit falls fastest."
    assert style.alt_text("Heatmap", "mean UnitMem per scale and block") == "Heatmap of mean UnitMem per scale and block."
    assert style.image_grid_alt(["training image", "generation"], 10, "planted images") == \
        "Grid of 2 rows by 10 columns of planted images; rows: training image, generation."
    with pytest.raises(ValueError, match="kind and a subject"):
        style.alt_text("", "x")


def test_localization_figure_draws_every_reading_and_the_base_rates():
    import numpy as np
    import pandas as pd

    from memlib import summaries

    rng = np.random.default_rng(0)
    groups = {"control": np.arange(0, 10), "32x": np.arange(10, 14)}
    scores_SKU, argmax_SKU = rng.uniform(0, 1, (1, 2, 20)), rng.integers(0, 40, (1, 2, 20))
    shares, aucs = summaries.localization_by_group(scores_SKU, argmax_SKU, 20, groups, np.arange(40))
    frames = {"a": (pd.DataFrame(shares), pd.DataFrame(aucs)), "b": (pd.DataFrame(shares), pd.DataFrame(aucs))}
    fig = style.localization_figure(frames, 20, "title")
    ax_share, ax_auc = fig.axes
    assert len(ax_share.patches) == 2 * len(groups) == len(ax_auc.patches)  # a bar per group and reading
    bar_colors = [to_hex_upper(p.get_facecolor()) for p in ax_share.patches]
    assert bar_colors == [style.READING_COLORS[0]] * len(groups) + [style.READING_COLORS[1]] * len(groups)
    assert [t.get_text() for t in ax_share.get_xticklabels()] == ["control", "32x"]
    marks = ax_share.collections[-1].get_offsets()[:, 1]
    assert np.allclose(marks, [10 / 40, 4 / 40])  # the base rates: each group's share of D'
    assert fig._suptitle.get_text() == "title"
    alt = style.localization_alt(frames, 20)
    top = frames["a"][0].iloc[-1]
    assert alt.startswith("Two grouped bar charts of the share of the top-20% units") and "readings a, b" in alt
    assert f"the 32x group holds {top['share']:.2f} of the argmax images against a base rate of 0.10" in alt
    assert f"its AUC is {frames['a'][1].iloc[-1]['auc']:.2f}." in alt


def test_ordered_colors_run_dark_to_light_like_the_planted_levels():
    colors = style.ordered_colors(5)
    assert colors == list(style.planted_colors([2, 4, 8, 16, 32]).values())
    luminance = [float(np.dot(to_rgb(c), [0.2126, 0.7152, 0.0722])) for c in colors]
    assert all(a < b for a, b in zip(luminance, luminance[1:])), luminance
    assert len(style.ordered_colors(1)) == 1
    with pytest.raises(ValueError, match="whole number of colours >= 1"):
        style.ordered_colors(0)


def test_shown_figure_carries_its_alt_text_in_the_html_and_the_png():
    import base64
    import html

    from IPython.core.formatters import DisplayFormatter

    shown = style.FigureWithAlt(b"\x89PNG fake", 'Line plot of "x" <falling>\n  from 1 to 0.')
    data, _ = DisplayFormatter().format(shown)
    assert data["image/png"] == b"\x89PNG fake"
    img = data["text/html"]
    assert img.startswith('<img src="data:image/png;base64,' + base64.b64encode(b"\x89PNG fake").decode())
    expected = html.escape('Line plot of "x" <falling> from 1 to 0.', quote=True)
    assert f'alt="{expected}"' in img
    with pytest.raises(ValueError, match="alt text"):
        style.FigureWithAlt(b"", "  \n ")


def test_figure_md_is_a_glue_figure_with_one_line_alt_a_label_and_the_caption():
    md = style.figure_md("fig_main", "Bar chart of extracted\nshare per group.", "Share per group.", "fig-x")
    assert md.splitlines() == ["```{glue:figure} fig_main", ":alt: Bar chart of extracted share per group.",
                               ":name: fig-x", "", "Share per group.", "```"]
    assert ":name:" not in style.figure_md("k", "alt")
    with pytest.raises(ValueError, match="key and alt text"):
        style.figure_md("k", " ")


def test_show_displays_the_rendered_figure_with_its_alt_and_closes_it(monkeypatch):
    import IPython.display
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(IPython.display, "display", shown.append)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    style.show(fig, "Line plot of y falling from 1 to 0.")
    assert len(shown) == 1 and shown[0].alt == "Line plot of y falling from 1 to 0."
    assert shown[0].png.startswith(b"\x89PNG\r\n\x1a\n")
    assert not plt.fignum_exists(fig.number)


def test_sweep_modes_have_one_name_and_one_colour_everywhere():
    from memlib import summaries
    from memlib.sweep import MODES

    assert set(summaries.MODE_LABELS) == set(MODES) | {"baseline"}
    for mode, name in summaries.MODE_LABELS.items():
        key = "unedited" if mode == "baseline" else mode
        assert name == style.EDIT_NAMES[key] and style.edit_color(mode) == style.EDIT_COLORS[key]
    assert style.edit_palette()["top UnitMem, halved"] == style.EDIT_COLORS["unitmem-half"]


def test_scroll_table_wraps_every_column_in_a_scrolling_box():
    import pandas as pd

    frame = pd.DataFrame({f"extracted@{n}": [n] for n in range(30)} | {"fid": [1.5]})
    html = style.scroll_table(frame.style.hide(axis="index")).data
    assert html.startswith('<div class="table-scroll" style="overflow-x: auto;') and html.endswith("</div>")
    assert "extracted@29" in html and "fid" in html
    folded = style.scroll_table(frame, folded="The full table (31 columns) <all seeds>").data
    assert folded.startswith("<details><summary>The full table (31 columns) &lt;all seeds&gt;</summary><div class=")
    assert folded.endswith("</div></details>") and "extracted@29" in folded


def test_exercise_rerun_box_gives_the_variants_command_and_its_change():
    box = style.exercise_rerun_box("unitmem-rar-last", "unitmem-rar", "notebooks/params/testbed.yaml", {"selection": "last"})
    assert ".venv/bin/python scripts/run_notebooks.py --params notebooks/params/testbed.yaml --exercise unitmem-rar-last" in box
    assert '`selection: "last"`' in box and "{doc}`unitmem-rar`" in box and "{glue:text}`page_seconds:.0f` s" in box
    assert box.startswith(":::{admonition} Re-run this exercise") and box.endswith(":::")
    with pytest.raises(ValueError, match="no overrides"):
        style.exercise_rerun_box("x", "unitmem-rar", "notebooks/params/testbed.yaml", {})
