"""Reads a process's CPU time and memory from /proc, and runs (or attaches to) one broker.

Owns: spawning the broker binary on loopback ports with its own data directory, timing spawn to
`/readyz` 200, stopping it with SIGTERM, and /proc sampling (utime+stime, VmRSS, VmHWM,
per-thread CPU). Does not: talk Kafka (see load.py) or decide what to measure (see bench.py).
"""

import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid, tid=None):
    """utime+stime of a process (or one of its threads) in seconds; 1/CLK_TCK resolution."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpu(pid):
    """{thread name: summed CPU seconds} over the live threads of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            out[name] = out.get(name, 0.0) + cpu_seconds(pid, tid)
        except OSError:
            pass  # the thread exited between listdir and open
    return out


def steal_seconds():
    """CPU seconds the hypervisor gave to others while this VM's CPUs wanted to run (the
    `steal` column of /proc/stat's `cpu` line, summed over CPUs): a run during which it grows
    was measured on a machine that was not all ours."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return int(fields[8]) / CLK_TCK


def runqueue_wait_seconds(pid):
    """Seconds the live threads of `pid` spent runnable but waiting for a CPU (the second field
    of /proc/<pid>/task/<tid>/schedstat), summed: how much the machine's other load held the
    process back. Threads that exited are not counted."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            pass  # the thread exited, or the kernel has no schedstats
    return total / 1e9


def status_kib(pid, key):
    """A `kB` field of /proc/<pid>/status, e.g. VmRSS or VmHWM, in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


class Sampler:
    """Calls `sample()` every `interval` seconds in a thread between `__enter__` and `__exit__`
    (and once more at exit); `sample()` returning False stops it."""

    def __init__(self, pid, interval):
        self.pid, self.interval = pid, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self):
        raise NotImplementedError

    def _run(self):
        while not self._stop.is_set():
            if self.sample() is False:
                return
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.sample()


class RssSampler(Sampler):
    """Samples VmRSS every `interval` seconds in a thread; `peak_kib` is the largest seen."""

    def __init__(self, pid, interval=0.05):
        super().__init__(pid, interval)
        self.peak_kib = 0

    def sample(self):
        try:
            self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
        except OSError:
            return False
        return True


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One broker process on 127.0.0.1 with `data_dir` as log.dirs."""

    def __init__(self, binary, data_dir, port=None, http_port=None, overrides=None, cpus=None):
        """`cpus`: the CPU numbers every thread of the process may run on (all when None)."""
        self.binary, self.data_dir = binary, data_dir
        self.cpus = set(cpus) if cpus else None
        self.port = port or free_port()
        self.http_port = http_port or free_port()
        controller_port = free_port()
        self.overrides = {
            "log.dirs": data_dir,
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "http.listener": f"127.0.0.1:{self.http_port}",
            **(overrides or {}),
        }
        self.proc = None
        self.pid = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def ready(self):
        try:
            url = f"http://127.0.0.1:{self.http_port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def start(self, timeout=30.0):
        """Spawns the broker and returns seconds from spawn to the first /readyz 200."""
        os.makedirs(self.data_dir, exist_ok=True)
        args = [self.binary]
        for k, v in self.overrides.items():
            args += ["--override", f"{k}={v}"]
        log = open(self.data_dir.rstrip("/") + ".log", "ab")
        t0 = time.perf_counter()
        cpus = self.cpus
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, preexec_fn=pin)
        self.pid = self.proc.pid
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited with {self.proc.returncode}; see {log.name}")
            if self.ready():
                return time.perf_counter() - t0
            time.sleep(0.002)
        raise RuntimeError("broker did not become ready")

    def stop(self, timeout=30.0):
        """SIGTERM and wait; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code, self.proc = self.proc.returncode, None
        return code
