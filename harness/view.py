"""The live pygame view of the loop: the only module that imports pygame.

Camera image with TP / FP / FN overlays of the shown model, a HUD (frame, sim time, IoU
frame and running, latency frame and p90, FPS, speed, steer, model and scheme) and a
latency sparkline. Keys: space pause, n next frame while paused, tab next model, o
overlays on/off, s screenshot, q or Esc quit. The window is resizable. Headless
(SDL_VIDEODRIVER=dummy) it draws the same into an off-screen surface, so tests can save
it as PNG. The window opens lazily, on the first frame.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from harness.contracts import ViewFrame

#: Overlay colours (RGB): true positive, false positive, false negative (the report uses the same).
TP_RGB, FP_RGB, FN_RGB = (40, 220, 60), (240, 40, 40), (40, 140, 255)
HUD_W = 250
SPARK_H = 56


def _pygame() -> Any:
    try:
        os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
        import pygame
    except ImportError as e:  # pragma: no cover - pygame is a dependency
        raise RuntimeError("the live view needs pygame (pip install pygame)") from e
    return pygame


def overlay_rgb(rgb: np.ndarray, truth: np.ndarray, pred: np.ndarray, alpha: float = 0.7) -> np.ndarray:
    """RGB with TP / FP / FN pixels tinted in their colours."""
    out = rgb.astype(np.float32)
    for sel, colour in ((truth & pred, TP_RGB), (~truth & pred, FP_RGB), (truth & ~pred, FN_RGB)):
        out[sel] = (1.0 - alpha) * out[sel] + alpha * np.asarray(colour, np.float32)
    return out.clip(0, 255).astype(np.uint8)


def _fmt(v: float, spec: str) -> str:
    return "-" if v is None or not math.isfinite(v) else format(v, spec)


class LoopView:
    """Draws `ViewFrame`s; `update` returns False when the user quits.

    While paused, `update` waits in its own event loop (redrawing on tab / o) until space
    (resume), n (one more frame) or quit.
    """

    def __init__(
        self,
        scale: int = 3,
        screenshot_dir: str | Path = "screenshots",
        fps_cap: float | None = None,
        screenshot_every: int | None = None,
    ) -> None:
        self.scale = scale
        self.screenshot_dir = Path(screenshot_dir)
        self.fps_cap = fps_cap
        self.screenshot_every = screenshot_every  # also save every N-th frame: a record of a headless run
        self._updates = 0
        self.shown = 0
        self.overlays = True
        self.paused = False
        self._step = False
        self._screen: Any = None
        self._font: Any = None
        self._small: Any = None
        self._last: ViewFrame | None = None
        self.screenshots: list[Path] = []

    # -- window ----------------------------------------------------------------------------
    def _open(self, frame: ViewFrame) -> None:
        pg = _pygame()
        pg.display.init()
        pg.font.init()
        h, w = frame.rgb.shape[:2]
        size = (w * self.scale + HUD_W, max(h * self.scale, 330))
        self._screen = pg.display.set_mode(size, pg.RESIZABLE)
        pg.display.set_caption("laneloop")
        self._font = pg.font.Font(None, 22)
        self._small = pg.font.Font(None, 18)
        self._clock = pg.time.Clock()

    def close(self) -> None:
        if self._screen is not None:
            pg = _pygame()
            pg.display.quit()
            self._screen = None

    # -- drawing ---------------------------------------------------------------------------
    def render(self, frame: ViewFrame) -> Any:
        """Draw a frame onto the window surface and return it."""
        if self._screen is None:
            self._open(frame)
        pg = _pygame()
        screen = self._screen
        sw, sh = screen.get_size()
        screen.fill((18, 18, 22))
        models = frame.models
        m = models[self.shown % len(models)] if models else None
        img = frame.rgb
        if m is not None and self.overlays:
            img = overlay_rgb(frame.rgb, frame.truth, m.mask)
        h, w = img.shape[:2]
        area_w, area_h = max(sw - HUD_W, 32), max(sh, 32)
        k = min(area_w / w, area_h / h)
        dw, dh = max(int(w * k), 1), max(int(h * k), 1)
        surf = pg.surfarray.make_surface(np.ascontiguousarray(img.transpose(1, 0, 2)))
        surf = pg.transform.scale(surf, (dw, dh))
        screen.blit(surf, (0, 0))
        if frame.guide is not None and self.overlays:
            pts = [(float(u) * k, float(v) * k) for u, v in frame.guide if math.isfinite(u) and math.isfinite(v)]
            pts = [(x, y) for x, y in pts if 0 <= x < dw and 0 <= y < dh]
            if len(pts) > 1:
                pg.draw.lines(screen, (255, 230, 0), False, pts, 2)
        self._hud(screen, frame, m, dw)
        return screen

    def _hud(self, screen: Any, frame: ViewFrame, m: Any, x0: int) -> None:
        pg = _pygame()
        x = x0 + 10
        y = 8
        lines = []
        if m is not None:
            lines.append((f"{m.name}", (255, 255, 255)))
            lines.append((f"scheme {m.scheme}", (200, 200, 200)))
        lines += [
            (f"frame {frame.frame}   t {frame.sim_time:.2f} s", (220, 220, 220)),
            (f"drive {frame.drive}", (200, 200, 200)),
        ]
        if m is not None:
            lines += [
                (f"IoU {_fmt(m.iou, '.3f')}   run {_fmt(m.running_iou, '.3f')}", (120, 255, 140)),
                (f"lat {_fmt(m.latency_ms, '.1f')} ms  p90 {_fmt(m.p90_ms, '.1f')}", (255, 220, 120)),
                (f"model FPS {_fmt(m.fps, '.1f')}", (255, 220, 120)),
                (
                    "DEADLINE MISS" if m.deadline_missed else "on time",
                    (255, 90, 90) if m.deadline_missed else (150, 150, 150),
                ),
            ]
        lines += [
            (f"loop FPS {_fmt(frame.loop_fps, '.1f')}", (200, 200, 200)),
            (f"speed {frame.speed * 3.6:.1f} km/h", (200, 200, 255)),
            (f"steer {frame.steer:+.2f}", (200, 200, 255)),
        ]
        if len(frame.models) > 1:
            lines.append((f"model {self.shown % len(frame.models) + 1}/{len(frame.models)} (tab)", (170, 170, 170)))
        if self.paused:
            lines.append(("PAUSED (space, n)", (255, 120, 120)))
        for text, colour in lines:
            screen.blit(self._font.render(text, True, colour), (x, y))
            y += 22
        for label, colour in (("TP", TP_RGB), ("FP", FP_RGB), ("FN", FN_RGB)):
            pg.draw.rect(screen, colour, (x, y + 3, 12, 12))
            screen.blit(self._small.render(label, True, (220, 220, 220)), (x + 16, y + 2))
            x += 52
        y += 24
        if m is not None:
            self._sparkline(screen, m.latencies, (x0 + 10, y, HUD_W - 20, SPARK_H))

    def _sparkline(self, screen: Any, values: list[float], rect: tuple[int, int, int, int]) -> None:
        pg = _pygame()
        x, y, w, h = rect
        pg.draw.rect(screen, (40, 40, 48), rect)
        vals = [v for v in values if math.isfinite(v)]
        if len(vals) < 2:
            return
        top = max(max(vals), 1e-6)
        n = len(vals)
        pts = [(x + i * (w - 1) / (n - 1), y + h - 1 - (v / top) * (h - 2)) for i, v in enumerate(vals)]
        pg.draw.lines(screen, (255, 200, 80), False, pts, 1)
        screen.blit(self._small.render(f"latency, max {top:.1f} ms", True, (170, 170, 170)), (x + 2, y + 2))

    # -- events ----------------------------------------------------------------------------
    def handle_key(self, key: int) -> bool:
        """Apply one key; False means quit."""
        pg = _pygame()
        if key in (pg.K_q, pg.K_ESCAPE):
            return False
        if key == pg.K_SPACE:
            self.paused = not self.paused
        elif key == pg.K_n:
            self._step = True
        elif key == pg.K_TAB:
            self.shown += 1
        elif key == pg.K_o:
            self.overlays = not self.overlays
        elif key == pg.K_s and self._last is not None:
            self.screenshot()
        return True

    def _events(self) -> bool:
        pg = _pygame()
        for ev in pg.event.get():
            if ev.type == pg.QUIT:
                return False
            if ev.type == pg.KEYDOWN and not self.handle_key(ev.key):
                return False
        return True

    def screenshot(self, path: str | Path | None = None) -> Path:
        """Save the current window as PNG (default: <screenshot_dir>/frame_<n>.png)."""
        pg = _pygame()
        if self._last is not None:
            self.render(self._last)
        if path is None:
            self.screenshot_dir.mkdir(parents=True, exist_ok=True)
            n = self._last.frame if self._last is not None else 0
            path = self.screenshot_dir / f"frame_{n:06d}_{len(self.screenshots)}.png"
        path = Path(path)
        pg.image.save(self._screen, str(path))
        self.screenshots.append(path)
        return path

    def update(self, frame: ViewFrame) -> bool:
        """Draw the frame, handle keys; block while paused. False when the user quits."""
        pg = _pygame()
        self._last = frame
        self.render(frame)
        pg.display.flip()
        self._updates += 1
        if self.screenshot_every and self._updates % self.screenshot_every == 0:
            self.screenshot()
        if not self._events():
            return False
        while self.paused and not self._step:
            self.render(frame)
            pg.display.flip()
            self._clock.tick(30)
            if not self._events():
                return False
        self._step = False
        if self.fps_cap:
            self._clock.tick(self.fps_cap)
        return True


__all__ = ["FN_RGB", "FP_RGB", "TP_RGB", "LoopView", "overlay_rgb"]
