"""A synthetic sign language corpus: made-up signs composed into sentences, as COCO-WholeBody-133 poses.

THIS CORPUS IS SYNTHETIC. It is not a sign language and says nothing about any real one. It exists so that
demos and learning tests have data that a tiny model can learn on a laptop, flowing through exactly the same
stages as real corpora (``.pose`` files in a real estimator's layout, a manifest, features, training).
Its manifest rows carry ``dataset="synthetic"``, ``sign_language="qsl"`` (ISO 639-3 reserves qaa-qtz for
local use) and ``meta.synthetic=true``, so it is never mistaken for a real corpus.

The language:

* **Signs.** Each of ~35 glosses is a distinct motion: a handshape (possibly changing), a start and an end
  location in signing space, a movement (straight, arc, circle, zigzag, repeated tap, finger wiggle), one- or
  two-handedness (mirrored, or a static non-dominant base hand) and a mouth movement. Parameters are drawn
  once from the corpus seed without repeats, so no two signs look alike.
* **Grammar.** ``[TIME] SUBJECT OBJECT [ADJECTIVE] VERB [NOT]`` (verb-final with post-nominal adjectives),
  translated to English ``[time] the <subject> <verb form> <object phrase>``: the time sign sets the tense
  (yesterday: past, tomorrow: future), NOT negates it (``did not eat``), an adjective turns ``the apple``
  into ``a red apple``. A model must reorder, inflect and insert articles, as in real translation.
* **Signers.** Signers differ in size, position in the frame, arm length, signing speed, movement size and
  keypoint noise; detections occasionally drop out (a missing hand, as real estimators produce).

Files under the corpus root: ``synthetic.tsv`` (name, split, signer, gloss, text, num_frames, pose),
``poses/{name}.pose``, ``synthetic.json`` (generator version, parameters and the sign inventory) and
``README.md`` saying all of the above.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass

import numpy as np
from pose_format import Pose
from pose_format.numpy.pose_body import NumPyPoseBody
from pose_format.pose_header import PoseHeader, PoseHeaderDimensions
from pose_format.utils.generic import cocowholebody_components

from ray_slt import storage
from ray_slt.data.poses import pose_bytes

GENERATOR_VERSION = 1
WIDTH, HEIGHT, FPS = 640, 480, 25.0
TSV_COLUMNS = ("name", "split", "signer", "gloss", "text", "num_frames", "pose")

# ----------------------------------------------------------------------------------------------- the lexicon
TIME = {"YESTERDAY": "past", "TODAY": "present", "TOMORROW": "future"}
PERSONS = {
    "MAN": "man",
    "WOMAN": "woman",
    "CHILD": "child",
    "TEACHER": "teacher",
    "DOCTOR": "doctor",
    "FRIEND": "friend",
    "DOG": "dog",
    "CAT": "cat",
}
THINGS = {
    "APPLE": "apple",
    "BOOK": "book",
    "HOUSE": "house",
    "CAR": "car",
    "BREAD": "bread",
    "LETTER": "letter",
    "BALL": "ball",
    "WATER": "water",
}
ADJECTIVES = {"BIG": "big", "SMALL": "small", "RED": "red", "NEW": "new", "OLD": "old"}
# gloss -> (3rd person present, past, base form, objects it takes)
FOOD, READABLE = ("APPLE", "BREAD"), ("BOOK", "LETTER")
VERBS = {
    "EAT": ("eats", "ate", "eat", FOOD),
    "DRINK": ("drinks", "drank", "drink", ("WATER",)),
    "READ": ("reads", "read", "read", READABLE),
    "BUY": ("buys", "bought", "buy", tuple(THINGS)),
    "SEE": ("sees", "saw", "see", tuple(THINGS) + tuple(PERSONS)),
    "LIKE": ("likes", "liked", "like", tuple(THINGS) + tuple(PERSONS)),
    "WANT": ("wants", "wanted", "want", tuple(THINGS)),
    "FIND": ("finds", "found", "find", tuple(THINGS) + tuple(PERSONS)),
    "HELP": ("helps", "helped", "help", tuple(PERSONS)),
    "MAKE": ("makes", "made", "make", ("BREAD", "BALL", "LETTER")),
}
NEGATION = "NOT"
LEXICON = [*TIME, *PERSONS, *THINGS, *ADJECTIVES, *VERBS, NEGATION]

# ------------------------------------------------------------------------------------------ sign phonology
# Finger curl per finger (thumb, index, middle, ring, pinky): 0 = extended, 1 = fully bent; plus spread.
HANDSHAPES = {
    "flat": ((0.1, 0, 0, 0, 0), 0.05),
    "fist": ((0.7, 1, 1, 1, 1), 0.0),
    "point": ((0.7, 0, 1, 1, 1), 0.0),
    "v": ((0.7, 0, 0, 1, 1), 0.5),
    "y": ((0.0, 1, 1, 1, 0), 0.6),
    "l": ((0.0, 0, 1, 1, 1), 0.5),
    "claw": ((0.4, 0.55, 0.55, 0.55, 0.55), 0.6),
    "o": ((0.5, 0.6, 0.6, 0.6, 0.6), 0.1),
    "spread": ((0.0, 0, 0, 0, 0), 0.8),
}
# Wrist locations in body units (x towards the signer's dominant side, y down, origin between the shoulders,
# one unit = shoulder width).
LOCATIONS = {
    "neutral": (0.15, 0.75),
    "chest": (0.1, 0.35),
    "chin": (0.05, -0.45),
    "forehead": (0.1, -0.95),
    "ear": (0.35, -0.75),
    "side": (0.85, 0.55),
    "high": (0.55, -0.55),
    "waist": (0.2, 1.05),
    "cross": (-0.35, 0.3),
}
MOVEMENTS = ("straight", "arc", "circle", "zigzag", "tap", "wiggle")
# Wrist flexion of the dominant hand (radians added to the hand axis; the sentence corpus keeps "straight").
ORIENTATIONS = {"straight": 0.0, "up": -0.6, "down": 0.7}
HANDEDNESS = ("one", "mirror", "base")
MOUTHS = ("closed", "open", "round", "wide", "open-close")
REST = {"dominant": (0.55, 1.35), "other": (-0.55, 1.35)}


@dataclass(frozen=True)
class Sign:
    gloss: str
    handshape: str
    end_handshape: str
    start: str
    end: str
    movement: str
    hands: str
    mouth: str
    orientation: str = "straight"


@dataclass(frozen=True)
class Signer:
    id: str
    shoulder_px: float
    cx: float
    cy: float
    arm: float
    speed: float
    amplitude: float
    noise_px: float


def build_inventory(seed: int) -> dict[str, Sign]:
    """Assign every gloss a distinct (handshape, location, movement, handedness) form, from the seed."""
    rng = np.random.default_rng(seed)
    shapes, locs = list(HANDSHAPES), list(LOCATIONS)
    used: set[tuple] = set()
    inventory = {}
    for gloss in LEXICON:
        while True:
            hs = shapes[rng.integers(len(shapes))]
            end_hs = hs if rng.random() < 0.7 else shapes[rng.integers(len(shapes))]
            start = locs[rng.integers(len(locs))]
            end = locs[rng.integers(len(locs))]
            move = MOVEMENTS[rng.integers(len(MOVEMENTS))]
            hands = HANDEDNESS[rng.integers(len(HANDEDNESS))]
            key = (hs, start, move, hands)
            if key not in used and (start != end or move in ("circle", "tap", "wiggle", "zigzag")):
                used.add(key)
                break
        inventory[gloss] = Sign(gloss, hs, end_hs, start, end, move, hands, MOUTHS[rng.integers(len(MOUTHS))])
    return inventory


def make_signers(n: int, seed: int) -> list[Signer]:
    rng = np.random.default_rng(seed + 1)
    return [
        Signer(
            id=f"S{i:02d}",
            shoulder_px=float(rng.uniform(95, 125)),
            cx=float(WIDTH / 2 + rng.uniform(-40, 40)),
            cy=float(HEIGHT * 0.42 + rng.uniform(-20, 20)),
            arm=float(rng.uniform(0.95, 1.06)),
            speed=float(rng.uniform(0.85, 1.2)),
            amplitude=float(rng.uniform(0.9, 1.1)),
            noise_px=float(rng.uniform(0.6, 1.8)),
        )
        for i in range(n)
    ]


# ------------------------------------------------------------------------------------------------- grammar
def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def sample_sentence(rng: np.random.Generator) -> tuple[list[str], str]:
    """One sentence: its gloss sequence and its English translation."""
    verb = list(VERBS)[rng.integers(len(VERBS))]
    present, past, base, objects = VERBS[verb]
    subject = list(PERSONS)[rng.integers(len(PERSONS))]
    obj = objects[rng.integers(len(objects))]
    time = list(TIME)[rng.integers(len(TIME))] if rng.random() < 0.6 else None
    adjective = list(ADJECTIVES)[rng.integers(len(ADJECTIVES))] if obj in THINGS and rng.random() < 0.4 else None
    negated = rng.random() < 0.25

    glosses = ([time] if time else []) + [subject, obj] + ([adjective] if adjective else []) + [verb]
    glosses += [NEGATION] if negated else []

    tense = TIME[time] if time else "present"
    if tense == "past":
        verb_phrase = f"did not {base}" if negated else past
    elif tense == "future":
        verb_phrase = f"will not {base}" if negated else f"will {base}"
    else:
        verb_phrase = f"does not {base}" if negated else present
    noun = THINGS.get(obj) or PERSONS[obj]
    obj_phrase = f"{_article(ADJECTIVES[adjective])} {ADJECTIVES[adjective]} {noun}" if adjective else f"the {noun}"
    words = ([time.lower()] if time else []) + ["the", PERSONS[subject], verb_phrase, obj_phrase]
    return glosses, " ".join(words)


# ------------------------------------------------------------------------------------------------ kinematics
_FINGER_BASE_ANGLE = np.radians([-55.0, -14.0, 0.0, 12.0, 25.0])  # thumb..pinky, from the hand axis
_FINGER_SEGMENTS = np.array(
    [
        [0.16, 0.14, 0.12, 0.10],  # thumb: cmc, mcp, ip, tip
        [0.36, 0.17, 0.11, 0.09],  # index: mcp (from wrist), pip, dip, tip
        [0.36, 0.19, 0.12, 0.09],
        [0.34, 0.17, 0.11, 0.09],
        [0.31, 0.13, 0.09, 0.08],
    ]
)
_BEND = np.radians([35.0, 95.0, 80.0])  # per-joint bend at curl 1 (after the first segment)


def hand_points(
    wrist: np.ndarray, angle: np.ndarray, curls: np.ndarray, spread: np.ndarray, size: float, side: float
) -> np.ndarray:
    """21 hand keypoints per frame (COCO-WholeBody / MediaPipe order) from a planar finger model.

    wrist [T,2], angle [T] (direction of the hand axis, radians), curls [T,5], spread [T]; ``side`` is +1
    for the signer's left hand and -1 for the right (mirrors the thumb side).
    """
    t = wrist.shape[0]
    pts = np.zeros((t, 21, 2), np.float32)
    pts[:, 0] = wrist
    for f in range(5):
        base = angle + side * (_FINGER_BASE_ANGLE[f] * (1 + spread * (0.6 if f else 0.3)))
        pos = wrist.copy()
        direction = base.copy()
        for j in range(4):
            if j > 0:
                direction = direction + side * curls[:, f] * _BEND[min(j - 1, 2)]
            seg = _FINGER_SEGMENTS[f, j] * size
            pos = pos + seg * np.stack([np.cos(direction), np.sin(direction)], -1)
            pts[:, 1 + 4 * f + j] = pos
    return pts


def elbow_points(shoulder: np.ndarray, wrist: np.ndarray, upper: float, fore: float, outward: float) -> np.ndarray:
    """Two-link inverse kinematics: the elbow for a shoulder->wrist reach, bending outwards and down."""
    d = wrist - shoulder
    dist = np.clip(np.linalg.norm(d, axis=-1, keepdims=True), 1e-6, (upper + fore) * 0.999)
    unit = d / np.linalg.norm(d, axis=-1, keepdims=True).clip(1e-6)
    a = (upper**2 - fore**2 + dist**2) / (2 * dist)
    h = np.sqrt(np.clip(upper**2 - a**2, 0, None))
    normal = np.stack([-unit[:, 1], unit[:, 0]], -1)
    # choose the solution on the outer side of the body (x towards ``outward``) and below
    cand1 = shoulder + a * unit + h * normal
    cand2 = shoulder + a * unit - h * normal
    score1 = 0.3 * cand1[:, 0] * outward + cand1[:, 1]
    score2 = 0.3 * cand2[:, 0] * outward + cand2[:, 1]
    return np.where((score1 >= score2)[:, None], cand1, cand2)


def _path(sign: Sign, n: int, amplitude: float) -> np.ndarray:
    """Dominant wrist positions [n,2] in body units for one sign."""
    s, e = np.array(LOCATIONS[sign.start]), np.array(LOCATIONS[sign.end])
    u = np.linspace(0.0, 1.0, n)[:, None]
    line = s + (e - s) * u
    perp = np.array([-(e - s)[1], (e - s)[0]])
    perp = perp / (np.linalg.norm(perp) + 1e-6)
    if sign.movement == "straight":
        out = line
    elif sign.movement == "arc":
        out = line + 0.3 * amplitude * np.sin(np.pi * u) * perp
    elif sign.movement == "circle":
        phase = 2 * np.pi * u
        out = s + 0.18 * amplitude * np.concatenate([np.cos(phase) - 1, np.sin(phase)], 1)
    elif sign.movement == "zigzag":
        out = line + 0.12 * amplitude * np.sign(np.sin(6 * np.pi * u)) * np.abs(np.sin(6 * np.pi * u)) * np.array(
            [1.0, 0.3]
        )
    elif sign.movement == "tap":
        out = s + np.array([0.0, 0.12]) * amplitude * np.abs(np.sin(2 * np.pi * u))
    else:  # wiggle: the hand holds still; fingers move (see curls)
        out = s + 0.02 * np.sin(8 * np.pi * u) * np.array([1.0, 0.0])
    return out


def _mouth(kind: str, n: int) -> np.ndarray:
    """Mouth opening [n,2] (vertical opening, extra width) for one sign."""
    u = np.linspace(0, 1, n)
    bump = np.sin(np.pi * u)
    table = {
        "closed": (0.0 * u, 0.0 * u),
        "open": (0.09 * bump, 0.0 * u),
        "round": (0.06 * bump, -0.05 * bump),
        "wide": (0.02 * bump, 0.07 * bump),
        "open-close": (0.08 * np.abs(np.sin(2 * np.pi * u)), 0.0 * u),
    }
    open_, wide = table[kind]
    return np.stack([open_, wide], 1)


def _face_template() -> np.ndarray:
    """68 iBUG-ordered face points in body units (face centred at (0, -0.78), x = signer's left)."""
    c = np.array([0.0, -0.78])
    pts = np.zeros((68, 2))
    jaw = np.linspace(np.pi * 0.98, np.pi * 0.02, 17)  # index 0 at the signer's right (image left)
    pts[0:17] = c + np.stack([-0.26 * np.cos(jaw), 0.05 + 0.30 * np.sin(jaw)], 1)
    brow = np.linspace(-1, 1, 5)  # right brow outer -> inner, left brow inner -> outer
    pts[17:22] = c + np.stack([0.2 - 0.08 * brow, -0.14 - 0.03 * (1 - brow**2)], 1)
    pts[22:27] = c + np.stack([-0.2 - 0.08 * brow, -0.14 - 0.03 * (1 - brow**2)], 1)
    pts[27:31] = c + np.stack([np.zeros(4), np.linspace(-0.08, 0.06, 4)], 1)
    pts[31:36] = c + np.stack([np.linspace(-0.05, 0.05, 5), np.full(5, 0.08)], 1)
    eye = np.linspace(0, 2 * np.pi, 7)[:-1]
    pts[36:42] = c + np.stack([0.12 + 0.045 * np.cos(eye), -0.06 - 0.018 * np.sin(eye)], 1)
    pts[42:48] = c + np.stack([-0.12 + 0.045 * np.cos(eye), -0.06 - 0.018 * np.sin(eye)], 1)
    outer = np.linspace(0, 2 * np.pi, 13)[:-1]  # 48 = right corner, upper lip first
    pts[48:60] = c + np.stack([0.09 * np.cos(outer), 0.16 - 0.035 * np.sin(outer)], 1)
    inner = np.linspace(0, 2 * np.pi, 9)[:-1]  # 60 = right inner corner
    pts[60:68] = c + np.stack([0.065 * np.cos(inner), 0.16 - 0.015 * np.sin(inner)], 1)
    return pts


_FACE = _face_template()
# -1 for upper-lip points, +1 for lower-lip points: an open mouth moves them apart vertically.
_LIP_SIGN = np.sign(
    np.concatenate([-np.sin(np.linspace(0, 2 * np.pi, 13)[:-1]), -np.sin(np.linspace(0, 2 * np.pi, 9)[:-1])])
)


def render_sentence(
    glosses: list[str], inventory: dict[str, Sign], signer: Signer, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [T,133,2] in pixels and confidences [T,133] for one signed sentence."""
    dom_path, other_path, dom_curl, other_curl, spread, mouth, tilt = [], [], [], [], [], [], []
    rest_d, rest_o = np.array(REST["dominant"]), np.array(REST["other"])
    rest_curl = np.array(HANDSHAPES["flat"][0])

    def hold(pos_d, pos_o, curl_d, curl_o, sp, n):
        dom_path.append(np.repeat(pos_d[None], n, 0))
        other_path.append(np.repeat(pos_o[None], n, 0))
        dom_curl.append(np.repeat(curl_d[None], n, 0))
        other_curl.append(np.repeat(curl_o[None], n, 0))
        spread.append(np.full(n, sp))
        mouth.append(np.zeros((n, 2)))
        tilt.append(np.zeros(n))

    segments = []
    for gloss in glosses:
        sign = inventory[gloss]
        n = max(8, round(rng.uniform(12, 16) / signer.speed))
        d = _path(sign, n, signer.amplitude)
        u = np.linspace(0, 1, n)[:, None]
        c0, s0 = np.array(HANDSHAPES[sign.handshape][0]), HANDSHAPES[sign.handshape][1]
        c1, s1 = np.array(HANDSHAPES[sign.end_handshape][0]), HANDSHAPES[sign.end_handshape][1]
        curls = c0 + (c1 - c0) * u
        if sign.movement == "wiggle":
            curls = np.clip(curls + 0.35 * np.sin(6 * np.pi * u + np.arange(5)) * (np.arange(5) > 0), 0, 1)
        if sign.hands == "mirror":
            o = d * np.array([-1.0, 1.0])
            oc = curls
        elif sign.hands == "base":
            o = np.repeat(np.array([[-0.05, 0.65]]), n, 0)
            oc = np.repeat(np.array(HANDSHAPES["flat"][0])[None], n, 0)
            d = d * 0.6 + np.array([0.05, 0.3])  # the dominant hand acts near the base hand
        else:
            o = np.repeat(rest_o[None], n, 0)
            oc = np.repeat(rest_curl[None], n, 0)
        segments.append((d, o, curls, oc, s0 + (s1 - s0) * u[:, 0], _mouth(sign.mouth, n),
                         np.full(n, ORIENTATIONS[sign.orientation])))  # fmt: skip

    hold(rest_d, rest_o, rest_curl, rest_curl, 0.05, int(rng.integers(4, 8)))
    for d, o, c, oc, sp, m, tl in segments:
        # movement from wherever the hands are to the start of the sign
        n_tr = max(3, round(rng.uniform(4, 7) / signer.speed))
        u = np.linspace(0, 1, n_tr + 2)[1:-1, None]
        dom_path.append(dom_path[-1][-1] + (d[0] - dom_path[-1][-1]) * u)
        other_path.append(other_path[-1][-1] + (o[0] - other_path[-1][-1]) * u)
        dom_curl.append(dom_curl[-1][-1] + (c[0] - dom_curl[-1][-1]) * u)
        other_curl.append(other_curl[-1][-1] + (oc[0] - other_curl[-1][-1]) * u)
        spread.append(spread[-1][-1] + (sp[0] - spread[-1][-1]) * u[:, 0])
        mouth.append(np.zeros((n_tr, 2)))
        tilt.append(tilt[-1][-1] + (tl[0] - tilt[-1][-1]) * u[:, 0])
        dom_path.append(d)
        other_path.append(o)
        dom_curl.append(c)
        other_curl.append(oc)
        spread.append(sp)
        mouth.append(m)
        tilt.append(tl)
    n_back = int(rng.integers(5, 8))
    u = np.linspace(0, 1, n_back)[:, None]
    dom_path.append(dom_path[-1][-1] + (rest_d - dom_path[-1][-1]) * u)
    other_path.append(other_path[-1][-1] + (rest_o - other_path[-1][-1]) * u)
    dom_curl.append(dom_curl[-1][-1] + (rest_curl - dom_curl[-1][-1]) * u)
    other_curl.append(other_curl[-1][-1] + (rest_curl - other_curl[-1][-1]) * u)
    spread.append(np.full(n_back, 0.05))
    mouth.append(np.zeros((n_back, 2)))
    tilt.append(tilt[-1][-1] * (1 - u[:, 0]))

    dom = np.concatenate(dom_path)
    oth = np.concatenate(other_path)
    dcurl, ocurl = np.concatenate(dom_curl), np.concatenate(other_curl)
    spr, mth, tlt = np.concatenate(spread), np.concatenate(mouth), np.concatenate(tilt)
    t = len(dom)

    # Body units -> pixels. The dominant hand is the signer's right (image left: x decreases).
    unit = signer.shoulder_px
    origin = np.array([signer.cx, signer.cy])
    sway = 0.02 * np.sin(np.linspace(0, 2 * np.pi * rng.uniform(0.3, 1.0), t))[:, None] * np.array([1, 0.3])

    def px(
        p,
    ):  # body units (x towards the dominant = signer's right) -> image pixels; p: [2], [t,2] or [t,k,2]
        p = np.asarray(p, float)
        return origin + (p * np.array([-1.0, 1.0]) + (sway[:, None] if p.ndim == 3 else sway)) * unit

    kp = np.zeros((t, 133, 2), np.float32)
    conf = np.zeros((t, 133), np.float32)
    # body (COCO 17 + 6 feet); signer's left = +x in body units before the flip in px() -> use -x here
    head = np.array([0.0, -0.78])
    body = {
        0: (0.0, 0.06),
        1: (-0.1, -0.04),
        2: (0.1, -0.04),
        3: (-0.24, 0.0),
        4: (0.24, 0.0),  # head
        5: (-0.5, 0.78),
        6: (0.5, 0.78),
        11: (-0.34, 2.33),
        12: (0.34, 2.33),  # shoulders, hips
    }
    for idx, offset in body.items():
        kp[:, idx] = px(head + np.asarray(offset))
        conf[:, idx] = 0.9 if idx < 11 else 0.45
    # arms: right (dominant) = COCO 6/8/10, left = 5/7/9
    upper, fore = 0.72 * signer.arm, 0.68 * signer.arm
    sh_r, sh_l = np.array([0.5, 0.0]), np.array([-0.5, 0.0])
    wr_r, wr_l = dom, oth
    el_r = elbow_points(np.repeat(sh_r[None], t, 0), wr_r, upper, fore, outward=1.0)
    el_l = elbow_points(np.repeat(sh_l[None], t, 0), wr_l, upper, fore, outward=-1.0)
    kp[:, 8], kp[:, 10], kp[:, 7], kp[:, 9] = px(el_r), px(wr_r), px(el_l), px(wr_l)
    conf[:, [7, 8, 9, 10]] = 0.85
    # face, with the mouth opening and widening
    face = np.repeat(_FACE[None], t, 0).copy()
    face[:, 48:68, 1] += mth[:, :1] * 0.5 * _LIP_SIGN
    face[:, 48:68, 0] *= 1 + mth[:, 1:2]  # the mouth is centred at x = 0
    kp[:, 23:91] = px(face)
    conf[:, 23:91] = 0.8
    # hands: forearm direction continues into the hand axis
    size = 0.45 * unit
    for wr, el, curls, hand_slice, side, flex in (
        (wr_r, el_r, dcurl, slice(112, 133), -1.0, tlt),
        (wr_l, el_l, ocurl, slice(91, 112), 1.0, np.zeros(t)),
    ):
        fore_dir = px(wr) - px(el)
        angle = np.arctan2(fore_dir[:, 1], fore_dir[:, 0]) + side * flex
        kp[:, hand_slice] = hand_points(px(wr), angle, curls, spr, size, side)
        conf[:, hand_slice] = 0.8
    # estimator-like noise and dropped detections
    kp += rng.normal(0.0, signer.noise_px, kp.shape).astype(np.float32)
    for hand_slice in (slice(91, 112), slice(112, 133)):
        dropped = rng.random(t) < 0.03
        conf[dropped, hand_slice] = 0.0
    conf[conf > 0] = np.clip(conf[conf > 0] + rng.normal(0, 0.05, int((conf > 0).sum())), 0.05, 1.0)
    kp[conf == 0] = 0.0
    return kp, conf


def to_pose(kp: np.ndarray, conf: np.ndarray) -> Pose:
    header = PoseHeader(
        version=0.2,
        dimensions=PoseHeaderDimensions(width=WIDTH, height=HEIGHT, depth=0),
        components=cocowholebody_components(),
    )
    data = np.ma.masked_array(kp[:, None], mask=np.repeat((conf == 0)[:, None, :, None], 2, axis=3))
    return Pose(header, NumPyPoseBody(fps=FPS, data=data, confidence=conf[:, None]))


# ------------------------------------------------------------------------------------------------ the corpus
@dataclass(frozen=True)
class SyntheticSpec:
    train: int = 600
    dev: int = 60
    test: int = 60
    signers: int = 6
    seed: int = 0


def generate(root: str, spec: SyntheticSpec = SyntheticSpec(), progress: bool = False) -> str:
    """Write the synthetic corpus under ``root`` (local or remote). Returns the URI of its table.

    Deterministic: the same spec gives byte-identical files. Dev and test sentences never repeat a train
    sentence's gloss sequence, so evaluation measures generalisation to new combinations.
    """
    inventory = build_inventory(spec.seed)
    signers = make_signers(spec.signers, spec.seed)
    rng = np.random.default_rng(spec.seed + 2)
    seen_train: set[tuple[str, ...]] = set()
    rows = []
    counts = {"train": spec.train, "dev": spec.dev, "test": spec.test}
    total = sum(counts.values())
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc="synthetic corpus", unit="sample")
    k = 0
    for split, n in counts.items():
        made = 0
        while made < n:
            glosses, text = sample_sentence(rng)
            key = tuple(glosses)
            if split == "train":
                seen_train.add(key)
            elif key in seen_train:
                continue
            signer = signers[int(rng.integers(len(signers)))]
            kp, conf = render_sentence(glosses, inventory, signer, rng)
            name = f"syn{k:05d}"
            storage.write_bytes(storage.join(root, "poses", f"{name}.pose"), pose_bytes(to_pose(kp, conf)))
            rows.append([name, split, signer.id, " ".join(glosses), text, str(len(kp)), f"poses/{name}.pose"])
            made += 1
            k += 1
            if bar:
                bar.update(1)
    if bar:
        bar.close()
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    writer.writerows(rows)
    description = {
        "generator": "ray_slt.data.synthetic",
        "version": GENERATOR_VERSION,
        "synthetic": True,
        "spec": asdict(spec),
        "layout": "COCO-WholeBody-133 (pose-format components BODY, FACE, LEFT_HAND, RIGHT_HAND), pixels",
        "size": [WIDTH, HEIGHT],
        "fps": FPS,
        "signs": {g: asdict(s) for g, s in inventory.items()},
        "signers": [asdict(s) for s in signers],
    }
    storage.write_text(storage.join(root, "synthetic.json"), json.dumps(description, indent=2) + "\n")
    storage.write_text(storage.join(root, "README.md"), _README.format(n=total, **asdict(spec)))
    table = storage.join(root, "synthetic.tsv")
    storage.write_text(table, buf.getvalue())  # written last: its presence means the corpus is complete
    return table


def write_sign_lexicon(corpus: str, out: str, signer: int = 0) -> str:
    """A lexicon of the synthetic corpus at ``corpus``: every sign of its inventory signed alone by one of its
    signers (``signer``), as a ``.pose`` file, with an ``index.csv`` in spoken-to-signed's lexicon format (path,
    spoken_language ``en``, signed_language ``qsl``, start, end, words, glosses, priority): what a dictionary
    of the language would hold, for the lexicon-concatenation baseline of production
    (:mod:`ray_slt.models.lexicon_producer`). Deterministic; returns the index's URI."""
    description = json.loads(storage.read_text(storage.join(corpus, "synthetic.json")))
    spec = SyntheticSpec(**description["spec"])
    if not 0 <= signer < spec.signers:
        raise ValueError(f"signer {signer} is not one of the corpus's {spec.signers}")
    inventory = build_inventory(spec.seed)
    who = make_signers(spec.signers, spec.seed)[signer]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("path", "spoken_language", "signed_language", "start", "end", "words", "glosses", "priority"))
    for k, gloss in enumerate(sorted(inventory)):
        kp, conf = render_sentence([gloss], inventory, who, np.random.default_rng((spec.seed, k)))
        path = f"poses/{gloss.lower()}.pose"
        storage.write_bytes(storage.join(out, path), pose_bytes(to_pose(kp, conf)))
        ms = round(len(kp) / FPS * 1000)
        writer.writerow((path, "en", "qsl", 0, ms, gloss.lower(), gloss, 0))
    index = storage.join(out, "index.csv")
    storage.write_text(index, buf.getvalue())  # written last
    return index


_README = """# Synthetic sign language corpus (NOT a real sign language)

Generated by `ray_slt.data.synthetic` (seed {seed}): {n} sentences ({train} train, {dev} dev, {test} test) by
{signers} synthetic signers, as COCO-WholeBody-133 `.pose` files in `poses/`. The signs, grammar and signers
are made up so that small models can learn them on a laptop; see `synthetic.json` for the sign inventory.
Do not report results on this corpus as sign language translation results.
"""


# --------------------------------------------------------------------------------- the isolated-sign mode
# Every sign of the isolated mode is a distinct combination of five phonological parameters (handshape x wrist
# orientation x location x movement x handedness), and its dictionary-style description names each parameter
# in a fragment of its own (fragments are split at commas): the only data here on which recognising signs never
# seen in training, from their descriptions alone, can really be learned and measured.
HANDSHAPE_TEXT = {
    "flat": "flat hand with the fingers together",
    "fist": "closed fist",
    "point": "index finger pointing",
    "v": "index and middle finger spread in a V",
    "y": "thumb and little finger out",
    "l": "thumb and index finger out in an L",
    "claw": "bent spread fingers like a claw",
    "o": "fingertips touching the thumb in an O shape",
    "spread": "open hand with all fingers spread",
}
ORIENTATION_TEXT = {"straight": "wrist held straight", "up": "hand bent up at the wrist",
                    "down": "hand bent down at the wrist"}  # fmt: skip
LOCATION_TEXT = {
    "neutral": "in front of the body",
    "chest": "at the chest",
    "chin": "at the chin",
    "forehead": "at the forehead",
    "ear": "beside the ear",
    "side": "out at the side",
    "high": "above the shoulder",
    "waist": "at the waist",
    "cross": "across the body",
}
HANDS_TEXT = {"one": "one hand only", "mirror": "both hands mirroring each other",
              "base": "the other hand held flat as a base"}  # fmt: skip
ISOLATED_TSV = "isolated.tsv"
LEXICON_CSV = "lexicon.csv"


DESTINATION_TEXT = {
    "neutral": "to the space in front of the body",
    "chest": "to the chest",
    "chin": "to the chin",
    "forehead": "to the forehead",
    "ear": "to the ear",
    "side": "out to the side",
    "high": "up above the shoulder",
    "waist": "down to the waist",
    "cross": "across the body",
}


def _movement_text(sign: Sign) -> str:
    if sign.movement in ("straight", "arc"):
        how = "straight" if sign.movement == "straight" else "in an arc"
        return f"moving {how} {DESTINATION_TEXT[sign.end]}" if sign.end != sign.start else f"moving {how}"
    return {"circle": "circling", "zigzag": "moving in a zigzag", "tap": "tapping twice",
            "wiggle": "wiggling the fingers"}[sign.movement]  # fmt: skip


def describe(sign: Sign) -> str:
    """A dictionary-style description of a sign, one parameter per comma-separated fragment: handshape, wrist
    orientation, location, movement, handedness (no phrase holds punctuation of its own)."""
    first = HANDSHAPE_TEXT[sign.handshape]
    return (
        f"{first[0].upper()}{first[1:]}, {ORIENTATION_TEXT[sign.orientation]}, starting {LOCATION_TEXT[sign.start]}, "
        f"{_movement_text(sign)}, {HANDS_TEXT[sign.hands]}."
    )


def isolated_inventory(n: int, seed: int) -> dict[str, Sign]:
    """``n`` signs ``QSL-001``..., each a distinct (handshape, orientation, location, movement, handedness)
    combination, drawn from the seed; the handshape does not change within a sign and straight/arc movements end
    at another location."""
    rng = np.random.default_rng(seed + 10)
    shapes, locs, orients = list(HANDSHAPES), list(LOCATIONS), list(ORIENTATIONS)
    space = len(shapes) * len(orients) * len(locs) * len(MOVEMENTS) * len(HANDEDNESS)
    if not 2 <= n <= space // 4:
        raise ValueError(f"classes must be between 2 and {space // 4}, not {n}")
    used: set[tuple] = set()
    inventory = {}
    for k in range(n):
        while True:
            hs, orient = shapes[rng.integers(len(shapes))], orients[rng.integers(len(orients))]
            start, move = locs[rng.integers(len(locs))], MOVEMENTS[rng.integers(len(MOVEMENTS))]
            hands = HANDEDNESS[rng.integers(len(HANDEDNESS))]
            key = (hs, orient, start, move, hands)
            if key not in used:
                used.add(key)
                break
        end = start
        if move in ("straight", "arc"):
            end = [loc for loc in locs if loc != start][rng.integers(len(locs) - 1)]
        gloss = f"QSL-{k + 1:03d}"
        inventory[gloss] = Sign(gloss, hs, hs, start, end, move, hands, "closed", orient)
    return inventory


@dataclass(frozen=True)
class IsolatedSpec:
    classes: int = 60
    train: int = 6  # samples per class and split
    dev: int = 2
    test: int = 2
    signers: int = 6
    seed: int = 0


def generate_isolated(root: str, spec: IsolatedSpec = IsolatedSpec(), progress: bool = False) -> str:
    """Write the isolated-sign corpus under ``root``: ``isolated.tsv`` (as ``synthetic.tsv``; the gloss and the text
    are the sign's name), ``poses/``, ``lexicon.csv`` (``gloss,description,language,source``: every sign's
    description; the lexicon format of :mod:`ray_slt.data.lexicon`), ``synthetic.json`` and ``README.md``.
    Every class has ``train``/``dev``/``test`` samples by signers drawn at random. Deterministic."""
    inventory = isolated_inventory(spec.classes, spec.seed)
    signers = make_signers(spec.signers, spec.seed)
    rng = np.random.default_rng(spec.seed + 3)
    rows, k = [], 0
    counts = {"train": spec.train, "dev": spec.dev, "test": spec.test}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=spec.classes * sum(counts.values()), desc="synthetic isolated signs", unit="sample")
    for gloss in inventory:
        for split, n in counts.items():
            for _ in range(n):
                signer = signers[int(rng.integers(len(signers)))]
                kp, conf = render_sentence([gloss], inventory, signer, rng)
                name = f"iso{k:05d}"
                storage.write_bytes(storage.join(root, "poses", f"{name}.pose"), pose_bytes(to_pose(kp, conf)))
                rows.append([name, split, signer.id, gloss, gloss, str(len(kp)), f"poses/{name}.pose"])
                k += 1
                if bar:
                    bar.update(1)
    if bar:
        bar.close()
    lex = io.StringIO()
    writer = csv.writer(lex, lineterminator="\n")
    writer.writerow(["gloss", "description", "language", "source"])
    writer.writerows([g, describe(s), "qsl", "synthetic"] for g, s in inventory.items())
    storage.write_text(storage.join(root, LEXICON_CSV), lex.getvalue())
    description = {
        "generator": "ray_slt.data.synthetic (isolated signs)",
        "version": GENERATOR_VERSION,
        "synthetic": True,
        "mode": "isolated",
        "spec": asdict(spec),
        "layout": "COCO-WholeBody-133 (pose-format components BODY, FACE, LEFT_HAND, RIGHT_HAND), pixels",
        "size": [WIDTH, HEIGHT],
        "fps": FPS,
        "signs": {g: {**asdict(s), "description": describe(s)} for g, s in inventory.items()},
        "signers": [asdict(s) for s in signers],
    }
    storage.write_text(storage.join(root, "synthetic.json"), json.dumps(description, indent=2) + "\n")
    storage.write_text(storage.join(root, "README.md"), _ISOLATED_README.format(n=k, **asdict(spec)))
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(TSV_COLUMNS)
    writer.writerows(rows)
    table = storage.join(root, ISOLATED_TSV)
    storage.write_text(table, buf.getvalue())  # written last: its presence means the corpus is complete
    return table


_ISOLATED_README = """# Synthetic isolated signs (NOT a real sign language)

Generated by `ray_slt.data.synthetic` (isolated mode, seed {seed}): {classes} made-up signs, each a distinct
combination of handshape, wrist orientation, location, movement and handedness, {train}/{dev}/{test}
train/dev/test samples per sign by {signers} synthetic signers ({n} `.pose` files in `poses/`). `lexicon.csv` holds
every sign's description, one parameter per comma-separated fragment. It exists so that recognition of signs never
seen in training, from their descriptions, can be learned and measured on a laptop. Do not report results on it
as sign language recognition results.
"""
