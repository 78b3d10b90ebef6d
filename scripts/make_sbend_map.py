"""Write routes/maps/sbend_highway.xodr: a closed highway of clothoid S-bends (the S-bend routes' map).

Why a file map: the procedural Town04 loop bends one way at a constant radius of ~260 m; an
S-bend (curvature sweeping from left to right through a clothoid) at highway speed is what a
lane keeper on late masks should find hardest, and the procedural towns are frozen by the
recordings. The road is two halves, B the half-turn rotation of A about the midpoint of A's
ends, so the loop closes exactly for any A: A is a straight, a wide S (R 320 m, 110 km/h at
2.9 m/s^2), a tighter S (R 220 m), and a U-turn (R 180 m), every curvature change a clothoid.
Three 3.5 m lanes each way, a solid yellow centre, broken white lane lines, solid white edges.

    python scripts/make_sbend_map.py            # rewrites routes/maps/sbend_highway.xodr
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "routes" / "maps" / "sbend_highway.xodr"
K1, K2, KU = 1 / 320, 1 / 220, 1 / 180
# (length m, curvature at start, curvature at end): a line, an arc or a clothoid (spiral).
HALF: list[tuple[float, float, float]] = [
    (150, 0, 0),
    (90, 0, K1),
    (160, K1, K1),
    (180, K1, -K1),
    (160, -K1, -K1),
    (90, -K1, 0),
    (100, 0, 0),
    (70, 0, K2),
    (110, K2, K2),
    (140, K2, -K2),
    (110, -K2, -K2),
    (70, -K2, 0),
    (150, 0, 0),
    (80, 0, KU),
    (math.pi / KU - 80, KU, KU),  # the two 80 m clothoids turn 80 * KU together: the arc does the rest of pi
    (80, KU, 0),
]


def integrate(x: float, y: float, h: float, length: float, k0: float, k1: float, step: float = 0.01):
    """End pose of a piece whose curvature goes linearly from k0 to k1 (midpoint rule, 1 cm steps)."""
    n = max(int(math.ceil(length / step)), 1)
    ds = length / n
    for i in range(n):
        s_mid = (i + 0.5) * ds
        h_mid = h + k0 * s_mid + (k1 - k0) * s_mid * s_mid / (2 * length)
        x += ds * math.cos(h_mid)
        y += ds * math.sin(h_mid)
    h += k0 * length + (k1 - k0) * length / 2
    return x, y, h


def geometries(x: float, y: float, h: float) -> tuple[str, tuple[float, float, float], list[tuple[float, float]]]:
    """The planView records of one half from pose (x, y, h), its end pose and 5 m samples."""
    recs, s, pts = [], 0.0, [(x, y)]
    for length, k0, k1 in HALF:
        if k0 == k1 == 0:
            body = "<line/>"
        elif k0 == k1:
            body = f'<arc curvature="{k0:.12g}"/>'
        else:
            body = f'<spiral curvStart="{k0:.12g}" curvEnd="{k1:.12g}"/>'
        pose = f's="{s:.9f}" x="{x:.9f}" y="{y:.9f}" hdg="{h:.12f}" length="{length:.9f}"'
        recs.append(f"<geometry {pose}>{body}</geometry>")
        for j in range(1, int(length // 5) + 1):  # samples, for the clearance check only
            pts.append(integrate(x, y, h, 5.0 * j, k0, k0 + (k1 - k0) * 5.0 * j / length, step=0.5)[:2])
        x, y, h = integrate(x, y, h, length, k0, k1)
        s += length
    return "".join(recs), (x, y, h), pts


def _mark(kind: str, color: str) -> str:
    return f'<roadMark sOffset="0" type="{kind}" color="{color}" width="0.15"/>'


def _lane(lid: int, kind: str, width: float, mark: str) -> str:
    link = f'<link><predecessor id="{lid}"/><successor id="{lid}"/></link>'
    return (
        f'<lane id="{lid}" type="{kind}" level="false">{link}'
        f'<width sOffset="0" a="{width}" b="0" c="0" d="0"/>{mark}</lane>'
    )


def _lanes(side: str) -> str:
    sign = 1 if side == "left" else -1
    out = [_lane(sign * i, "driving", 3.5, _mark("solid" if i == 3 else "broken", "white")) for i in (1, 2, 3)]
    out.append(_lane(sign * 4, "shoulder", 2.0, _mark("none", "standard")))
    if side == "left":
        out.reverse()
    return "".join(out)


def _road(rid: int, other: int, length: float, plan: str) -> str:
    link = (
        f'<predecessor elementType="road" elementId="{other}" contactPoint="end"/>'
        f'<successor elementType="road" elementId="{other}" contactPoint="start"/>'
    )
    return (
        f'<road name="sbend{rid}" length="{length:.9f}" id="{rid}" junction="-1"><link>{link}</link>'
        f'<type s="0" type="motorway"/><planView>{plan}</planView><lanes><laneSection s="0">'
        f"<left>{_lanes('left')}</left>"
        f'<center><lane id="0" type="none" level="false">{_mark("solid", "yellow")}</lane></center>'
        f"<right>{_lanes('right')}</right></laneSection></lanes></road>"
    )


def document() -> tuple[str, float]:
    """The OpenDRIVE text and the clearance [m] between the two halves (must be far above a road's width)."""
    plan_a, (ex, ey, eh), pts_a = geometries(0.0, 0.0, 0.0)
    plan_b, (bx, by, _), pts_b = geometries(ex, ey, eh)
    if math.hypot(bx, by) > 1e-3:
        raise RuntimeError(f"the loop does not close ({bx:.4f}, {by:.4f})")
    clearance = min(math.hypot(a[0] - b[0], a[1] - b[1]) for a in pts_a[20:-20] for b in pts_b[20:-20])
    length = sum(p[0] for p in HALF)
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<OpenDRIVE>\n'
        '<header revMajor="1" revMinor="4" name="sbend_highway" vendor="laneloop"/>\n'
        f"{_road(1, 2, length, plan_a)}\n{_road(2, 1, length, plan_b)}\n</OpenDRIVE>\n"
    )
    return text, clearance


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(OUT), help="the .xodr to write (default routes/maps/sbend_highway.xodr)")
    args = p.parse_args(argv)
    text, clearance = document()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    half = sum(h[0] for h in HALF)
    print(f"{out}: 2 roads of {half:.0f} m, halves {clearance:.0f} m apart at the closest", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
