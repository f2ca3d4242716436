"""All benchmarks: kernels, kernels at the transfer pipeline's sizes, W-HAC at fleet scale,
then (when a broker answers on 127.0.0.1:9092) end to end."""

import socket
import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
subprocess.run([sys.executable, str(here / "kernels.py")], check=True)
subprocess.run([sys.executable, str(here / "kernel_sizes.py")], check=True)
subprocess.run([sys.executable, str(here / "cluster_scale.py")], check=True)
with socket.socket() as s:
    broker_up = s.connect_ex(("127.0.0.1", 9092)) == 0
if broker_up:
    subprocess.run([sys.executable, str(here / "e2e.py")], check=True)
else:
    print("end-to-end benchmark skipped: no broker on 127.0.0.1:9092 (omnistream broker start)")
