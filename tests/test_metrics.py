"""Lane metrics against hand-computed cases and scikit-learn."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from perception.metrics import (
    BinaryConfusion,
    ConfusionMatrix,
    as_mask,
    confusion_matrix,
    frame_scores,
)

sklearn_metrics = pytest.importorskip("sklearn.metrics", reason="dev extra: scikit-learn")


def _mask(rows: list[str]) -> np.ndarray:
    """Mask drawn as text: '#' is a lane pixel."""
    return np.array([[c == "#" for c in r] for r in rows])


def _masks(pred_rows: list[str], true_rows: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return _mask(pred_rows), _mask(true_rows)


def test_hand_computed_frame() -> None:
    pred, truth = _masks(["##..", "#..."], ["#...", "##.."])
    s = frame_scores(pred, truth)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert (s.lane_px_true, s.lane_px_pred) == (3, 3)
    assert s.iou == pytest.approx(2 / 4)
    assert s.precision == pytest.approx(2 / 3)
    assert s.recall == pytest.approx(2 / 3)
    assert s.f1 == pytest.approx(2 / 3)
    assert not s.empty


def test_both_empty_frame_is_nan_and_flagged() -> None:
    empty = np.zeros((4, 4), bool)
    s = frame_scores(empty, empty)
    assert s.empty
    assert math.isnan(s.iou) and math.isnan(s.f1)
    assert math.isnan(s.precision) and math.isnan(s.recall)
    assert (s.tp, s.fp, s.fn) == (0, 0, 0)


def test_one_sided_empty_frames() -> None:
    empty = np.zeros((2, 2), bool)
    some = np.array([[True, False], [False, False]])
    false_alarm = frame_scores(some, empty)  # no lanes, one predicted
    assert false_alarm.iou == 0.0 and false_alarm.precision == 0.0
    assert math.isnan(false_alarm.recall) and not false_alarm.empty
    missed = frame_scores(empty, some)  # lanes, none predicted
    assert missed.iou == 0.0 and missed.recall == 0.0
    assert math.isnan(missed.precision) and not missed.empty
    perfect = frame_scores(some, some)
    assert perfect.iou == perfect.f1 == perfect.precision == perfect.recall == 1.0


def test_accumulator_pools_pixels_and_sets_empty_frames_apart() -> None:
    acc = BinaryConfusion()
    a_pred, a_true = _masks(["##..", "#..."], ["#...", "##.."])  # tp 2 fp 1 fn 1
    b_pred, b_true = _masks(["####", "...."], ["####", "####"])  # tp 4 fp 0 fn 4
    empty = np.zeros((2, 4), bool)
    acc.update(a_pred, a_true)
    acc.update(b_pred, b_true)
    returned = acc.update(empty, empty)
    assert returned.empty
    out = acc.compute()
    assert (out["tp"], out["fp"], out["fn"]) == (6, 1, 5)
    assert out["tn"] == 3 * 8 - 6 - 1 - 5
    assert out["frames"] == 3 and out["empty_frames"] == 1
    assert out["iou"] == pytest.approx(6 / 12)
    assert out["mean_frame_iou"] == pytest.approx((2 / 4 + 4 / 8) / 2)
    assert out["precision"] == pytest.approx(6 / 7)
    assert out["recall"] == pytest.approx(6 / 11)
    assert isinstance(acc.tp, np.int64)
    acc.reset()
    assert acc.frames == 0 and math.isnan(acc.iou) and math.isnan(acc.mean_frame_iou)


def test_only_empty_frames_give_nan_not_zero() -> None:
    acc = BinaryConfusion()
    empty = np.zeros((8, 8), bool)
    for _ in range(3):
        acc.update(empty, empty)
    assert math.isnan(acc.iou) and math.isnan(acc.mean_frame_iou)
    assert acc.empty_frames == 3


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_random_masks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    density = rng.uniform(0.02, 0.5)
    preds = rng.random((4, 40, 60)) < density
    truths = rng.random((4, 40, 60)) < density
    acc = BinaryConfusion()
    for p, t in zip(preds, truths, strict=True):
        s = acc.update(p, t)
        assert s.iou == pytest.approx(sklearn_metrics.jaccard_score(t.ravel(), p.ravel()))
        assert s.f1 == pytest.approx(sklearn_metrics.f1_score(t.ravel(), p.ravel()))
        assert s.precision == pytest.approx(sklearn_metrics.precision_score(t.ravel(), p.ravel()))
        assert s.recall == pytest.approx(sklearn_metrics.recall_score(t.ravel(), p.ravel()))
    pooled = sklearn_metrics.jaccard_score(truths.ravel(), preds.ravel())
    assert acc.iou == pytest.approx(pooled)
    tn, fp, fn, tp = sklearn_metrics.confusion_matrix(truths.ravel(), preds.ravel()).ravel()
    assert (acc.tn, acc.fp, acc.fn, acc.tp) == (tn, fp, fn, tp)


def test_torch_and_integer_inputs() -> None:
    rng = np.random.default_rng(1)
    p = rng.random((16, 32)) < 0.3
    t = rng.random((16, 32)) < 0.3
    ref = frame_scores(p, t)
    assert frame_scores(torch.from_numpy(p), torch.from_numpy(t)) == ref
    assert frame_scores(p.astype(np.uint8), (t * 255).astype(np.uint8)) == ref
    logits = torch.randn(16, 32)
    assert frame_scores(logits > 0, torch.from_numpy(t)).lane_px_pred == int((logits > 0).sum())


def test_floats_and_shape_mismatch_are_refused() -> None:
    with pytest.raises(TypeError, match="threshold"):
        as_mask(np.zeros((2, 2), np.float32))
    with pytest.raises(TypeError, match="threshold"):
        frame_scores(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="shape"):
        frame_scores(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


def test_update_batch_and_merge() -> None:
    rng = np.random.default_rng(2)
    preds = torch.from_numpy(rng.random((6, 1, 8, 8)) < 0.4)
    truths = torch.from_numpy(rng.random((6, 1, 8, 8)) < 0.4)
    whole = BinaryConfusion()
    assert len(whole.update_batch(preds, truths)) == 6
    a, b = BinaryConfusion(), BinaryConfusion()
    a.update_batch(preds[:2], truths[:2])
    b.update_batch(preds[2:], truths[2:])
    assert a.merge(b).compute() == whole.compute()


def test_multiclass_against_sklearn() -> None:
    rng = np.random.default_rng(3)
    n = 5
    truth = rng.integers(0, n, (2, 30, 40))
    pred = rng.integers(0, n, (2, 30, 40))
    truth[0, :3] = 255  # ignored pixels
    keep = truth != 255
    cm = ConfusionMatrix(n)
    cm.update(pred[0], truth[0])
    cm.update(torch.from_numpy(pred[1]), torch.from_numpy(truth[1]))
    ref = sklearn_metrics.confusion_matrix(truth[keep], pred[keep], labels=range(n))
    np.testing.assert_array_equal(cm.matrix, ref)
    ref_iou = sklearn_metrics.jaccard_score(truth[keep], pred[keep], labels=range(n), average=None)
    np.testing.assert_allclose(cm.per_class_iou(), ref_iou)
    assert cm.miou == pytest.approx(ref_iou.mean())
    assert cm.compute()["pixel_accuracy"] == pytest.approx((truth[keep] == pred[keep]).mean())


def test_multiclass_absent_class_is_nan_and_left_out_of_miou() -> None:
    truth = np.array([[0, 0, 1, 1]])
    pred = np.array([[0, 1, 1, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, truth)
    iou = cm.per_class_iou()
    assert iou[0] == pytest.approx(1 / 2) and iou[1] == pytest.approx(2 / 3)
    assert math.isnan(iou[2])
    assert cm.miou == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_multiclass_bad_labels() -> None:
    with pytest.raises(ValueError, match="outside 0..2"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(TypeError, match="integer"):
        confusion_matrix(np.zeros(2), np.zeros(2, int), 3)
