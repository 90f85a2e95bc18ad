"""In a pause of a throughput run (the process under 5% CPU, after compilation), every thread's stack by gdb.

python stall_gdb.py OUTPUT.txt   (from the repository root; needs gdb)
"""

import os
import subprocess
import sys
import time

from dips import COMMAND, process_ticks


def main():
    env = dict(os.environ, KERAS_BACKEND="tensorflow", TF_CPP_MIN_LOG_LEVEL="2")
    run = subprocess.Popen(COMMAND, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    start = last_time = time.monotonic()
    last = process_ticks(run.pid)
    while run.poll() is None:
        time.sleep(0.25)
        try:
            now_ticks = process_ticks(run.pid)
        except OSError:
            break
        now = time.monotonic()
        if now - start > 12 and 100 * (now_ticks - last) / ((now - last_time) * 100) < 5:
            command = ["gdb", "-p", str(run.pid), "-batch", "-ex", "thread apply all bt 14"]
            stacks = subprocess.run(command, capture_output=True, text=True).stdout
            open(sys.argv[1], "w").write(stacks)
            print(f"stacks at {now - start:.1f}s written to {sys.argv[1]}")
            break
        last, last_time = now_ticks, now
    run.wait()


if __name__ == "__main__":
    main()
