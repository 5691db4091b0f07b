"""Scale: export parity streams the test split, so its peak memory stays under a cap that the fully decoded
split alone would exceed (the old code decoded the split at once, then made a float32 copy for Keras)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ..conftest import REPO

SIZE = 96  # px: the model's input (small, so activations stay small and decoded pixels are what grows)
JPEG_SIZE = 128
TRAIN_PER_CLASS = 12
TEST_PER_CLASS = 3000
CLASSES = ("disc", "ring", "bar")
CAP_BYTES = int(1.1 * 2**30)  # the lowered cap: above TensorFlow + model (~0.7 GiB), below the decoded split


def _food101_tree(root: Path) -> Path:
    """A Food-101-shaped tree (meta/classes.txt, train.txt, test.txt, images/<class>/<id>.jpg) of drawn shapes."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    (root / "meta").mkdir(parents=True)
    lists = {"train.txt": [], "test.txt": []}
    for label in CLASSES:
        (root / "images" / label).mkdir(parents=True)
        for i in range(TRAIN_PER_CLASS + TEST_PER_CLASS):
            image = Image.new("RGB", (JPEG_SIZE, JPEG_SIZE), tuple(int(v) for v in rng.integers(0, 90, 3)))
            draw = ImageDraw.Draw(image)
            x, y, r = (int(v) for v in rng.integers(36, 92, 3) // (1, 1, 2))
            colour = tuple(int(v) for v in rng.integers(150, 255, 3))
            if label == "disc":
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
            elif label == "ring":
                draw.ellipse((x - r, y - r, x + r, y + r), outline=colour, width=max(3, r // 4))
            else:
                draw.rectangle((x - r, y - 8, x + r, y + 8), fill=colour)
            image.save(root / "images" / label / f"{i}.jpg", quality=85)
            lists["train.txt" if i < TRAIN_PER_CLASS else "test.txt"].append(f"{label}/{i}")
    (root / "meta" / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for name, lines in lists.items():
        (root / "meta" / name).write_text("\n".join(lines) + "\n")
    return root


def _peak_rss_of(*args) -> tuple[int, int, str]:
    """(exit code, peak RSS in bytes, stderr) of `edgeship ARGS` run in a fresh process."""
    probe = ("import sys\nfrom edgeship.cli import main\ncode = main(sys.argv[1:])\n"
             "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]\n"
             "print('PEAK', int(peak) * 1024)\nsys.exit(code)\n")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "EDGESHIP_PROGRESS": "0"}
    done = subprocess.run([sys.executable, "-c", probe, *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=900)
    peak = next((int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK ")), 0)
    return done.returncode, peak, done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs /proc to read the peak RSS")
def test_export_parity_streams_a_split_larger_than_the_memory_cap(tmp_path, cli):
    data = _food101_tree(tmp_path / "food")
    run = tmp_path / "run"
    trained = cli("train", data, "--out", run, "--image-size", str(SIZE), "--epochs", "1", "--batch-size", "16",
                  "--unknown-recall", "0")
    assert trained.returncode == 0, trained.stderr
    n_test = len(CLASSES) * TEST_PER_CLASS
    decoded = n_test * SIZE * SIZE * 3 * (1 + 4)  # uint8 pixels plus the float32 copy Keras was given
    assert decoded > CAP_BYTES  # the whole split decoded at once could not fit under the cap

    code, peak, stderr = _peak_rss_of("export", run, "--formats", "tflite")
    assert code == 0, stderr
    assert 0 < peak < CAP_BYTES, f"peak RSS {peak / 2**30:.2f} GiB over the {CAP_BYTES / 2**30:.2f} GiB cap"
    import json

    report = json.loads((run / "report.json").read_text())
    assert report["reference"]["n_test"] == n_test
    assert report["artifacts"][0]["status"] == "ok" and report["artifacts"][0]["agreement"] > 0.99
    print(f"{n_test} test images at {SIZE} px: decoded {decoded / 2**30:.2f} GiB, export peak RSS "
          f"{peak / 2**30:.2f} GiB (cap {CAP_BYTES / 2**30:.2f} GiB)")


def test_chunks_cover_every_image_in_order_and_decode_alike_in_workers(tmp_path):
    """The parallel decoder yields exactly what the one-process decoder does, chunk by chunk, in order."""
    from edgeship.core.pixels import iter_pixel_chunks, load_pixels
    from edgeship.runtime.spec import InputSpec
    from PIL import Image

    rng = np.random.default_rng(1)
    paths = []
    for i in range(23):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 255, (20 + i, 17, 3), dtype=np.uint8)).save(paths[-1])
    spec = InputSpec(16, 16)
    expected = load_pixels(paths, spec, show_progress=False)
    import edgeship.core.pixels as pixels

    for workers in (1, 2):
        original = pixels.PARALLEL_FROM
        pixels.PARALLEL_FROM = 1  # force the worker pool on a small set
        try:
            chunks = list(iter_pixel_chunks(paths, spec, chunk_size=5, show_progress=False, workers=workers))
        finally:
            pixels.PARALLEL_FROM = original
        assert [start for start, _ in chunks] == list(range(0, 23, 5))
        assert max(len(chunk) for _, chunk in chunks) == 5
        np.testing.assert_array_equal(np.concatenate([chunk for _, chunk in chunks]), expected)
