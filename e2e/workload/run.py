"""Runs the workload and checks its history; see `workload.py` for the options and exit codes.

    python e2e/workload/run.py --bootstrap 127.0.0.1:9092 --topic jepsen --partitions 6 \\
        --producers 2 --consumers 2 --duration 20 --acks all --consumer-mode assign --out /tmp/run1
"""

import sys

from workload import main

if __name__ == "__main__":
    sys.exit(main())
