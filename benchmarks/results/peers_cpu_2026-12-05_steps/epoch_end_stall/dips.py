"""Every 0.5 s of a throughput run: the process's CPU and the machine's busy / idle / steal time.

    python dips.py   (from the repository root)

Are the slow stretches the process waiting, or the VM taken away?
"""

import json
import os
import subprocess
import sys
import time

COMMAND = [sys.executable, "benchmarks/throughput.py", "--preset", "vit_tiny", "--augment", "none"]
COMMAND += ["--batch-size", "128", "--steps", "32", "--epochs", "10"]


def process_ticks(pid):
    text = open(f"/proc/{pid}/stat").read()
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def machine_ticks():
    fields = [int(value) for value in open("/proc/stat").readline().split()[1:]]
    return sum(fields[:3]) + sum(fields[5:7]), fields[3] + fields[4], fields[7]  # busy, idle + iowait, steal


def main():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.Popen(COMMAND, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    start = time.monotonic()
    last_process, last_machine, last_time = process_ticks(run.pid), machine_ticks(), start
    while run.poll() is None:
        time.sleep(0.5)
        try:
            now_process = process_ticks(run.pid)
        except OSError:
            break
        now_machine, now = machine_ticks(), time.monotonic()
        ticks = (now - last_time) * 100  # 100 ticks a second
        busy, idle, steal = (100 * (a - b) / ticks for a, b in zip(now_machine, last_machine))
        print(
            f"{now - start:5.1f}s process {100 * (now_process - last_process) / ticks:4.0f}%  "
            f"machine busy {busy:4.0f}% idle {idle:4.0f}% steal {steal:3.0f}%",
            flush=True,
        )
        last_process, last_machine, last_time = now_process, now_machine, now
    row = json.loads(run.stdout.read().strip().splitlines()[-1])
    print(row["images_per_second"], row["images_per_second_range"])


if __name__ == "__main__":
    main()
