"""What a Jupyter cell shows, in a real kernel (nbclient): figures drawn
once, one progress bar per computation."""

from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")


def run(cells: list[str], tmp_path) -> list[list[dict]]:
    """Run ``cells`` in a fresh kernel; each cell's outputs."""
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(source) for source in cells]
    )
    nbclient.NotebookClient(
        nb,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": tmp_path}},
    ).execute()
    return [cell.outputs for cell in nb.cells]


def pictures(outputs: list[dict]) -> int:
    """How many pictures (or live canvases) a cell shows."""
    kinds = ("image/png", "application/vnd.jupyter.widget-view+json")
    return sum(
        any(kind in out.get("data", {}) for kind in kinds)
        for out in outputs
        if out["output_type"] in ("display_data", "execute_result")
    )


SETUP = (
    "import xsignal\n"
    "from xsignal.testing import spectrum_image\n"
    "da = spectrum_image((8, 8, 32), rank=2).data\n"
    "dec = da.signal.decomposition('SVD', 3, progress=False)"
)


def test_plots_are_drawn_once_with_the_inline_backend(tmp_path):
    outputs = run(
        [
            "%matplotlib inline",
            SETUP,
            "dec.plot(2)",  # the cell's value
            "da.signal.plot(pixel={'y': 1, 'x': 2})",
            "fig = da.signal.plot()",  # not the value: drawn at the cell's end
            "import matplotlib.pyplot as plt\nplt.subplots()",  # matplotlib's own
        ],
        tmp_path,
    )
    assert [pictures(out) for out in outputs[2:]] == [1, 1, 1, 1]


def test_plots_are_drawn_once_with_ipympl(tmp_path):
    pytest.importorskip("ipympl")
    outputs = run(
        ["%matplotlib widget", SETUP, "dec.plot(2)", "da.signal.plot()"], tmp_path
    )
    for out in outputs[2:]:
        assert pictures(out) == 1
        (value,) = [o for o in out if o["output_type"] == "execute_result"]
        assert value["data"]["text/plain"].startswith("<Figure size")
