"""Prints a long-tailed dataset's class counts and groups, and plots the counts.

  python experiments/data_summary.py --dataset digits_lt --imbalance 50 --out runs/data
  python experiments/data_summary.py --dataset image_folder \
      --data-dir ~/.cache/krd_jax/cifar10-jpg --imbalance 100 --out runs/data

Writes <out>/<dataset>_counts.png (bar plot, log scale, bars coloured by absolute
group) and <out>/<dataset>_counts.tsv (the table). Both group splits are printed and
named: "absolute" (many > 100, few < 20 images) and "tercile" (head / middle / tail
thirds of the classes by count).
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import krd_jax.data as kd

# Above this many classes the table shows the first and last rows only.
_FULL_TABLE_MAX_CLASSES = 100
_GROUP_COLOURS = {"many": "tab:blue", "medium": "tab:orange", "few": "tab:red"}


def counts_table(ds: kd.LongTailDataset) -> list[tuple[int, str, int, str, str]]:
  """Rows (class, name, count, absolute group, tercile group), in class order."""
  absolute, tercile = ds.groups("absolute"), ds.groups("tercile")
  return [(c, ds.class_names[c], int(ds.train_counts[c]), absolute[c], tercile[c])
          for c in range(ds.num_classes)]


def group_summary(ds: kd.LongTailDataset, split: str) -> str:
  """'split "absolute": many 35 classes / 15300 images, ...'."""
  groups = ds.groups(split)
  parts = []
  for name in kd.GROUPS[split]:
    members = groups == name
    parts.append(f"{name} {int(members.sum())} classes / "
                 f"{int(ds.train_counts[members].sum())} images")
  return f'split "{split}": ' + ", ".join(parts)


def format_table(rows, max_rows: int = _FULL_TABLE_MAX_CLASSES) -> str:
  header = f"{'class':>6}  {'name':<24} {'count':>7}  {'absolute':<8} {'tercile':<7}"
  lines = [header, "-" * len(header)]
  shown = rows if len(rows) <= max_rows else rows[:10] + [None] + rows[-10:]
  for row in shown:
    if row is None:
      lines.append(f"{'...':>6}  ({len(rows) - 20} classes not shown)")
      continue
    c, name, count, absolute, tercile = row
    lines.append(f"{c:>6}  {name[:24]:<24} {count:>7}  {absolute:<8} {tercile:<7}")
  return "\n".join(lines)


def plot_counts(ds: kd.LongTailDataset, path: str) -> None:
  """Bar plot of class counts on a log axis, coloured by absolute group."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top

  groups = ds.groups("absolute")
  fig, ax = plt.subplots(figsize=(min(14, 4 + 0.25 * ds.num_classes), 4))
  x = np.arange(ds.num_classes)
  for name in kd.GROUPS["absolute"]:
    members = groups == name
    if members.any():
      ax.bar(x[members], ds.train_counts[members], width=0.9, color=_GROUP_COLOURS[name],
             label=f"{name} ({int(members.sum())})")
  ax.set_yscale("log")
  ax.set_xlabel("class")
  ax.set_ylabel("training images (log)")
  info = ds.info
  profile = (f"{info['profile']}, IF={info['imbalance']:g}" if "profile" in info
             else "as given")
  ax.set_title(f"{ds.name}: {ds.num_train} training images ({profile})")
  if ds.num_classes <= 20:
    ax.set_xticks(x, ds.class_names, rotation=45, ha="right")
  ax.legend(title='group ("absolute" split)')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--dataset", default="digits_lt", choices=kd.DATASET_NAMES)
  parser.add_argument("--imbalance", type=float, default=None,
                      help="imbalance factor; default the dataset's (digits 50, others 100)")
  parser.add_argument("--profile", default="exp", choices=kd.PROFILES)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--n-max", type=int, default=None)
  parser.add_argument("--val-per-class", type=int, default=0)
  parser.add_argument("--data-dir", default=None)
  parser.add_argument("--split-list-dir", default=None)
  parser.add_argument("--cache-dir", default=None)
  parser.add_argument("--out", required=True, help="folder for the plot and the table")
  args = parser.parse_args(argv)

  imbalance = args.imbalance
  if imbalance is None:
    imbalance = kd.DATASET_DEFAULTS[args.dataset].get("imbalance", 100.0)
  ds = kd.load_dataset(
      args.dataset, imbalance=imbalance, profile=args.profile, seed=args.seed,
      val_per_class=args.val_per_class, data_dir=args.data_dir,
      split_list_dir=args.split_list_dir, cache_dir=args.cache_dir, n_max=args.n_max)

  rows = counts_table(ds)
  print(kd.describe(ds))
  print(format_table(rows))
  for split in kd.GROUPS:
    print(group_summary(ds, split))

  os.makedirs(args.out, exist_ok=True)
  table_path = os.path.join(args.out, f"{ds.name}_counts.tsv")
  with open(table_path, "w") as f:
    f.write("class\tname\tcount\tabsolute\ttercile\n")
    for row in rows:
      f.write("\t".join(str(v) for v in row) + "\n")
  plot_path = os.path.join(args.out, f"{ds.name}_counts.png")
  plot_counts(ds, plot_path)
  print(f"wrote {plot_path} and {table_path}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
