"""Every input a user can get wrong ends in one line on stderr and a non-zero exit."""

import subprocess
import sys

import pytest
from conftest import assert_one_line_error, testdata_path


@pytest.fixture
def cat_jpeg():
    return testdata_path("images", "cat_720p.jpg")


def predict(cli, v2_model, imagenet_labels, *paths):
    return cli("predict", v2_model, *paths, "--labels", imagenet_labels)


def test_missing_image_path(cli, v2_model, imagenet_labels, tmp_path):
    assert_one_line_error(
        predict(cli, v2_model, imagenet_labels, tmp_path / "nope.jpg"), "nope.jpg", "no such file", code=1
    )


def test_directory_without_images(cli, v2_model, imagenet_labels, tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(predict(cli, v2_model, imagenet_labels, tmp_path), "directory holds no images", code=1)


def test_text_file_named_jpg(cli, v2_model, imagenet_labels, tmp_path):
    fake = tmp_path / "photo.jpg"
    fake.write_text("this is not a photo")
    assert_one_line_error(predict(cli, v2_model, imagenet_labels, fake), "photo.jpg", "not a readable image")


def test_truncated_jpeg(cli, v2_model, imagenet_labels, tmp_path, cat_jpeg):
    data = cat_jpeg.read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(predict(cli, v2_model, imagenet_labels, cut), "cut.jpg", "truncated JPEG")


def test_good_images_still_print_when_one_is_bad(cli, v2_model, imagenet_labels, tmp_path, cat_jpeg):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    result = cli("predict", v2_model, cat_jpeg, bad, "--labels", imagenet_labels, "--json")
    assert result.returncode == 1
    assert '"Egyptian cat"' in result.stdout  # the good image was classified
    assert "bad.jpg" in result.stderr and "Traceback" not in result.stderr


def test_corrupt_tflite(cli, tmp_path, cat_jpeg, imagenet_labels, v2_model):
    corrupt = tmp_path / "model.tflite"
    corrupt.write_bytes(v2_model.read_bytes()[:5000])
    assert_one_line_error(
        cli("predict", corrupt, cat_jpeg, "--labels", imagenet_labels),
        "model.tflite",
        "not a loadable TFLite model",
        code=1,
    )
    garbage = tmp_path / "garbage.tflite"
    garbage.write_text("hello")
    assert_one_line_error(cli("info", garbage), "garbage.tflite", "not a loadable TFLite model")


def test_missing_model_and_wrong_suffix(cli, tmp_path, cat_jpeg):
    assert_one_line_error(cli("predict", tmp_path / "none.tflite", cat_jpeg), "none.tflite", "no such model")
    other = tmp_path / "model.pb"
    other.write_text("x")
    assert_one_line_error(cli("predict", other, cat_jpeg), "model.pb", "expected a bundle directory or a .tflite")


def test_directory_that_is_not_a_bundle(cli, tmp_path, cat_jpeg):
    assert_one_line_error(cli("info", tmp_path), "manifest.json", "missing")


def test_missing_labels_file(cli, v2_model, tmp_path, cat_jpeg):
    assert_one_line_error(
        cli("predict", v2_model, cat_jpeg, "--labels", tmp_path / "labels.txt"), "labels.txt", "no such labels file"
    )


def test_usage_errors_exit_2(cli, v2_model, cat_jpeg):
    result = cli("predict", v2_model)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    result = cli("predict", v2_model, cat_jpeg, "--crop", "diagonal")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert cli("frobnicate").returncode == 2


def test_device_code_path_never_imports_tensorflow(v2_model, imagenet_labels, cat_jpeg):
    """predict on a Pi must start without TensorFlow: check sys.modules after a real classification."""
    code = (
        "import sys\n"
        "from edgesight.device.cli import main\n"
        f"rc = main(['predict', {str(v2_model)!r}, {str(cat_jpeg)!r}, '--labels', {str(imagenet_labels)!r}])\n"
        "assert rc == 0, rc\n"
        "leaked = sorted(m for m in sys.modules if m == 'tensorflow' or m.startswith('tensorflow.') or m == 'keras')\n"
        "print('LEAKED', leaked)\n"
        "sys.exit(1 if leaked else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Egyptian cat" in proc.stdout and "LEAKED []" in proc.stdout


def test_crop_help_lists_each_fit_once_and_center_still_works(cli, v1_model, imagenet_labels, cat_jpeg):
    help_text = cli("predict", "--help").stdout
    assert "{centre,stretch}" in help_text and "center" not in help_text
    result = cli("predict", v1_model, cat_jpeg, "--labels", imagenet_labels, "--crop", "center")
    assert result.returncode == 0, result.stderr
    assert "fit=centre" in result.stdout


def test_good_images_still_print_when_one_is_huge(cli, v2_model, imagenet_labels, tmp_path, cat_jpeg):
    """A PNG header declaring 40000x40000 pixels is one bad image like any other (it was a traceback)."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    huge = tmp_path / "huge.png"
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 40001 * 4)
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    result = cli("predict", v2_model, huge, cat_jpeg, "--labels", imagenet_labels, "--json")
    assert result.returncode == 1
    assert '"Egyptian cat"' in result.stdout
    assert "huge.png" in result.stderr and "over the limit" in result.stderr and "Traceback" not in result.stderr
