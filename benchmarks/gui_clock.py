"""Event-loop clock for GUI benchmarks: a 10 ms QTimer whose tick gaps are the GUI thread's stalls."""

from __future__ import annotations

import time


class GuiClock:
    """Ticks of a QTimer in the GUI thread, and a way to wait while Qt keeps running.

    Parameters
    ----------
    app : QApplication
        The running application.
    interval_ms : int
        Timer interval; a gap between two ticks much above it is a stall.
    """

    def __init__(self, app, interval_ms: int = 10):
        from qtpy.QtCore import QTimer

        self.app = app
        self.ticks: list[float] = []
        self.timer = QTimer()
        self.timer.timeout.connect(lambda: self.ticks.append(time.perf_counter()))
        self.timer.start(interval_ms)

    def run_until(self, cond, timeout: float = 600.0) -> None:
        """Process Qt events until ``cond()`` is true or ``timeout`` seconds passed."""
        t0 = time.perf_counter()
        while not cond() and time.perf_counter() - t0 < timeout:
            self.app.processEvents()
            time.sleep(0.001)

    def stall_ms(self, action, settle: float = 0.4) -> float:
        """The longest stall (ms) from ``action`` and the work it queues within ``settle`` seconds."""
        t0 = time.perf_counter()
        action()
        self.run_until(lambda: time.perf_counter() - t0 > settle, settle + 0.6)
        gaps = [t0, *[t for t in self.ticks if t > t0]]
        return round(1000 * max(b - a for a, b in zip(gaps, gaps[1:], strict=False)), 1) if len(gaps) > 1 else 0.0

    def stop(self) -> None:
        """Stop ticking."""
        self.timer.stop()
