"""Data sources -> numpy arrays for keras-vit.

numpy and Pillow only: training also runs on machines that have JAX but no
TensorFlow, and the TF-free deployment runtime decodes images with
`decode_image`. `tensorflow_datasets` and `keras.datasets` are tried only as
last resorts, imported when needed.

- `images`: `decode_image`, the one image decoder (training, predict, runtime), and
  `decode_images`, many files, the unreadable ones reported;
- `folders`: `load_image_folder`, `root/{train,test}/<class>/*.png|jpg` (decoded, or `stream=True`);
- `streaming`: `FileImages`, a streamed folder's images: files decoded a batch at a time;
- `cifar10`: `load_cifar10`, CIFAR-10 from the first source that works;
- `loading`: `load_split`, one split of either at a model's size and class order, and which loader
  reads a folder (`holds_cifar10`);
- `cache`: the decoded-image cache of image folders;
- `splits`: `Splits` (what the loaders return), `DataNotFoundError`,
  `stratified_indices`.

Typical use:

```python
from keras_vit import data

splits = data.load_cifar10()  # --data-dir / $KERAS_VIT_DATA_DIR / ...
print(data.describe(splits))
test_only = data.load_cifar10(splits="test")  # Evaluation: train/ is not read.
```
"""

from keras_vit.data.cache import CACHE_DIR_ENV
from keras_vit.data.cifar10 import load_cifar10
from keras_vit.data.folders import IMAGE_EXTENSIONS, load_image_folder
from keras_vit.data.images import decode_image, decode_images
from keras_vit.data.loading import (
    given_data_dir,
    holds_cifar10,
    image_folder_classes,
    load_split,
    match_labels,
)
from keras_vit.data.splits import (
    CIFAR10_CLASSES,
    DATA_DIR_ENV,
    DataNotFoundError,
    Splits,
    describe,
    stratified_indices,
)

__all__ = [
    "CACHE_DIR_ENV",
    "CIFAR10_CLASSES",
    "DATA_DIR_ENV",
    "DataNotFoundError",
    "IMAGE_EXTENSIONS",
    "Splits",
    "decode_image",
    "decode_images",
    "describe",
    "load_cifar10",
    "load_image_folder",
    "given_data_dir",
    "holds_cifar10",
    "image_folder_classes",
    "load_split",
    "match_labels",
    "stratified_indices",
]
