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

    def stop(self) -> None:
        """Stop ticking."""
        self.timer.stop()
