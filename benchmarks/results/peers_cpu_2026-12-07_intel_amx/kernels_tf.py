import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf


def t(f, n=20):
    f()
    ts = []
    for _ in range(n):
        s = time.perf_counter()
        f()
        ts.append(time.perf_counter() - s)
    return np.median(ts) * 1e3


a = tf.constant(np.random.rand(8320, 192).astype("float32"))
w = tf.constant(np.random.rand(192, 576).astype("float32"))
q = tf.constant(np.random.rand(1536, 65, 16).astype("float32"))
k = tf.constant(np.random.rand(1536, 65, 16).astype("float32"))
x = tf.constant(np.random.rand(8320, 192).astype("float32"))
mm = tf.function(lambda: tf.matmul(a, w))
bmm = tf.function(lambda: tf.matmul(q, k, transpose_b=True))
ew = tf.function(lambda: tf.reduce_sum(x * x, axis=-1))
print(
    f"tf matmul {t(mm):.2f} ms  bmm {t(bmm):.2f} ms  mul+sum {t(ew):.2f} ms  threads intra={tf.config.threading.get_intra_op_parallelism_threads()}"
)
