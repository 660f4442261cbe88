"""A step's phases: each is named in the log as it starts, and its seconds are kept for the report.

>>> phase("reading")            # logs 'phase: reading'
>>> phase("learning")           # 'reading' ends here
>>> phases.stop(); phases.seconds
{'reading': 1.2, 'learning': 40.3}
"""

import time

from lib.log import log


class Phases:
    """The seconds of each phase, in the order they ran; a phase started twice adds up."""

    def __init__(self):
        self.seconds, self.name, self.t0 = {}, None, None

    def start(self, name: str) -> None:
        self.stop()
        log.info(f"phase: {name}")
        self.name, self.t0 = name, time.perf_counter()

    def stop(self) -> None:
        if self.name:
            spent = self.seconds.get(self.name, 0) + time.perf_counter() - self.t0
            self.seconds[self.name] = round(spent, 1)
        self.name = None

    def summary(self) -> str:
        """'reading 1.2 s, learning 40.3 s' (the phase running now is stopped first)."""
        self.stop()
        return ", ".join(f"{k} {v} s" for k, v in self.seconds.items())


phases = Phases()  # one per process: a step is one process


def phase(name: str) -> None:
    """Start the step's phase name (ending the one before)."""
    phases.start(name)
