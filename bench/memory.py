"""Peak memory of the kernels beyond their input and output, per benchmark volume.

Each measurement runs in a fresh process: load the volume, reset the kernel's peak
resident set (/proc/self/clear_refs), run the call, and read VmHWM. The extra memory
is the peak minus the resident set before the call minus the output's size: what the
kernel needed for runs, union-find and region tables. Writes bench/memory.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import volumes
from medground.geometry import connected_components, regionprops

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

name, call = sys.argv[2], sys.argv[3]
vol = getattr(volumes, name)()
labels = connected_components(vol, 26) if call == "regionprops" and name != "labelmap" else vol
open("/proc/self/clear_refs", "w").write("5")
before = status("VmRSS")
if call == "connected_components":
    out = connected_components(labels, 26)
    n = int(out.max())
    out_bytes = out.nbytes
else:
    out = regionprops(labels)
    n = len(out)
    out_bytes = sum(col.nbytes for col in out.to_dict().values())
peak = status("VmHWM")
print(json.dumps({"volume": name, "call": call, "input_mb": labels.nbytes / 2**20, "output_mb": out_bytes / 2**20,
                  "extra_mb": (peak - before - out_bytes) / 2**20, "objects": n}))
"""


def main() -> None:
    rows = []
    for name in ("clean", "noisy", "salt", "labelmap"):
        for call in ("connected_components", "regionprops"):
            res = subprocess.run(
                [sys.executable, "-c", CHILD, str(HERE), name, call], capture_output=True, text=True, check=True
            )
            rows.append(json.loads(res.stdout))
            print(rows[-1])
    (HERE / "memory.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
