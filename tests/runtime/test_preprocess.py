"""The one preprocessing function: every input type, every image mode, EXIF, and clear errors."""

import io

import numpy as np
import pytest
from edgeship.runtime.errors import ImageError
from edgeship.runtime.preprocess import load_image, prepare_image
from edgeship.runtime.spec import InputSpec
from PIL import Image

SPEC = InputSpec(height=24, width=32)


def _gradient(w=40, h=30) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 77)], axis=-1).astype(np.uint8)


def _bilinear_reference(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear without antialiasing in floating point, sampling at x * W / width (MediaPipe's mapping)."""
    rows, cols = pixels.shape[:2]
    y, x = np.arange(height) * rows / height, np.arange(width) * cols / width
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, rows - 1), np.minimum(x0 + 1, cols - 1)
    fy, fx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    image = pixels.astype(np.float64)
    top = image[y0][:, x0] * (1 - fx) + image[y0][:, x1] * fx
    bottom = image[y1][:, x0] * (1 - fx) + image[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_every_input_type_gives_the_same_tensor(tmp_path):
    pixels = _gradient()
    path = tmp_path / "g.png"
    Image.fromarray(pixels).save(path)
    expected = prepare_image(path, SPEC)
    # OpenCV's 1/32-pixel fixed point (what MediaPipe computes) stays within one level of exact arithmetic
    assert np.abs(expected - _bilinear_reference(pixels, 24, 32)).max() <= 1.0
    for source in (path, str(path), path.read_bytes(), Image.open(path), pixels):
        tensor = prepare_image(source, SPEC)
        assert tensor.shape == (24, 32, 3) and tensor.dtype == np.uint8
        np.testing.assert_array_equal(tensor, expected)


def test_float_arrays_in_unit_range_are_scaled_to_pixels():
    pixels = _gradient()
    as_float = pixels.astype(np.float32) / 255.0
    np.testing.assert_allclose(np.asarray(load_image(as_float), dtype=int), pixels, atol=1)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "LA"])
def test_any_mode_becomes_rgb(mode, tmp_path):
    base = Image.fromarray(_gradient())
    image = base.convert("L").convert("I;16") if mode == "I;16" else base.convert(mode)
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB" and loaded.size == base.size


def test_sixteen_bit_range_is_scaled_not_clipped(tmp_path):
    array = (np.linspace(0, 65535, 64 * 8).reshape(8, 64)).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(array).save(path)
    loaded = np.asarray(load_image(path))
    assert loaded[..., 0].max() == 255 and loaded[..., 0].min() == 0
    assert loaded[0, 32, 0] == pytest.approx(int(array[0, 32]) * 255 / 65535, abs=1)


def test_exif_orientation_is_applied(tmp_path):
    wide = Image.fromarray(_gradient(w=40, h=20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "rotated.jpg"
    wide.save(path, exif=exif.tobytes())
    assert Image.open(path).size == (40, 20)
    assert load_image(path).size == (20, 40)


def test_alpha_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    assert np.asarray(load_image(Image.fromarray(rgba, "RGBA"))).min() == 255


@pytest.mark.parametrize("content, reason", [(b"", "zero-byte"), (b"this is not a picture", "cannot decode")])
def test_bad_files_raise_image_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(ImageError, match=reason) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_image_raises_image_error(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(_gradient(200, 200)).save(buffer, format="JPEG")
    path = tmp_path / "truncated.jpg"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated.jpg"):
        load_image(path)


def test_missing_file_and_wrong_array_shape():
    with pytest.raises(ImageError, match="no such file"):
        load_image("/nonexistent/cat.png")
    with pytest.raises(ValueError, match="HWC"):
        load_image(np.zeros((2, 3, 4, 5), np.uint8))
