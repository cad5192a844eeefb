"""The notebook path, in a real Jupyter kernel: a notebook executed by nbconvert (nbclient) in a fresh
kernel, with no `%matplotlib inline`, shows the figures as images and the result as the page.

Needs nbformat, nbclient (with nbconvert) and ipykernel (the test extra has them); without them, or
without the tiny model, it skips, except under CI=true, where it fails.
"""

import os

import pytest
from conftest import REPO

CELLS = [
    # The engine from this checkout, in a kernel that has run nothing else.
    f"import sys; sys.path.insert(0, {str(REPO)!r})\nfrom engine import GPT2",
    "model = GPT2.from_pretrained({model!r})\nresult = model.explain('ROMEO:', max_new_tokens=6, steps=4, progress=False)",
    "result.plot_rankings()",
    "result.plot_saliency(-1, 'erasure')",
    "result",
]


def missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}, and CI=true requires the notebook test to run")
    pytest.skip(reason)


def test_a_fresh_kernel_shows_the_figures(tiny_model_dir, tmp_path):
    try:
        import nbformat
        from nbclient import NotebookClient
    except ImportError:
        missing("nbformat and nbclient are not installed (pip install -e '.[test]')")
    try:
        import ipykernel  # noqa: F401
    except ImportError:
        missing("ipykernel is not installed (pip install -e '.[test]')")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(cell.format(model=str(tiny_model_dir))) for cell in CELLS]
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    nbformat.write(notebook, tmp_path / "explain.ipynb")  # executed, for a person to open

    def outputs(i):
        return [o for o in notebook.cells[i].outputs if o.output_type in ("execute_result", "display_data")]

    for i in (2, 3):  # the figures: an image, not "<Figure size ...>" text
        (shown,) = outputs(i)
        assert "image/png" in shown.data, shown.data.get("text/plain")
        assert shown.data["image/png"].startswith("iVBORw0KGgo")  # base64 of the PNG signature
    (page,) = outputs(4)
    assert page.data["text/html"].startswith("<iframe srcdoc=")
    errors = [o for cell in notebook.cells for o in cell.outputs if o.output_type == "error"]
    assert errors == []
