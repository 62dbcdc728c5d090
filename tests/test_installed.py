"""krd_jax as a user gets it: a wheel built from this checkout, installed (not editable)
into a fresh virtual environment, used from a directory outside the checkout.

What `pip install git+URL` does in Colab, minus the network: the wheel is built from a
copy of the package files, and the fresh environment sees the pinned requirements
already installed here through a path file (a folder of links to this environment's
site-packages, without this checkout's editable krd_jax), so nothing is downloaded and
every import of krd_jax must come from the installed wheel.
"""

import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest

from krd_jax import methods

pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
nbformat = pytest.importorskip("nbformat")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "experiments", "colab", "quickstart.ipynb")
# What the wheel is built from: the package and its metadata, nothing else.
_BUILD_INPUTS = ("krd_jax", "setup.cfg", "pyproject.toml", "README.md")


@pytest.fixture(scope="module")
def wheel_and_deps(tmp_path_factory):
  """(the built wheel, a folder linking to every installed requirement but krd_jax)."""
  root = tmp_path_factory.mktemp("installed")
  src = root / "src"
  src.mkdir()
  for name in _BUILD_INPUTS:
    source = os.path.join(REPO, name)
    if os.path.isdir(source):
      shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    else:
      shutil.copy(source, src / name)
  subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                  "--no-build-isolation", "--no-index", "-w", str(root / "dist"), str(src)],
                 check=True, capture_output=True)
  wheel, = (root / "dist").glob("krd_jax-*.whl")
  deps = root / "deps"
  deps.mkdir()
  site = sysconfig.get_paths()["purelib"]
  for entry in os.listdir(site):
    # This checkout's editable install (its metadata, path hook and .pth) stays out.
    if entry.startswith(("krd_jax", "__editable__", "_krd_jax")) or entry.endswith(".pth"):
      continue
    os.symlink(os.path.join(site, entry), deps / entry)
  return wheel, deps


def _fresh_venv(path, deps):
  """A new virtual environment that sees the requirements in `deps`; returns its python."""
  subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
  python = path / "bin" / "python"
  site = subprocess.run([str(python), "-c", "import sysconfig; "
                         "print(sysconfig.get_paths()['purelib'])"],
                        check=True, capture_output=True, text=True).stdout.strip()
  with open(os.path.join(site, "krd_jax_test_requirements.pth"), "w") as f:
    f.write(f"{deps}\n")
  return python


def _env(tmp_path):
  """This environment minus the checkout: no PYTHONPATH, pip offline, one CPU device."""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", JAX_PLATFORMS="cpu",
             KRD_JAX_CACHE=str(tmp_path / "cache"), MPLBACKEND="Agg",
             XLA_FLAGS=re.sub(r"--xla_force_host_platform_device_count=\d+", "",
                              os.environ.get("XLA_FLAGS", "")).strip())
  return env


def _run(args, tmp_path, **kwargs):
  return subprocess.run([str(a) for a in args], cwd=tmp_path / "elsewhere",
                        env=_env(tmp_path), capture_output=True, text=True, **kwargs)


@pytest.fixture
def elsewhere(tmp_path):
  (tmp_path / "elsewhere").mkdir()
  return tmp_path


def test_installed_package_runs_the_demo_recipes_and_ablate_from_anywhere(
    wheel_and_deps, elsewhere):
  wheel, deps = wheel_and_deps
  python = _fresh_venv(elsewhere / "venv", deps)
  install = _run([python, "-m", "pip", "install", "-q", wheel], elsewhere)
  assert install.returncode == 0, install.stderr  # its requirements are all satisfied
  where = _run([python, "-c", "import krd_jax; print(krd_jax.__file__)"], elsewhere)
  assert where.stdout.startswith(str(elsewhere / "venv")), where.stdout + where.stderr

  # The console script, the embedded default in its local mode (two of its students:
  # the notebook below runs all of them).
  demo = _run([elsewhere / "venv" / "bin" / "krd_jax", "demo", "--config=digits_lt:local",
               "--config.demo_methods=('krd','logit_adjusted')", "--config.workdir=runs/demo",
               "--config.progress=False"], elsewhere)
  assert demo.returncode == 0, demo.stderr[-3000:]
  assert "WARNING" not in demo.stderr and "Traceback" not in demo.stderr, demo.stderr
  names = [line.split("|")[1].strip() for line in demo.stdout.splitlines()
           if line.startswith("| ")][1:]
  # digits_lt keeps a balanced validation split: post-hoc tau is chosen on it, and the
  # teacher-free student gets its post-hoc row too (the bar KRDistill must beat).
  assert [re.sub(r"tau [0-9.]+,", "tau T,", n) for n in names] == [
      "teacher mlp (CE)", "teacher mlp (CE) + post-hoc LA (tau T, on val)",
      "student mlp KRDistill (krd)", "student mlp logit-adjusted CE (logit_adjusted)",
      "student mlp logit-adjusted CE (logit_adjusted) + post-hoc LA (tau T, on val)"]
  assert (elsewhere / "elsewhere" / "runs" / "demo" / "per_class_accuracy.png").exists()

  # A shipped recipe by name resolves (its image folder need not exist to be shown).
  show = _run([python, "-m", "krd_jax", "show", "--config=cifar100_lt:offline,local"],
              elsewhere)
  assert show.returncode == 0, show.stderr
  assert "name: image_folder" in show.stdout and "cifar100-png" in show.stdout
  assert "cifar100_lt_resnet32x4_resnet8x4_local" in show.stdout
  typo = _run([python, "-m", "krd_jax", "show", "--config=cifar100:offline"], elsewhere)
  assert typo.returncode == 2
  assert "no shipped recipe 'cifar100'" in typo.stderr and "cifar100_lt" in typo.stderr

  # The scripts of a clone run against the installed package, from any directory.
  ablate = _run([python, os.path.join(REPO, "experiments", "ablate.py"),
                 "--config=digits_lt", "--grid", "methods.krd.lamda=0,1"], elsewhere)
  assert ablate.returncode != 0
  assert "unknown config key config.methods.krd.lamda" in ablate.stderr, ablate.stderr
  assert not (elsewhere / "elsewhere" / "runs" / "digits_lt_ablate").exists()


_EXECUTE_NOTEBOOK = """
import sys
import nbclient, nbformat
nb = nbformat.read(sys.argv[1], as_version=4)
client = nbclient.NotebookClient(nb, timeout=240, startup_timeout=60, kernel_name="python3",
                                 resources={"metadata": {"path": "."}})
try:
  client.execute()
finally:
  nbformat.write(nb, sys.argv[2])
"""


def _outputs(cell, output_type=None):
  return [o for o in cell.get("outputs", [])
          if output_type is None or o["output_type"] == output_type]


def _text(cell) -> str:
  return "".join(o.get("text", "") for o in _outputs(cell, "stream"))


def test_quickstart_notebook_installs_krd_jax_and_runs_end_to_end(wheel_and_deps, elsewhere):
  """The notebook in a fresh environment without krd_jax: its own install cell installs
  the wheel (KRD_NOTEBOOK_INSTALL_FROM stands in for the repository URL), then every
  cell runs, in its small setting, in a kernel of that environment."""
  wheel, deps = wheel_and_deps
  python = _fresh_venv(elsewhere / "venv", deps)
  executed = elsewhere / "executed.ipynb"
  env_extra = {"KRD_NOTEBOOK_SMALL": "1", "KRD_NOTEBOOK_INSTALL_FROM": str(wheel),
               "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
  env = dict(_env(elsewhere), **env_extra)
  proc = subprocess.run([str(python), "-c", _EXECUTE_NOTEBOOK, NOTEBOOK, str(executed)],
                        cwd=elsewhere / "elsewhere", env=env, capture_output=True, text=True)
  assert proc.returncode == 0, proc.stderr[-4000:]

  nb = nbformat.read(str(executed), as_version=4)
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert "skipping the install" not in _text(code[0])  # it installed krd_jax itself
  assert f"from {elsewhere / 'venv'}" in _text(code[1])  # ... and imports that copy
  assert "SMALL=True" in _text(code[1])
  # Two rectification figures, then the demo's per-class plot and the group bars.
  images = [o for c in code for o in _outputs(c) if "image/png" in o.get("data", {})]
  assert len(images) == 4
  demo_cell = next(c for c in code if "runs.demo(cfg)" in c.source)
  table = "".join(o["data"].get("text/markdown", "") for o in _outputs(demo_cell)
                  if "data" in o)
  for method in ("ce", "kd", "bkd", "dkd", "ltkd", "krd"):
    assert f"student mlp {methods.display_name(method)} " in table
  workdir = elsewhere / "elsewhere" / "runs" / "digits_lt_small"
  assert (workdir / "per_class_accuracy.png").stat().st_size > 1000
  assert (workdir / "report.md").exists()
  assert "cifar100_lt: imbalance 100" in _text(code[-1])  # the shipped recipe loads
  assert "not run" in _text(code[-1])  # CIFAR-100-LT: configured, not trained
