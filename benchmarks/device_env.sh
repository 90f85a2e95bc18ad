# Sourced at the start of a `run` call on the GPU machine (gpu_session.sh, teacher_sweep.sh), from the
# repository root with .whl and .devdata carried (made here by ../shared/tools/device_prep.sh):
# installs Keras from the wheels (INSTALL=0 skips it), puts the repository on PYTHONPATH under the JAX
# backend (the machine has no TensorFlow), and unpacks CIFAR-10 to DATA=/tmp/cifar10 unless DATA is set.
# Exits the calling script with status 1 if either step fails.
if [ "${INSTALL:-1}" = 1 ]; then
  python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD KERAS_BACKEND=jax PYTHONUNBUFFERED=1
export KERAS_VIT_CACHE_DIR=${KERAS_VIT_CACHE_DIR:-/tmp/kvcache}
if [ -z "${DATA:-}" ]; then
  DATA=/tmp/cifar10
  python3 .devdata/unpack_cifar10.py .devdata/cifar10_jpeg.npz "$DATA" || exit 1
fi
