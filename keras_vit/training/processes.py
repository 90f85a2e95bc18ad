"""A training job of several processes (hosts, or one process per GPU) on the JAX backend.

join_processes(...)              this process into the job: `keras.distribution.initialize`
process_share()                  (index, count) of this process: its share of each batch (`TrainingBatches`)
process_rows(n)                  the slice of an evaluation set this process scores
sum_over_processes(values)       the element-wise sum of every process's values
check_same_on_every_process(...) ValueError where the processes disagree (e.g. on the checkpoint they resume)
wait_for_every_process(name)     a barrier
agreed_clock()                   seconds by process 0's clock on every process (time limits stop together)
writing_alone()                  process 0 saves while the others go on: no collective inside Keras' saving
stop_when_a_process_fails()      one clear line and an immediate exit when another process of the job died
leave(status)                    ends a failed process of a job at once, so that the others stop waiting

Every process runs the same program and must call the collectives above in
the same order.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import keras
import numpy as np

from keras_vit.cli_utils import first_line


def join_processes(coordinator=None, num_processes=None, process_id=None):
    """Joins this process to a training job of several processes, JAX backend.

    Every process runs the same command; `keras.distribution.initialize`
    connects them through the coordinator (process 0's `host:port`), after
    which `keras.distribution.list_devices()` lists every process's devices
    and `keras_vit.training.distribute.distribution(...)` spans them all. On
    CPUs the processes exchange gradients over gloo (TCP). Call it before
    anything else runs on JAX.

    Args:
        coordinator: `"host:port"` of process 0, reachable from every
            process; default: Keras' `KERAS_DISTRIBUTION_JOB_ADDRESSES`.
        num_processes: processes in the job; default
            `KERAS_DISTRIBUTION_NUM_PROCESSES`.
        process_id: this process's index, 0 to `num_processes - 1`; default
            `KERAS_DISTRIBUTION_PROCESS_ID`. With none of the three, JAX
            reads the cluster's own variables (Slurm, Open MPI, Kubernetes).

    Raises:
        ValueError: another backend than JAX.
    """
    if keras.backend.backend() != "jax":
        raise ValueError(
            "several processes train together through Keras' distribution API on the JAX backend only "
            f"(KERAS_BACKEND=jax); this process runs {keras.backend.backend()}"
        )
    import jax

    # CPU devices' collectives over TCP; GPUs use their own (NCCL). Set before JAX starts its backends.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    keras.distribution.initialize(coordinator, num_processes, process_id)


def process_share():
    """`(index, count)`: this process's place in a job of several (`(0, 1)` alone, or on another backend)."""
    if keras.backend.backend() != "jax":
        return 0, 1
    import jax

    return jax.process_index(), jax.process_count()


def process_rows(num_items):
    """The `slice` of `num_items` rows this process takes: contiguous, in process order, sizes within one."""
    index, count = process_share()
    return slice(index * num_items // count, (index + 1) * num_items // count)


def sum_over_processes(values):
    """The element-wise sum over the processes of each one's `values` (a list of numbers), as float64.

    Alone, `values` as they are. Exact for integers below 2**24 (the
    collective runs in float32: JAX's default).
    """
    values = np.asarray(values, dtype=np.float64)
    if process_share()[1] == 1:
        return values
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(values.astype(np.float32))
    return np.asarray(gathered, dtype=np.float64).reshape(-1, *values.shape).sum(axis=0)


def check_same_on_every_process(value, what):
    """Raises ValueError naming `what` where the processes' integer `value`s differ (nothing alone)."""
    if process_share()[1] == 1:
        return
    from jax.experimental import multihost_utils

    seen = np.asarray(multihost_utils.process_allgather(np.int32(value))).ravel()
    if len(set(seen.tolist())) > 1:
        each = ", ".join(f"process {index}: {int(v)}" for index, v in enumerate(seen))
        raise ValueError(f"the processes disagree on {what} ({each})")


def wait_for_every_process(name):
    """Returns when every process of the job has called it with the same `name` (at once alone)."""
    if process_share()[1] == 1:
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


def agreed_clock():
    """A clock (a callable returning seconds) that reads the same on every process: process 0's.

    `TimeLimit` and `TimeBudget` stop and plan by it, so every process
    stops after the same epoch and sets the same learning rate. Each reading
    is a collective: call it on every process in the same order. Alone,
    `time.perf_counter`.
    """
    if process_share()[1] == 1:
        return time.perf_counter
    from jax.experimental import multihost_utils

    start = time.perf_counter()

    def clock():
        # Seconds since this clock was made (small: float32, JAX's default, keeps them to the millisecond).
        return float(multihost_utils.broadcast_one_to_all(np.float32(time.perf_counter() - start)))

    return clock


@contextlib.contextmanager
def writing_alone():
    """Lifts the `keras.distribution` while one process saves a model or weights that the others do not save.

    Keras' saving builds throwaway objects with variables (an optimizer, to
    learn which attributes to skip); under a distribution over several
    processes each new variable is a collective that the other processes never
    join, and the job hangs. Alone, nothing changes.
    """
    if process_share()[1] == 1:
        yield
        return
    chosen = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(chosen)


@contextlib.contextmanager
def stop_when_a_process_fails():
    """Turns a failure inside a job of several processes into one line and an immediate exit (status 1).

    When a process dies, the others fail in their next collective (its
    connection is closed), but JAX then waits for the dead process at the
    shutdown barrier until its heartbeat times out, and aborts. This prints
    what failed and leaves at once. Alone, exceptions pass through as they are.
    """
    try:
        yield
    except Exception as error:
        index, count = process_share()
        if count == 1:
            raise
        cause = first_line(error)
        # This process is well where another one's failure shows here as a lost connection.
        if _lost_a_process(cause):
            cause += " (another process of the job stopped first: its own output says why)"
        print(f"error: process {index} of {count} stopped: {cause}", file=sys.stderr, flush=True)
        os._exit(1)  # not sys.exit: JAX's shutdown would wait for the dead process


def _lost_a_process(message):
    """Whether a collective's error says that a peer went away (gloo's "Connection closed by peer", gRPC's
    UNAVAILABLE) rather than what failed in this process."""
    lowered = message.lower()
    return any(
        sign in lowered for sign in ("closed by peer", "connection reset", "unavailable", "socket closed")
    )


# Seconds process 0 waits before leaving a failed job (`leave`).
COORDINATOR_GRACE = 3.0


def leave(status):
    """`status`, or, for a process of a job that ends with a non-zero status, an immediate exit with it.

    A process that returns normally waits at JAX's shutdown barrier for the
    others, which wait for it in their next collective: leaving at once
    closes its connections, and they stop (`stop_when_a_process_fails`).
    Process 0 holds the job's coordination service, whose end makes JAX
    abort the processes still connected: it leaves `COORDINATOR_GRACE`
    seconds after the others, which, when every process refuses the same
    flags, have left with their own status by then.
    """
    index, count = process_share()
    if status == 0 or count == 1:
        return status
    sys.stdout.flush()
    sys.stderr.flush()
    if index == 0:
        time.sleep(COORDINATOR_GRACE)
    os._exit(status)
