"""Knowledge distillation: a small student also learns the teacher's softened logits.

Why: a light model trained on hard 0/1 masks sees only where markings are; the teacher's
soft probabilities also say how sure a good model is at every pixel (the faded, far and
occluded markings), which is more signal per frame for the same CPU-minutes (Hinton et al.
2015, arXiv 1503.02531: match the teacher's output softened by a temperature T, the term
scaled by T^2 so its gradients keep their size as T changes).

The term, per pixel, averaged over the batch:

- binary (one logit): KL(Bernoulli(sigmoid(t/T)) || Bernoulli(sigmoid(s/T))) * T^2, i.e. BCE
  against the teacher's soft target minus the target's own entropy, so it is 0 exactly when
  the student matches the teacher;
- multi-class: KL(softmax(t/T) || softmax(s/T)) * T^2 over the class axis.

The teacher runs in eval mode, without gradients, on exactly the (augmented) frames the
student sees.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dataset.reader import LaneDataset
from perception.checkpoint import Normalisation, Task, build_from_checkpoint
from plumbing import file_digest


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """Mean per-pixel KL of the teacher's softened output from the student's, times T^2."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"distillation: student logits {tuple(student.shape)} and teacher logits {tuple(teacher.shape)} differ "
            "(use a teacher of the same task and output size)"
        )
    if temperature <= 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")
    s, t = student / temperature, teacher / temperature
    if student.shape[1] == 1:
        p = torch.sigmoid(t)
        bce = F.binary_cross_entropy_with_logits(s, p, reduction="none")
        entropy = F.binary_cross_entropy_with_logits(t, p, reduction="none")
        kl = (bce - entropy).mean()
    else:
        kl = F.kl_div(F.log_softmax(s, 1), F.log_softmax(t, 1), log_target=True, reduction="none").sum(1).mean()
    return kl * temperature**2


class Distiller:
    """``weight * distill_loss(student_logits, teacher(images))``; the teacher frozen in eval."""

    def __init__(self, teacher: nn.Module, weight: float, temperature: float) -> None:
        if weight < 0:
            raise ValueError(f"--distill-weight must be >= 0, got {weight}")
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.weight = float(weight)
        self.temperature = float(temperature)

    def __call__(self, images: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        self.teacher.eval()  # stays in eval even if a caller put everything in train mode
        with torch.no_grad():
            target = self.teacher(images)
        return self.weight * distill_loss(student_logits, target, self.temperature)


def make_distiller(settings: dict[str, Any], train_set: LaneDataset) -> tuple[Distiller | None, dict[str, Any]]:
    """The teacher of ``settings["teacher"]`` (None: no distillation) and its record for the metadata.

    The teacher must predict the same task (kind and tags) from the same normalisation, or its
    logits mean something else; it runs on the student's input size.
    """
    path = settings.get("teacher")  # .get: runs stored before distillation existed resume too
    if path is None:
        return None, {}
    teacher, tmeta = build_from_checkpoint(path)
    if tmeta.task != Task.from_dict(train_set.task_dict):
        raise ValueError(
            f"teacher {path} predicts {tmeta.task.to_dict()} but this run trains {train_set.task_dict} "
            "(use a teacher trained on the same --tags)"
        )
    if tmeta.normalisation != Normalisation.from_dict(train_set.normalisation):
        raise ValueError(f"teacher {path} expects another input normalisation (use a teacher trained on this data)")
    weight, temperature = settings.get("distill_weight", 1.0), settings.get("distill_temperature", 2.0)
    record = {
        "teacher": str(path),
        "teacher_sha256_16": file_digest(path),
        "teacher_arch": tmeta.arch,
        "teacher_arch_kwargs": dict(tmeta.arch_kwargs),
        "weight": float(weight),
        "temperature": float(temperature),
    }
    return Distiller(teacher.to(memory_format=torch.channels_last), weight, temperature), record
