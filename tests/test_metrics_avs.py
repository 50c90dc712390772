"""AVSBench's mIoU and F-score (utility.py's `mask_iou`, `_eval_pr`, `Eval_Fmeasure`), checked against values worked
out by hand from that definition, and against a literal per-threshold transcription of it on random data."""
import numpy as np
import pytest
import torch

from anyref.errors import AnyRefInputError
from anyref.evaluate import union_logits
from anyref.metrics import AVS_THRESHOLDS, AVSMeter, avs_f_curve, avs_iou, binary_f_score


def logits(*probabilities):
    """A (1, W) float32 logit row whose sigmoid gives these probabilities."""
    p = np.array([probabilities], dtype=np.float64)
    return np.log(p / (1 - p)).astype(np.float32)


def target(row):
    """A (1, W) bool mask from a string of 0/1."""
    return np.array([[c == "1" for c in row]])


def f(precision, recall):
    return 1.3 * precision * recall / (0.3 * precision + recall) if precision else 0.0


# Sample A: probabilities 0.9 0.6 0.3 0.1 over target 1100. Predicted (>= threshold) and F over the thresholds:
#   t <= 0.1: all 4, P 1/2 -> 0.5652;  0.1 < t <= 0.3: 3, P 2/3 -> 0.7222;  0.3 < t <= 0.6: 2, P = R = 1 -> 1;
#   0.6 < t <= 0.9: 1, P 1, R 1/2 -> 0.8125;  t > 0.9: none -> 0 (AVSBench's NaN -> 0).
A = (logits(0.9, 0.6, 0.3, 0.1), target("1100"))
# Sample B: probabilities 0.95 0.85 0.2 0.05 over target 1000:
#   t <= 0.05: P 1/4 -> 0.3023;  <= 0.2: P 1/3 -> 0.3939;  <= 0.85: P 1/2 -> 0.5652;  <= 0.95: P 1 -> 1;  then 0.
B = (logits(0.95, 0.85, 0.2, 0.05), target("1000"))
# Sample C: an empty target, probabilities 0.1 0.7 0.2 0.3: one false positive.
C = (logits(0.1, 0.7, 0.2, 0.3), target("0000"))


def test_iou_by_hand_with_the_empty_target_rule():
    assert avs_iou(*A) == 1.0  # sigmoid > 0.5 predicts 1100
    assert avs_iou(*B) == 0.5  # predicts 1100 against 1000
    assert avs_iou(*C) == 0.75  # empty target: 3 of 4 pixels agree on background (the package gave 0 before)
    assert avs_iou(logits(0.1, 0.2, 0.3, 0.4), target("0000")) == 1.0


def test_f_curve_by_hand():
    steps = {0.1: f(1 / 2, 1), 0.3: f(2 / 3, 1), 0.6: 1.0, 0.9: f(1, 1 / 2), 1.0: 0.0}
    expected = [next(v for edge, v in steps.items() if t <= edge + 1e-9) for t in AVS_THRESHOLDS]
    assert avs_f_curve(*A) == pytest.approx(expected)
    assert len(AVS_THRESHOLDS) == 255 and AVS_THRESHOLDS[0] == 0 and AVS_THRESHOLDS[-1] == 1.0


def test_meter_by_hand():
    meter = AVSMeter()
    assert meter.update(*A) == (1.0, 1.0)
    iou, best = meter.update(*B)
    assert (iou, best) == (0.5, 1.0)
    iou, best = meter.update(*C)
    assert iou == 0.75 and np.isnan(best)  # F-score leaves empty targets out
    assert meter.miou == pytest.approx((1 + 0.5 + 0.75) / 3)
    # Mean curve of A and B per threshold; its best is 0.85 < t <= 0.9, where A gives 0.8125 and B 1:
    assert meter.fscore == pytest.approx((0.8125 + 1.0) / 2)  # 0.90625; each sample's own best would average 1.0
    assert meter.fscore_per_video(1) == pytest.approx((1.0 + 1.0 + 0.0) / 3)  # a video of empty targets scores 0
    with pytest.raises(AnyRefInputError, match="videos of 2 frames"):
        meter.fscore_per_video(2)


def test_old_binary_figures_differ():
    """The binary F of A and B (one threshold, 0.5) and what it did with the empty target."""
    binary = [(torch.sigmoid(torch.from_numpy(x)) > 0.5).numpy() for x, _ in (A, B, C)]
    old = [binary_f_score(b, t) for b, (_, t) in zip(binary, (A, B, C))]
    assert old == pytest.approx([1.0, f(1 / 2, 1), 0.0])


def test_only_empty_targets_score_zero_f():
    meter = AVSMeter()
    meter.update(*C)
    assert meter.fscore == 0.0 and meter.miou == 0.75


def test_saturated_logits_count_at_the_last_threshold():
    """sigmoid(30) is 1.0 in float32, and AVSBench's last threshold 1 - 1e-10 is 1.0 too: still predicted."""
    curve = avs_f_curve(np.full((1, 2), 30.0, np.float32), target("11"))
    assert curve[-1] == 1.0


def reference_f_and_iou(logit_maps, targets):
    """AVSBench's definition transcribed threshold by threshold in float32 torch (mask_iou per frame, then mean)."""
    pred = torch.sigmoid(torch.from_numpy(np.stack(logit_maps)))  # (N, H, W)
    gt = torch.from_numpy(np.stack(targets)).float()
    thresholds = torch.linspace(0, 1 - 1e-10, 255)
    total, counted, ious = torch.zeros(255), 0, []
    for p, y in zip(pred, gt):
        binary = (p > 0.5).float()
        if y.sum() == 0:
            ious.append(float(((1 - binary) * (1 - y)).sum() / y.numel()))
            continue
        ious.append(float((binary * y).sum() / torch.max(binary, y).sum()))
        curve = torch.zeros(255)
        for i, t in enumerate(thresholds):
            hit = (p >= t).float()
            tp = (hit * y).sum()
            precision, recall = tp / (hit.sum() + 1e-20), tp / (y.sum() + 1e-20)
            value = 1.3 * precision * recall / (0.3 * precision + recall)
            curve[i] = 0 if torch.isnan(value) else value
        total += curve
        counted += 1
    return float((total / counted).max()), float(np.mean(ious))


def test_random_data_matches_the_transcribed_definition():
    rng = np.random.default_rng(0)
    logit_maps = [rng.normal(0, 3, (12, 12)).astype(np.float32) for _ in range(6)]
    targets = [rng.random((12, 12)) < 0.3 for _ in range(5)] + [np.zeros((12, 12), bool)]
    meter = AVSMeter()
    for x, t in zip(logit_maps, targets):
        meter.update(x, t)
    fscore, miou = reference_f_and_iou(logit_maps, targets)
    assert meter.fscore == pytest.approx(fscore, abs=1e-6) and meter.miou == pytest.approx(miou, abs=1e-6)


def test_binary_masks_and_mismatched_shapes_are_refused():
    with pytest.raises(AnyRefInputError, match="mask logits"):
        AVSMeter().update(target("1100"), target("1100"))
    with pytest.raises(AnyRefInputError, match="differ in shape"):
        avs_iou(logits(0.9, 0.1), target("1100"))


def test_union_logits_is_the_maximum_and_no_mask_is_probability_zero():
    maps = np.array([[[1.0, -2.0]], [[-1.0, 3.0]]], np.float32)  # (2, 1, 2)
    assert union_logits(maps, (1, 2)).tolist() == [[1.0, 3.0]]
    empty = union_logits(np.zeros((0, 1, 2), np.float32), (1, 2))
    assert torch.sigmoid(torch.from_numpy(empty)).sum() == 0
