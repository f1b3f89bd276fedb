"""Point-guided decoding (``bestie_d2.modeling.point_decoding``) against a brute-force numpy reference.

Offsets are integers so that every vote-to-point distance is exact in float32 and ties are real
ties (resolved to the first point of the class in the given order).
"""
import numpy as np
import pytest
import torch

from bestie_d2.modeling.point_decoding import decode_instances_with_points

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference(prob, offset, points, image_label=None):
    """Per class with points (and in the image label): argmax of the zeroed probabilities, every
    pixel of the class joins the nearest distinct point of that class (first on ties)."""
    C1, H, W = prob.shape
    C = C1 - 1
    pts = [tuple(int(v) for v in p) for p in points if 0 <= p[0] < H and 0 <= p[1] < W]
    keep = np.zeros(C, bool)
    for _, _, c in pts:
        keep[c] = True
    if image_label is not None:
        keep &= np.asarray(image_label) > 0
    p = prob.copy()
    p[1:] *= keep[:, None, None]
    pred = p.argmax(0)
    out = []
    for c in range(C):
        cps = []
        for y, x, cc in pts:  # distinct points of class c, first occurrence order
            if cc == c and (y, x) not in cps:
                cps.append((y, x))
        if not keep[c] or not cps:
            continue
        ys, xs = np.nonzero(pred == c + 1)
        vy, vx = ys + offset[0, ys, xs], xs + offset[1, ys, xs]
        cp = np.array(cps, dtype=np.float64)
        d = (vy[:, None] - cp[None, :, 0]) ** 2 + (vx[:, None] - cp[None, :, 1]) ** 2
        j = d.argmin(1)
        for k in range(len(cps)):
            m = np.zeros((H, W), bool)
            m[ys[j == k], xs[j == k]] = True
            if m.any():
                out.append((m, c, float(p[c + 1][m].mean())))
    return out


def case(seed, H=36, W=44, C=3):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(C + 1, H, W)).astype(np.float32)
    logits[1:, : H // 2] += 1.5  # more foreground in the top half
    prob = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    offset = rng.integers(-6, 7, size=(2, H, W)).astype(np.float32)
    K = int(rng.integers(0, 9))
    points = np.stack([rng.integers(-2, H + 2, K), rng.integers(-2, W + 2, K), rng.integers(0, C, K)], 1)
    if K > 1:
        points[-1] = points[0]  # a repeated point
    return prob.astype(np.float32), offset, points.reshape(-1, 3)


def check(prob, offset, points, image_label=None):
    masks, classes, scores = decode_instances_with_points(
        torch.from_numpy(prob), torch.from_numpy(offset), torch.from_numpy(points).long(),
        None if image_label is None else torch.tensor(image_label, dtype=torch.float32),
    )
    ref = reference(prob, offset, points, image_label)
    assert masks.dtype == torch.bool and masks.shape[1:] == prob.shape[1:]
    assert len(ref) == masks.shape[0] == classes.shape[0] == scores.shape[0]
    for i, (m, c, s) in enumerate(ref):
        np.testing.assert_array_equal(masks[i].numpy(), m)
        assert int(classes[i]) == c
        assert float(scores[i]) == pytest.approx(s, rel=1e-5)
    return ref


@pytest.mark.parametrize("seed", range(40))
def test_matches_reference(seed):
    prob, offset, points = case(seed)
    check(prob, offset, points)


def test_image_label_and_hand_made_case():
    """Two points of class 0 and one of class 1 on a 2-class map with zero offsets (a Voronoi
    split); class 1 taken out of the image label gives its pixels to the other channels and no
    class-1 instance; a class without points is no instance either."""
    H, W = 20, 30
    prob = np.full((3, H, W), 0.1, np.float32)
    prob[1, :, :20] = 0.8  # class 0 on the left
    prob[2, :, 20:] = 0.7  # class 1 on the right
    prob[0] = 1 - prob[1:].sum(0)
    offset = np.zeros((2, H, W), np.float32)
    points = np.array([[10, 5, 0], [10, 15, 0], [5, 25, 1], [5, 25, 1], [40, 40, 0]])
    ref = check(prob, offset, points)
    assert [c for _, c, _ in ref] == [0, 0, 1]
    assert ref[0][0][:, :10].all() and not ref[0][0][:, 11:].any()  # x = 10 is a tie: first point
    assert ref[2][0][:, 20:].all()
    ref = check(prob, offset, points, image_label=[1, 0])
    assert [c for _, c, _ in ref] == [0, 0]
    ref = check(prob, offset, points[:2])  # class 1 has no point: no instance, its channel zeroed
    assert [c for _, c, _ in ref] == [0, 0]


def test_no_points_and_bad_class():
    prob, offset, _ = case(0)
    masks, classes, scores = decode_instances_with_points(torch.from_numpy(prob), torch.from_numpy(offset),
                                                          torch.zeros((0, 3), dtype=torch.long))
    assert masks.shape == (0,) + prob.shape[1:] and classes.numel() == 0 and scores.numel() == 0
    with pytest.raises(ValueError, match="point classes"):
        decode_instances_with_points(torch.from_numpy(prob), torch.from_numpy(offset), torch.tensor([[1, 1, 7]]))
    with pytest.raises(ValueError, match="shape mismatch"):
        decode_instances_with_points(torch.from_numpy(prob), torch.from_numpy(offset[:, :5]), torch.tensor([[1, 1, 0]]))
