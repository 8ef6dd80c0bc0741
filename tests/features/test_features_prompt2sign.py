"""Prompt2Sign's pose representation on real poses (DGS Corpus sentences, reduced MediaPipe Holistic; ASL
fingerspelling): the 50-joint layout, Algorithm 1's 2D -> 3D lifting and the skels text format."""

from __future__ import annotations

import numpy as np
import pytest
from features_helpers import read_pose_file

from ray_slt.errors import DataError
from ray_slt.features import prompt2sign as p2s
from ray_slt.features.layouts import layout77_pixels


def real_clips(shared_data) -> list:
    paths = sorted((shared_data / "dgs_corpus" / "test").glob("*.pose"))[:6]
    paths += sorted((shared_data / "fingerspelling_ase" / "ase").glob("*.pose"))[:6]
    if not paths:
        pytest.skip("no DGS Corpus / fingerspelling poses under ../shared/data")
    out = []
    for path in paths:
        xy, valid, _ = layout77_pixels(read_pose_file(path))
        out.append((path.name, *p2s.from_layout77(xy, valid)))
    return out


def test_the_50_joints_come_from_the_77_point_layout(shared_data):
    for name, xy, valid in real_clips(shared_data):
        assert xy.shape[1:] == (50, 2) and valid.shape == xy.shape[:2]
        # the neck is the shoulders' midpoint, observed when both shoulders are
        both = valid[:, 2] & valid[:, 5]
        assert (valid[:, 1] == both).all(), name
        assert np.allclose(xy[both, 1], (xy[both, 2] + xy[both, 5]) / 2)
        assert (xy[~valid] == 0).all()
    assert len(p2s.NAMES50) == 50 and len(p2s.BONES) == 49  # a tree over 50 joints
    children = [b for _, b in p2s.BONES]
    assert sorted([*children, p2s.ROOT]) == list(range(50))
    seen = {p2s.ROOT}
    for a, b in p2s.BONES:  # parents come before their children: a walk out from the root
        assert a in seen
        seen.add(b)


def test_lifting_keeps_every_bone_at_its_length_and_the_2d_image_of_short_bones(shared_data):
    """Algorithm 1 as read (module docstring): every bone is L long in 3D in every frame, L the 90th percentile of
    its observed 2D length; where a bone is observed and no longer than L in 2D, its 2D image is kept (up to the
    0.001 depth nudge); depth grows from parent to child."""
    checked = 0
    for name, xy, valid in real_clips(shared_data):
        lengths = p2s.bone_lengths(xy, valid, 90.0)
        joints = p2s.lift(xy, valid, percentile=90.0)
        assert joints.shape == (len(xy), 50, 3) and np.isfinite(joints).all(), name
        for k, (a, b) in enumerate(p2s.BONES):
            bone = joints[:, b] - joints[:, a]
            assert np.allclose(np.linalg.norm(bone, axis=-1), lengths[k], atol=1e-9), (name, a, b)
            assert (bone[:, 2] > 0).all() or lengths[k] == 0
            both = valid[:, a] & valid[:, b]
            d = xy[:, b] - xy[:, a]
            short = both & (np.linalg.norm(d, axis=-1) <= lengths[k])
            if short.any() and lengths[k] > 0:
                err = np.linalg.norm(bone[short, :2] - d[short], axis=-1)
                assert (err <= 0.01 * lengths[k]).all(), (name, a, b, err.max() / lengths[k])
                checked += int(short.sum())
        # the root keeps its 2D position
        assert np.allclose(joints[valid[:, 1], 1, :2], xy[valid[:, 1], 1])
    assert checked > 1000


def test_missing_points_are_interpolated_then_taken_from_the_parent():
    t = 5
    xy = np.zeros((t, 50, 2))
    valid = np.zeros((t, 50), bool)
    xy[:, 1] = np.arange(t)[:, None] * [1.0, 2.0]  # the neck, moving
    valid[:, 1] = True
    xy[[1, 4], 2] = [[10.0, 0.0], [40.0, 30.0]]  # right shoulder seen at frames 1 and 4
    valid[[1, 4], 2] = True
    filled = p2s.fill_missing(xy, valid)
    assert np.allclose(filled[:, 2], [[10, 0], [10, 0], [20, 10], [30, 20], [40, 30]])  # nearest, then linear
    assert np.allclose(filled[:, 3], filled[:, 2]) and np.allclose(filled[:, 4], filled[:, 2])  # never seen: parent
    assert np.allclose(filled[:, p2s.LEFT_HAND0 + 8], filled[:, 1])  # down a never-seen chain to the neck
    valid[:, 1] = False
    with pytest.raises(DataError, match="neck"):
        p2s.fill_missing(xy, valid)


def test_skels_round_trip_and_counter(shared_data):
    _, xy, valid = real_clips(shared_data)[0]
    joints = p2s.lift(xy, valid)
    line = p2s.to_skels(joints)
    assert "\n" not in line and len(line.split()) == len(joints) * 151
    back, count = p2s.from_skels(line)
    assert np.allclose(back, joints, atol=1e-5)
    assert count[0] == 0 and count[-1] == 1 and np.allclose(np.diff(count), 1 / (len(joints) - 1), atol=1e-5)
    assert p2s.counter(1).tolist() == [1.0]


@pytest.mark.parametrize(
    "line,message",
    [
        ("1 2 3", "whole number"),
        (" ".join(["0"] * 150 + ["x"]), "not a skels line"),
        (" ".join(["nan"] * 151), "not finite"),
        (" ".join(["0"] * 150 + ["1"] + ["0"] * 150 + ["0.5"]), "counter"),
        ("", "whole number"),
    ],
)
def test_malformed_skels_lines_are_refused(line, message):
    with pytest.raises(DataError, match=message):
        p2s.from_skels(line, "clip.skels:3")
    with pytest.raises(DataError, match="finite"):
        p2s.to_skels(np.full((2, 50, 3), np.nan))


def test_lifted_poses_are_written_as_pose_files_that_pose_format_reads_and_draws(shared_data, tmp_path):
    from pose_format import Pose
    from pose_format.pose_visualizer import PoseVisualizer

    from ray_slt.data.poses import pose_bytes

    _, xy, valid = real_clips(shared_data)[0]
    joints = p2s.lift(xy, valid)
    pose = Pose.read(pose_bytes(p2s.to_pose(joints, fps=25.0)))
    [component] = pose.header.components
    assert component.name == p2s.COMPONENT and component.points == list(p2s.NAMES50) and component.format == "XYZC"
    assert len(component.limbs) == 49 and pose.body.fps == 25.0
    data = np.asarray(pose.body.data)[:, 0]
    assert data.shape == (len(joints), 50, 3) and not np.ma.getmaskarray(pose.body.data).any()
    # the same pose up to the canvas placement: one scale, one shift
    scale = (data[:, 2, 0] - data[:, 5, 0]) / (joints[:, 2, 0] - joints[:, 5, 0])
    assert np.allclose(scale, scale[0], rtol=1e-4)
    assert np.allclose(data[..., 2], joints[..., 2] * scale[0], rtol=1e-4, atol=1e-3)
    assert (data[..., :2] >= 0).all() and (data[..., :2] <= 512).all()
    frames = list(PoseVisualizer(pose).draw())  # pose-format's own renderer
    assert len(frames) == len(joints) and frames[0].shape[:2] == (512, 512) and frames[0].any()


def test_a_lifted_pose_renders_as_an_animated_gif(shared_data):
    import io

    from PIL import Image

    _, xy, valid = real_clips(shared_data)[0]
    joints = p2s.lift(xy, valid)[:10]
    gif = Image.open(io.BytesIO(p2s.gif_bytes(p2s.to_pose(joints, fps=12.5))))
    assert gif.format == "GIF" and gif.n_frames == 10 and gif.size == (512, 512)
    assert gif.info["duration"] == 80  # ms per frame at 12.5 fps
    assert len(set(gif.convert("L").getdata())) > 1  # something is drawn
