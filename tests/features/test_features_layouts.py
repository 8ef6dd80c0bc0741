"""The 77-point layout: names and index tables, the face-mesh <-> iBUG mapping checked on real data, masking and
normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from features_helpers import layout_distance, read_pose_file

from ray_slt.errors import DataError
from ray_slt.features.layouts import (
    COCO_WHOLEBODY_133_INDEX,
    FACE_IBUG,
    HOLISTIC_543_INDEX,
    IBUG_TO_FACEMESH,
    LAYOUT_77_NAMES,
    MOUTH_IBUG,
    PARTS,
    layout77,
    layout77_pixels,
)
from ray_slt.features.sampling import SampleError


def test_names_and_parts():
    assert len(LAYOUT_77_NAMES) == 77 == len(set(LAYOUT_77_NAMES))
    sizes = {k: s.stop - s.start for k, s in PARTS.items()}
    assert sizes == {"body": 9, "left_hand": 21, "right_hand": 21, "mouth": 8, "face": 18}
    assert [s.start for s in PARTS.values()] == [0, 9, 30, 51, 59] and PARTS["face"].stop == 77
    assert LAYOUT_77_NAMES[:9] == (
        "nose",
        "left_eye",
        "right_eye",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
    )
    assert LAYOUT_77_NAMES[9] == "left_hand_wrist" and LAYOUT_77_NAMES[30] == "right_hand_wrist"
    assert LAYOUT_77_NAMES[13] == "left_hand_thumb_tip" and LAYOUT_77_NAMES[50] == "right_hand_pinky_tip"
    assert LAYOUT_77_NAMES[51:59] == tuple(f"mouth_{i}" for i in range(60, 68))
    assert LAYOUT_77_NAMES[59:] == tuple(f"face_{i}" for i in FACE_IBUG)


def test_coco_wholebody_index_table_against_a_real_file(shared_data):
    pose = read_pose_file(shared_data / "slp_pose" / "SOUP.mmpose.pose")
    names = [(c.name, p) for c in pose.header.components for p in c.points]
    picked = [names[i] for i in COCO_WHOLEBODY_133_INDEX]
    assert [p for _, p in picked[:9]] == [
        "nose",
        "left_eye",
        "right_eye",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
    ]
    assert picked[9:30] == [("LEFT_HAND", f"left_hand_{i}") for i in range(21)]
    assert picked[30:51] == [("RIGHT_HAND", f"right_hand_{i}") for i in range(21)]
    assert picked[51:] == [("FACE", f"face-{i}") for i in (*MOUTH_IBUG, *FACE_IBUG)]


def test_holistic_index_table_against_a_real_file(shared_data):
    pose = read_pose_file(shared_data / "autsl" / "signer0_sample1000.holistic.pose")  # 543 points
    names = [(c.name, p) for c in pose.header.components for p in c.points]
    picked = [names[i] for i in HOLISTIC_543_INDEX]
    assert [p for _, p in picked[:9]] == [
        "NOSE",
        "LEFT_EYE",
        "RIGHT_EYE",
        "LEFT_SHOULDER",
        "RIGHT_SHOULDER",
        "LEFT_ELBOW",
        "RIGHT_ELBOW",
        "LEFT_WRIST",
        "RIGHT_WRIST",
    ]
    assert {c for c, _ in picked[9:30]} == {"LEFT_HAND_LANDMARKS"} and picked[9][1] == "WRIST"
    assert picked[51:] == [("FACE_LANDMARKS", str(IBUG_TO_FACEMESH[i])) for i in (*MOUTH_IBUG, *FACE_IBUG)]
    # The flat table and the name lookup pick the same coordinates.
    lay = layout77(pose)
    data = np.ma.getdata(pose.body.data)[:, 0, :, :2]
    ok = lay.valid
    assert np.allclose(lay.pixels[ok], data[:, list(HOLISTIC_543_INDEX)][ok])


def test_facemesh_mapping_is_mirror_symmetric():
    from pose_format.utils.holistic import FLIPPED_FACE_POINTS

    pairs = [
        (0, 16),
        (2, 14),
        (4, 12),
        (6, 10),
        (8, 8),
        (17, 26),
        (19, 24),
        (21, 22),
        (30, 30),
        (36, 45),
        (60, 64),
        (61, 63),
        (62, 62),
        (65, 67),
        (66, 66),
    ]
    for a, b in pairs:
        assert FLIPPED_FACE_POINTS[IBUG_TO_FACEMESH[a]] == IBUG_TO_FACEMESH[b], (a, b)


def test_same_named_landmarks_from_holistic_and_coco_wholebody(shared_data, soup_holistic):
    """Our MediaPipe Holistic pose of SOUP.mp4 against MMPose's COCO-WholeBody pose of the same video (made by
    someone else), in units of the reference's shoulder width. Stated tolerances (mean per part): body 0.08,
    hands 0.15, mouth 0.03, face 0.03; every mouth/face point's mean within 0.06."""
    ref = layout77(read_pose_file(shared_data / "slp_pose" / "SOUP.mmpose.pose"))
    ours = layout77(soup_holistic)
    assert (ours.source, ref.source) == ("holistic", "coco_wholebody_133")
    tol = {"body": 0.08, "left_hand": 0.15, "right_hand": 0.15, "mouth": 0.03, "face": 0.03}
    for part, limit in tol.items():
        d = layout_distance(ours, ref, PARTS[part], ref.scale)
        assert d.size > 0.5 * ours.valid[:, PARTS[part]].size, part
        assert d.mean() < limit, (part, d.mean())
    for k in range(51, 77):
        d = layout_distance(ours, ref, slice(k, k + 1), ref.scale)
        assert d.mean() < 0.06, (LAYOUT_77_NAMES[k], d.mean())
    # The test can fail: the signer's hands swapped are far apart, and so are the mirrored face points.
    swapped = layout_distance(ours, ref, PARTS["left_hand"], ref.scale).mean()
    both = ours.valid[:, PARTS["left_hand"]] & ref.valid[:, PARTS["right_hand"]]
    cross = np.linalg.norm(ours.pixels[:, PARTS["left_hand"]] - ref.pixels[:, PARTS["right_hand"]], axis=-1)
    assert (cross[both] / ref.scale).mean() > 3 * swapped
    jaw_l, jaw_r = 59, 67  # face_0 and face_16
    d_mirror = np.linalg.norm(ours.pixels[:, jaw_l] - ref.pixels[:, jaw_r], axis=-1).mean() / ref.scale
    assert d_mirror > 0.2


def test_reduced_holistic_variant(shared_data):
    pose = read_pose_file(shared_data / "dgs_corpus" / "test" / "test_1_original.pose")  # 178 points
    lay = layout77(pose)
    assert lay.source == "holistic_reduced" and lay.coords.shape == (46, 77, 2)
    assert not lay.valid[:, 0].any()  # no nose in the reduced files: masked, not invented
    assert (lay.coords[:, 0] == 0).all()
    assert lay.valid[:, 1:9].all()  # eyes from their corners, shoulders..wrists from POSE_LANDMARKS
    assert lay.valid[:, PARTS["mouth"]].all() and lay.valid[:, 59:74].all() and not lay.valid[:, 74].any()
    # The eye lies between its two corners.
    data = np.ma.getdata(pose.body.data)[:, 0, :, :2]
    h = pose.header
    corners = data[:, [h.get_point_index("FACE_LANDMARKS", "263"), h.get_point_index("FACE_LANDMARKS", "362")]]
    assert np.allclose(lay.pixels[:, 1], corners.mean(axis=1), atol=1e-3)


def test_normalisation_centres_on_shoulders_with_unit_width(autsl_holistic):
    lay = layout77(autsl_holistic)
    both = lay.valid[:, 3] & lay.valid[:, 4]
    mid = (lay.coords[both, 3] + lay.coords[both, 4]) / 2
    width = np.linalg.norm(lay.coords[both, 3] - lay.coords[both, 4], axis=-1)
    assert np.allclose(mid.mean(axis=0), 0, atol=1e-5) and width.mean() == pytest.approx(1.0, abs=1e-5)
    ok = lay.valid
    assert np.allclose(lay.coords[ok] * lay.scale + lay.center, lay.pixels[ok], atol=1e-2)
    m = lay.masked()
    assert (m.mask[..., 0] == ~lay.valid).all() and (lay.coords[~ok] == 0).all()


def test_missing_points_are_masked_not_zeros(autsl_holistic):
    from ray_slt.features.layouts import layout77_from_arrays

    data = np.array(np.ma.getdata(autsl_holistic.body.data)[:, 0])
    conf = np.array(autsl_holistic.body.confidence[:, 0])
    h = autsl_holistic.header
    lh = h.get_point_index("LEFT_HAND_LANDMARKS", "WRIST")
    conf[5:9, lh : lh + 21] = 0  # the left hand lost in frames 5-8
    data[5:9, lh : lh + 21] = 123.0  # whatever the coordinates say, they are not data
    lay = layout77_from_arrays(data, conf, h)
    assert not lay.valid[5:9, PARTS["left_hand"]].any()
    assert (lay.coords[5:9, PARTS["left_hand"]] == 0).all() and (lay.pixels[5:9, PARTS["left_hand"]] == 0).all()
    _, valid, _ = layout77_pixels(autsl_holistic)
    assert valid[5:9, PARTS["left_hand"]].sum() > 0  # they were observed in the original


def test_coco_wholebody_low_scores_are_masked(shared_data):
    pose = read_pose_file(shared_data / "slp_pose" / "SOUP.mmpose.pose")
    conf = np.asarray(pose.body.confidence)[:, 0][:, list(COCO_WHOLEBODY_133_INDEX)]
    assert np.array_equal(layout77(pose).valid, conf > 0.3)  # the COCO-WholeBody default
    for threshold in (0.0, 0.6):
        lay = layout77(pose, min_confidence=threshold)
        assert np.array_equal(lay.valid, conf > threshold)
    assert not layout77(pose, min_confidence=0.6).valid.all()


def test_no_shoulders_is_a_layout_error(autsl_holistic):
    from ray_slt.features.layouts import layout77_from_arrays

    conf = np.array(autsl_holistic.body.confidence[:, 0])
    conf[:, :33] = 0  # no body in any frame
    with pytest.raises(SampleError) as e:
        layout77_from_arrays(np.ma.getdata(autsl_holistic.body.data)[:, 0], conf, autsl_holistic.header)
    assert e.value.stage == "layout"


def test_unsupported_components(shared_data):
    with pytest.raises(DataError, match="no 77-point layout"):
        layout77(read_pose_file(shared_data / "slp_pose" / "openpose.pose"))


@pytest.mark.parametrize(
    "rel, some_missing",
    [
        ("autsl/signer0_sample1000.holistic.pose", True),
        ("slp_pose/SOUP.mmpose.pose", False),
        ("dgs_corpus/test/test_1_original.pose", True),  # no nose in the reduced Holistic files
    ],
)
def test_layout77_to_pose_and_back_is_exact_where_present_and_masked_where_not(shared_data, rel, some_missing):
    """77-point layout -> .pose (named components and limbs, written and parsed as bytes) -> 77-point layout."""
    from pose_format import Pose

    from ray_slt.data.poses import parse_pose, pose_bytes
    from ray_slt.features.layouts import LAYOUT_77_EDGES, PART_EDGES, layout77_to_pose

    src = read_pose_file(shared_data / rel)
    xy, valid, conf = layout77_pixels(src)
    assert valid.any() and (not valid.all()) == some_missing
    pose = layout77_to_pose(xy, valid, conf, fps=src.body.fps, width=src.header.dimensions.width,
                            height=src.header.dimensions.height)  # fmt: skip
    back = parse_pose(pose_bytes(pose))
    assert [(c.name, len(c.points)) for c in back.header.components] == [
        ("BODY", 9), ("LEFT_HAND", 21), ("RIGHT_HAND", 21), ("MOUTH", 8), ("FACE", 18)
    ]  # fmt: skip
    assert back.header.components[0].points[3] == "left_shoulder"
    assert [c.limbs for c in back.header.components] == list(PART_EDGES.values())
    assert back.body.fps == pytest.approx(src.body.fps)
    assert np.array_equal(np.ma.getmaskarray(back.body.data)[:, 0, :, 0], ~valid)
    xy2, valid2, conf2 = layout77_pixels(back)
    assert np.array_equal(valid2, valid)
    assert np.array_equal(xy2[valid], xy[valid]) and not xy2[~valid].any()
    assert np.array_equal(conf2[valid], conf[valid])
    # normalised coordinates agree too, and pose-format itself reads the file
    assert np.array_equal(layout77(back).coords, layout77(src).coords)
    assert Pose.read(pose_bytes(pose)).body.data.shape == (len(xy), 1, 77, 2)
    assert len(LAYOUT_77_EDGES) == sum(len(e) for e in PART_EDGES.values()) + 2


def test_layout77_to_pose_refuses_other_shapes():
    from ray_slt.features.layouts import layout77_to_pose

    with pytest.raises(DataError, match=r"xy \[T, 77, 2\]"):
        layout77_to_pose(np.zeros((4, 76, 2)), np.ones((4, 76), bool))
