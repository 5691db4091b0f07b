"""How tests/data/mediapipe_digits.tflite was made: a model edgeship did not make, described only by the
standard metadata that MediaPipe's own writer (mediapipe 0.10.21, `image_classifier.MetadataWriter`) adds.

That writer needs numpy < 2, so it runs in a separate virtualenv; the result is shipped as test data.

    # 1. in edgeship's venv: a tiny CNN trained on the digits at 32 px, fed (pixel - 127.5) / 127.5
    .venv/bin/python tests/data/make_mediapipe_model.py train /tmp/plain_digits.tflite
    # 2. in a venv with `pip install mediapipe==0.10.21 "numpy<2"`: MediaPipe's metadata writer
    /tmp/mpvenv/bin/python tests/data/make_mediapipe_model.py metadata /tmp/plain_digits.tflite tests/data/mediapipe_digits.tflite
"""

import sys

LABELS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def train(out: str) -> None:
    import tempfile

    import numpy as np
    import tensorflow as tf
    from edgeship.core.dataset import scan_folder
    from edgeship.core.pixels import load_pixels
    from edgeship.runtime.spec import InputSpec
    from edgeship.train import write_digits_dataset

    keras = tf.keras
    root = write_digits_dataset(tempfile.mkdtemp() + "/digits", size=32)
    samples = scan_folder(root, show_progress=False).samples
    x = (load_pixels([s.path for s in samples], InputSpec(32, 32), show_progress=False).astype("float32") - 127.5) / 127.5
    y = np.array([LABELS.index(s.label) for s in samples])
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(16, 3, activation="relu"),
                              keras.layers.MaxPooling2D(), keras.layers.Conv2D(32, 3, activation="relu"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=30, batch_size=32, verbose=2)
    open(out, "wb").write(tf.lite.TFLiteConverter.from_keras_model(model).convert())


def metadata(plain: str, out: str) -> None:
    from mediapipe.tasks.python.metadata.metadata_writers import image_classifier, metadata_writer

    writer = image_classifier.MetadataWriter.create(
        open(plain, "rb").read(), input_norm_mean=[127.5], input_norm_std=[127.5],
        labels=metadata_writer.Labels().add(LABELS))
    model, _ = writer.populate()
    open(out, "wb").write(model)


if __name__ == "__main__":
    {"train": train, "metadata": metadata}[sys.argv[1]](*sys.argv[2:])
