"""The README's main job (``make demo``) runs end to end and says what it found."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_finds_the_resonance_through_the_whole_loop(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "demo" / "run_demo.py"), "--out",
                           str(out), "--points", "41"], capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "41 programs came back" in text
    assert "resonance found at 500.00 MHz" in text
    assert text.rstrip().endswith("DEMO OK")
    assert (out / "results.h5").stat().st_size > 0
    assert (out / "resonance.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
