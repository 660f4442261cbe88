"""Logging to the terminal and to artifacts/logs/<step>.log, and one-line fatal errors."""

import logging
import sys

log = logging.getLogger("gpt2ivr")


def setup_logging(step, log_path):
    """Log INFO to stderr (plain) and to log_path (timestamped, appended across runs)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    log.handlers.clear()
    log.propagate = False
    to_file = logging.FileHandler(log_path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    to_terminal = logging.StreamHandler(sys.stderr)
    to_terminal.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(to_file)
    log.addHandler(to_terminal)
    log.info(f"--- {step}: {' '.join(sys.argv)}")
    return log


def die(message):
    """Stop with a one-line error (no traceback) that names the file or key and the fix."""
    if log.handlers:
        log.error(f"error: {message}")
        raise SystemExit(2)
    raise SystemExit(f"error: {message}")
