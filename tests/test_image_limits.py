"""Huge, lying and broken image files: refused from their header, in one line, without the memory.

The files are made by hand (a few hundred bytes each): a PNG whose IHDR declares 30000x30000 or
40000x40000 pixels with a valid CRC and a tiny IDAT, a JPEG whose frame header claims
60000x60000, a truncated PNG, a text file named .jpg.
"""

from __future__ import annotations

import resource
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_one_line_error, testdata_path

from edgesight.device.core.errors import ConfigError, ImageError
from edgesight.device.core.image_header import jpeg_is_complete, read_header
from edgesight.device.core.preprocess import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV, decode_image, read_image
from edgesight.device.sources.images import ImageFolderSource

PHOTOS = ("cat.bmp", "cat_720p.jpg", "dragonfly.bmp", "face.jpg", "hot_dog.jpg", "sunflower.bmp")


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def huge_png(width: int, height: int) -> bytes:
    """A well-formed grey PNG header declaring width x height, with 16 zero rows of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 16, 9)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real small JPEG whose SOF0 frame header is rewritten to claim width x height."""
    ok, buf = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.fixture
def bad_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "png30k": huge_png(30000, 30000),
        "png40k": huge_png(40000, 40000),
        "jpeg60k": jpeg_claiming(60000, 60000),
    }
    paths = {}
    for name, data in files.items():
        suffix = ".jpg" if name.startswith("jpeg") else ".png"
        paths[name] = tmp_path / f"{name}{suffix}"
        paths[name].write_bytes(data)
    ok, buf = cv2.imencode(".png", np.arange(64 * 64 * 3, dtype=np.uint8).reshape(64, 64, 3))
    paths["cut_png"] = tmp_path / "cut.png"
    paths["cut_png"].write_bytes(buf.tobytes()[: len(buf) // 2])
    paths["text_jpg"] = tmp_path / "notes.jpg"
    paths["text_jpg"].write_text("this is not a photo\n")
    return paths


def test_the_hand_made_files_are_small_and_declare_their_size(bad_files):
    assert bad_files["png30k"].stat().st_size < 2000
    header = read_header(bad_files["png40k"].read_bytes())
    assert header is not None and (header.format, header.width, header.height) == ("PNG", 40000, 40000)
    header = read_header(bad_files["jpeg60k"].read_bytes())
    assert header is not None and (header.format, header.width, header.height) == ("JPEG", 60000, 60000)


@pytest.mark.parametrize("name", ["png30k", "png40k", "jpeg60k"])
def test_huge_images_are_refused_from_the_header_in_one_line(bad_files, name):
    path = bad_files[name]
    with pytest.raises(ImageError) as caught:
        read_image(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert "over the limit of 50 megapixels" in message and MAX_PIXELS_ENV in message
    with pytest.raises(ImageError, match="upload: .* over the limit"):  # the HTTP upload path
        decode_image(path.read_bytes(), "upload")


def test_broken_files_each_get_their_reason(bad_files):
    with pytest.raises(ImageError, match=r"cut\.png: truncated PNG"):
        read_image(bad_files["cut_png"])
    with pytest.raises(ImageError, match=r"notes\.jpg: not a readable image \(unknown format\)"):
        read_image(bad_files["text_jpg"])
    with pytest.raises(ImageError, match=r"x\.png: not a readable image \(truncated PNG header\)"):
        decode_image(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", "x.png")
    with pytest.raises(ImageError, match="x.png: not a readable image .*0x0"):
        decode_image(huge_png(0, 0), "x.png")
    with pytest.raises(ImageError, match="x.jpg: not a readable image"):
        decode_image(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "x.jpg")
    with pytest.raises(ImageError, match="x.gif: not a readable image"):  # not "GIF of 28192x29807 pixels"
        decode_image(b"GIF89a not really", "x.gif")


def test_a_jpeg_whose_frame_header_lies_past_the_first_64_kib_is_still_read(tmp_path, images_dir):
    """read_image checks a big file's header from its head; a JPEG with large metadata first is read whole."""
    data = (images_dir / "face.jpg").read_bytes()
    app2 = b"\xff\xe2" + struct.pack(">H", 60002) + b"\x00" * 60000
    padded = tmp_path / "padded.jpg"
    padded.write_bytes(data[:2] + app2 * 3 + data[2:])
    assert np.array_equal(read_image(padded), read_image(images_dir / "face.jpg"))


def test_a_decoder_error_becomes_one_image_error_line(bad_files):
    """With the limit raised past OpenCV's own, OpenCV refuses: that cv2.error is an ImageError too."""
    with pytest.raises(ImageError) as caught:
        read_image(bad_files["png40k"], max_pixels=2_000_000_000)
    message = str(caught.value)
    assert message.startswith(f"{bad_files['png40k']}: not a readable image (decoder: ") and "\n" not in message


def test_the_limit_comes_from_the_parameter_then_the_environment(monkeypatch, images_dir):
    cat = images_dir / "cat.bmp"  # 512x341
    assert read_image(cat).shape == (341, 512, 3)
    with pytest.raises(ImageError, match=r"cat\.bmp: BMP of 512x341 pixels .* limit of 0\.1 megapixels"):
        read_image(cat, max_pixels=100_000)
    monkeypatch.setenv(MAX_PIXELS_ENV, "100000")
    with pytest.raises(ImageError, match="limit of 0.1 megapixels"):
        read_image(cat)
    assert read_image(cat, max_pixels=DEFAULT_MAX_PIXELS).shape == (341, 512, 3)  # the parameter wins
    monkeypatch.setenv(MAX_PIXELS_ENV, "2e5")
    assert read_image(cat).shape == (341, 512, 3)
    for bad in ("lots", "0", "-5", "1.5", "nan"):
        monkeypatch.setenv(MAX_PIXELS_ENV, bad)
        with pytest.raises(ConfigError, match=MAX_PIXELS_ENV):
            read_image(cat)
    with pytest.raises(ConfigError, match="max_pixels"):
        read_image(cat, max_pixels=0)


def test_a_file_longer_than_any_allowed_image_is_not_read(tmp_path):
    sparse = tmp_path / "sparse.png"
    with sparse.open("wb") as handle:
        handle.write(huge_png(100, 100)[:33])
        handle.truncate(2 << 30)  # 2 GiB, sparse: reading it would take the memory
    with pytest.raises(ImageError, match=r"sparse\.png: file of 2147 MB is too large for an image of at most 50"):
        read_image(sparse)


@pytest.mark.parametrize("name", PHOTOS)
def test_shared_photos_decode_to_the_same_array_as_opencv_alone(name):
    path = testdata_path("images", name)
    expected = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    header = read_header(path.read_bytes())
    assert header is not None and (header.height, header.width) == expected.shape[:2]
    image = read_image(path)
    assert image.dtype == np.uint8 and np.array_equal(image, expected)


ENCODINGS = [
    (".png", []),
    (".jpg", []),
    (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
    (".jpg", [cv2.IMWRITE_JPEG_RST_INTERVAL, 2]),
    (".bmp", []),
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),  # lossless (VP8L)
    (".webp", [cv2.IMWRITE_WEBP_QUALITY, 80]),  # lossy (VP8)
    (".tiff", []),
    (".ppm", []),
    (".ppm", [cv2.IMWRITE_PXM_BINARY, 0]),
    (".pam", []),
    (".gif", []),
    (".sr", []),
]


@pytest.mark.parametrize(("suffix", "params"), ENCODINGS, ids=[f"{s}{p}" for s, p in ENCODINGS])
def test_every_format_opencv_writes_has_its_size_read_from_the_header(suffix, params):
    if not cv2.haveImageWriter(f"x{suffix}"):
        pytest.skip(f"this OpenCV cannot write {suffix}")
    image = np.random.default_rng(1).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(suffix, image, params)
    assert ok
    header = read_header(buf.tobytes())
    assert header is not None and (header.width, header.height) == (53, 37)
    assert np.array_equal(decode_image(buf.tobytes(), f"x{suffix}"), cv2.imdecode(buf, cv2.IMREAD_COLOR))


def test_jpeg_with_metadata_after_its_end_marker_is_not_truncated(images_dir):
    data = (images_dir / "cat_720p.jpg").read_bytes()
    assert decode_image(data + b"trailing maker notes \xff\xd8 ...", "x.jpg").shape == (720, 1280, 3)
    assert not jpeg_is_complete(data[:-2]) and not jpeg_is_complete(data[: len(data) // 2])
    with pytest.raises(ImageError, match="truncated JPEG"):
        decode_image(data[: len(data) // 2] + b"\x00" * 100, "x.jpg")


def test_predict_refuses_huge_images_in_one_line(cli, v2_model, imagenet_labels, bad_files):
    for name in ("png40k", "jpeg60k"):
        result = cli("predict", v2_model, bad_files[name], "--labels", imagenet_labels)
        assert_one_line_error(result, bad_files[name].name, "over the limit of 50 megapixels", code=1)


def test_predict_on_a_corrupt_png_prints_one_line_not_libpng_s_own(cli, v1_model, imagenet_labels, tmp_path):
    """A flipped byte in IDAT: refused by its CRC before libpng prints ``libpng error:`` on stderr."""
    ok, buf = cv2.imencode(".png", np.random.default_rng(2).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    data = bytearray(buf.tobytes())
    data[data.index(b"IDAT") + 20] ^= 0xFF
    flipped = tmp_path / "flipped.png"
    flipped.write_bytes(bytes(data))
    result = cli("predict", v1_model, flipped, "--labels", imagenet_labels)
    assert_one_line_error(result, "flipped.png", "corrupt PNG (IDAT chunk fails its CRC check)", code=1)
    assert decode_image(buf.tobytes() + b"after IEND", "x").shape == (64, 64, 3)  # trailing bytes are harmless


def test_predict_bad_limit_in_the_environment_is_a_usage_error(cli, v1_model, imagenet_labels, images_dir):
    result = cli("predict", v1_model, images_dir / "cat.bmp", "--labels", imagenet_labels, env={MAX_PIXELS_ENV: "x"})
    assert_one_line_error(result, MAX_PIXELS_ENV, "whole number", code=2)


def _limit_memory() -> None:
    limit = 1536 << 20  # 1.5 GiB of address space: a 30000x30000 decode needs 2.7 GB for its pixels
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def test_predict_under_a_memory_limit_skips_the_huge_png_and_classifies_the_rest(
    v1_model, imagenet_labels, images_dir, bad_files
):
    """The 875 KB-style PNG must be refused before decoding: under RLIMIT_AS a decode would crash."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "edgesight.device.cli",
            "predict",
            str(v1_model),
            str(bad_files["png30k"]),
            str(images_dir / "cat.bmp"),
            "--labels",
            str(imagenet_labels),
            "--threads",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 1, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "png30k.png" in lines[0] and "over the limit" in lines[0], proc.stderr
    assert "MemoryError" not in proc.stderr and "Traceback" not in proc.stderr
    assert "cat.bmp" in proc.stdout and "cat" in proc.stdout.split("cat.bmp", 1)[1]


def test_image_folder_source_skips_huge_and_broken_images(tmp_path, images_dir, bad_files, caplog):
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("png40k", "jpeg60k", "cut_png", "text_jpg"):
        bad_files[name].rename(folder / bad_files[name].name)
    (folder / "z_cat.bmp").write_bytes((images_dir / "cat.bmp").read_bytes())
    source = ImageFolderSource(folder)
    frame = source.read()
    assert frame is not None and frame.image.shape == (341, 512, 3)
    assert source.read() is None
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    assert len(skipped) == 4 and any("over the limit" in m for m in skipped)
    with pytest.raises(ConfigError):
        ImageFolderSource(folder, max_pixels=-1)


def test_run_on_an_image_folder_with_a_huge_and_a_corrupt_image_goes_on(
    cli, v1_model, imagenet_labels, images_dir, bad_files, tmp_path
):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("png40k", "cut_png"):
        bad_files[name].rename(folder / bad_files[name].name)
    (folder / "z_cat.bmp").write_bytes((images_dir / "cat.bmp").read_bytes())
    result = cli("run", "--model", v1_model, "--labels", imagenet_labels, "--source", folder, "--no-mqtt")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "cv2.error" not in result.stderr
    assert "png40k.png" in result.stderr and "over the limit" in result.stderr
    assert "cut.png: truncated PNG" in result.stderr
