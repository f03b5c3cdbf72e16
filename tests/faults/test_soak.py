#!/usr/bin/python3
"""The short soak of CI: bench/soak.py for a minute against this build (random faults,
then the accounting, RSS and file-descriptor checks; see its docstring). The seed is
random and printed, so that a failure can be replayed:
    bench/soak.py --build BUILD --seconds 60 --seed S
The long run is documented in bench/SOAK.md."""
import os
import subprocess
import sys

import faultlib
from faultlib import harness

SECONDS = int(os.environ.get("TBGW_SOAK_SECONDS") or 60)


class Soak(faultlib.FaultCase):
    def test_short_soak(self):
        soak = os.path.join(harness.SRCDIR, "bench", "soak.py")
        r = subprocess.run([sys.executable, soak, "--build", harness.BUILDDIR,
                            "--seconds", str(SECONDS)],
                           capture_output=True, text=True, timeout=(SECONDS + 600) * harness.SLOW)
        sys.stdout.write(r.stdout)
        sys.stdout.write(r.stderr[-20000:])
        self.assertEqual(r.returncode, 0, r.stdout.strip().splitlines()[-1:])


if __name__ == "__main__":
    harness.main()
