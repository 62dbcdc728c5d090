"""The Colab quickstart notebook runs headlessly, offline, in its small setting."""

import os
import re

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
pytest.importorskip("ipykernel")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "experiments", "colab", "quickstart.ipynb")


def _outputs(cell, output_type=None):
  return [o for o in cell.get("outputs", [])
          if output_type is None or o["output_type"] == output_type]


def _text(cell) -> str:
  return "".join(o.get("text", "") for o in _outputs(cell, "stream"))


def test_quickstart_notebook_runs_offline_small(tmp_path, monkeypatch):
  # The kernel inherits this environment: SMALL mode, krd_jax and experiments/ from
  # this checkout (so the install and clone cells are skipped), and pip pointed at no
  # index, so a cell that tried to install anyway would fail instead of downloading.
  monkeypatch.setenv("KRD_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
      p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
  monkeypatch.setenv("PIP_NO_INDEX", "1")
  monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
  # One CPU device, not conftest's four: the demo compiles a quarter faster, and the
  # notebook's multi-device path is the library's, tested elsewhere.
  monkeypatch.setenv("XLA_FLAGS", re.sub(r"--xla_force_host_platform_device_count=\d+",
                                         "", os.environ.get("XLA_FLAGS", "")).strip())
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=180, startup_timeout=60,
                                   kernel_name="python3",
                                   resources={"metadata": {"path": str(tmp_path)}})
  client.execute()  # raises CellExecutionError on the first failing cell
  if os.environ.get("KRD_NOTEBOOK_OUT"):  # to look at the executed notebook
    nbformat.write(nb, os.environ["KRD_NOTEBOOK_OUT"])

  code = [c for c in nb.cells if c.cell_type == "code"]
  assert "skipping the install" in _text(code[0])
  assert "SMALL=True" in _text(code[1])
  # Two rectification figures, then the demo's per-class plot and the group bars.
  images = [o for c in code for o in _outputs(c) if "image/png" in o.get("data", {})]
  assert len(images) == 4
  demo_cell = next(c for c in code if "runs.demo(cfg)" in c.source)
  table = "".join(o["data"].get("text/markdown", "") for o in _outputs(demo_cell)
                  if "data" in o)
  for method in ("ce", "kd", "bkd", "dkd", "krd"):
    assert f"student mlp {method} " in table
  workdir = tmp_path / "runs" / "digits_lt_small"
  assert (workdir / "per_class_accuracy.png").stat().st_size > 1000
  assert (workdir / "report.md").exists()
  assert "not run" in _text(code[-1])  # CIFAR-100-LT: configured, not trained
  assert not (tmp_path / "krd_jax_src").exists()
