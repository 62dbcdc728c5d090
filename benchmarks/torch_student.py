"""One student run in PyTorch, as a PyTorch user runs it (one process per method): the
PyTorch side of benchmarks/time_to_table.py.

Trains a CIFAR ResNet student (benchmarks/torch_reference.py) from a frozen teacher on
in-memory long-tailed arrays with krd_jax's recipe (SGD with momentum and coupled weight
decay, linear warm-up then step decay, per-image pad-4 crop and flip, the same batch
size and steps, incomplete batches dropped), then evaluates validation and test,
chooses the post-hoc tau on validation and saves its weights. torch.compile
(default mode) and channels_last: the fastest PyTorch variant of
benchmarks/step_throughput.py on this machine. It imports no jax.

  python benchmarks/torch_student.py --data D.npz --teacher T.npz --recipe '{...}' \
      --method kd --out run.json

The recipe (JSON, written by time_to_table.py from the krd_jax config): epochs, batch,
lr, momentum, weight_decay, warmup_epochs, step_epochs, step_gamma, the teacher and
student models, the method's hyperparameters, the post-hoc taus.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference  # noqa: E402


TEACHER_FREE = ("ce", "logit_adjusted")


def effective_number_weights(counts: np.ndarray, beta: float) -> np.ndarray:
  """(1 - beta) / (1 - beta^n), normalised to mean 1 (Cui et al. 2019)."""
  w = (1.0 - beta) / (1.0 - np.power(beta, counts))
  return w / w.mean()


def make_loss(method: str, hp: dict, counts: np.ndarray, steps_per_epoch: int):
  """loss(student_logits, teacher_logits, labels, step), as krd_jax's objective."""
  log_prior = torch.tensor(np.log(counts / counts.sum()), dtype=torch.float32)
  warmup = hp.get("warmup_epochs", 0) * steps_per_epoch

  def scale(step):  # the distillation terms' linear warm-up
    return min(step / warmup, 1.0) if warmup > 0 else 1.0

  def kl(target_log, student_log):
    return F.kl_div(student_log, target_log, reduction="batchmean", log_target=True)

  if method == "ce":
    return lambda s, t, y, step: F.cross_entropy(s, y)
  if method == "logit_adjusted":
    return lambda s, t, y, step: F.cross_entropy(s + hp["tau"] * log_prior, y)
  temp = hp["temperature"]
  if method == "kd":
    def kd(s, t, y, step):
      soft = kl(F.log_softmax(t / temp, 1), F.log_softmax(s / temp, 1)) * temp ** 2
      return hp["ce_weight"] * F.cross_entropy(s, y) + scale(step) * hp["kd_weight"] * soft
    return kd
  if method == "bkd":
    log_w = torch.tensor(np.log(effective_number_weights(counts, hp["beta_en"])),
                         dtype=torch.float32)
    def bkd(s, t, y, step):
      target = F.log_softmax(t / temp + log_w, 1)
      soft = kl(target, F.log_softmax(s / temp, 1)) * temp ** 2
      return F.cross_entropy(s, y) + scale(step) * hp["kd_weight"] * soft
    return bkd
  if method == "dkd":
    def dkd(s, t, y, step):  # mdistiller's dkd_loss, the target masked exactly
      gt = F.one_hot(y, s.shape[1]).bool()
      ps, pt = F.softmax(s / temp, 1), F.softmax(t / temp, 1)
      bs = torch.stack([(ps * gt).sum(1), (ps * ~gt).sum(1)], 1).clamp_min(1e-12)
      bt = torch.stack([(pt * gt).sum(1), (pt * ~gt).sum(1)], 1).clamp_min(1e-12)
      tckd = kl(bt.log(), bs.log()) * temp ** 2
      nckd = kl(F.log_softmax(t / temp - 1e9 * gt, 1),
                F.log_softmax(s / temp - 1e9 * gt, 1)) * temp ** 2
      return F.cross_entropy(s, y) + scale(step) * (hp["alpha"] * tckd + hp["beta"] * nckd)
    return dkd
  raise ValueError(f"no PyTorch version of {method!r} here")


def load_teacher(path: str, model: str, classes: int) -> torch.nn.Module:
  """The krd_jax teacher's weights (time_to_table.torch_order), in eval mode."""
  teacher = torch_reference.create(model, classes)
  tensors = np.load(path)
  with torch.no_grad():  # torch's registration order: parameters, then BN statistics
    for k, v in enumerate([*teacher.parameters(), *(b for n, b in teacher.named_buffers()
                                                    if "running" in n)]):
      v.copy_(torch.from_numpy(tensors[f"arr_{k}"]))
  return teacher.eval()


def augment(images: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
  """Per-image random pad-crop and horizontal flip of a uint8 NCHW batch, as floats."""
  b, _, h, w = images.shape
  x = F.pad(images.float(), (pad, pad, pad, pad))
  i = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
  j = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
  rows = (i[:, None] + torch.arange(h))[:, None, :, None]
  cols = (j[:, None] + torch.arange(w))[:, None, None, :]
  x = x[torch.arange(b)[:, None, None, None], torch.arange(3)[None, :, None, None], rows, cols]
  flip = torch.rand(b, generator=gen) < 0.5
  return torch.where(flip[:, None, None, None], x.flip(3), x)


def lr_at(step: int, r: dict, spe: int) -> float:
  warm = r["warmup_epochs"] * spe
  if step < warm:
    return r["lr"] * step / warm
  drops = sum(step >= e * spe for e in r["step_epochs"])
  return r["lr"] * r["step_gamma"] ** drops


def logits_of(model, images: np.ndarray, mean, std, layout, batch: int = 1000):
  out = []
  with torch.no_grad():
    for k in range(0, len(images), batch):
      x = torch.from_numpy(images[k:k + batch]).permute(0, 3, 1, 2).float()
      out.append(model(((x / 255.0 - mean) / std).contiguous(memory_format=layout))[0])
  return torch.cat(out).numpy()


def balanced(pred: np.ndarray, labels: np.ndarray, classes: int) -> float:
  return float(np.mean([np.mean(pred[labels == c] == c) for c in range(classes)
                        if np.any(labels == c)]) * 100)


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  p.add_argument("--data", required=True)
  p.add_argument("--teacher", required=True)
  p.add_argument("--recipe", required=True)
  p.add_argument("--method", required=True)
  p.add_argument("--out", required=True)
  p.add_argument("--seed", type=int, default=0)
  args = p.parse_args()
  start = time.perf_counter()
  r = json.loads(args.recipe)
  d = np.load(args.data)
  counts, classes = d["train_counts"], int(len(d["train_counts"]))
  torch.manual_seed(args.seed)
  layout = torch.channels_last
  teacher = load_teacher(args.teacher, r["teacher_model"], classes).to(memory_format=layout)
  student = torch_reference.create(r["student_model"], classes).train().to(memory_format=layout)
  opt = torch.optim.SGD(student.parameters(), lr=r["lr"], momentum=r["momentum"],
                        weight_decay=r["weight_decay"])
  c_teacher, c_student = torch.compile(teacher), torch.compile(student)
  mean = torch.tensor(d["mean"]).view(1, 3, 1, 1)
  std = torch.tensor(d["std"]).view(1, 3, 1, 1)
  images = torch.from_numpy(d["train_images"]).permute(0, 3, 1, 2).contiguous()
  labels = torch.from_numpy(d["train_labels"].astype(np.int64))
  spe = len(labels) // r["batch"]
  loss_fn = make_loss(args.method, r["hparams"], counts, spe)
  gen = torch.Generator().manual_seed(args.seed)
  step, first_step_s = 0, None
  for _ in range(r["epochs"]):
    order = torch.randperm(len(labels), generator=gen)
    for k in range(spe):
      idx = order[k * r["batch"]:(k + 1) * r["batch"]]
      x = ((augment(images[idx], gen) / 255.0 - mean) / std).contiguous(memory_format=layout)
      t_logits = None
      if args.method not in TEACHER_FREE:  # a CE run is a plain training script
        with torch.no_grad():
          t_logits, _ = c_teacher(x)
      s_logits, _ = c_student(x)
      loss = loss_fn(s_logits, t_logits, labels[idx], step)
      for group in opt.param_groups:
        group["lr"] = lr_at(step, r, spe)
      opt.zero_grad(set_to_none=True)
      loss.backward()
      opt.step()
      step += 1
      if first_step_s is None:
        first_step_s = time.perf_counter() - start  # start-up and compilation included
  train_s = time.perf_counter() - start
  student.eval()
  log_prior = np.log(counts / counts.sum())
  result = {"method": args.method, "steps": step, "loss": float(loss)}
  z_val = logits_of(student, d["val_images"], mean, std, layout)
  z_test = logits_of(student, d["test_images"], mean, std, layout)
  taus = r["taus"]
  val_scores = [balanced(np.argmax(z_val - t * log_prior, 1), d["val_labels"], classes)
                for t in taus]
  best = max(range(len(taus)), key=lambda i: (val_scores[i], -abs(taus[i] - 1.0)))
  result.update(
      val_balanced=balanced(z_val.argmax(1), d["val_labels"], classes),
      balanced=balanced(z_test.argmax(1), d["test_labels"], classes),
      post_hoc_tau=taus[best], post_hoc_val_balanced=val_scores[best],
      post_hoc_balanced=balanced(np.argmax(z_test - taus[best] * log_prior, 1),
                                 d["test_labels"], classes))
  torch.save(student.state_dict(), os.path.splitext(args.out)[0] + ".pt")
  result.update(first_step_s=first_step_s, train_s=train_s,
                wall_s=time.perf_counter() - start)
  with open(args.out, "w") as f:
    json.dump(result, f)


if __name__ == "__main__":
  main()
