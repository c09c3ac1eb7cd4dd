"""The one preprocessing definition: colour orders, fits and dtype conversion."""

import numpy as np
import pytest

from edgesight.device.core.preprocess import InputContract, fit_to_size, prepare, quantize_pixels, to_rgb


def test_to_rgb_handles_grey_bgr_and_bgra():
    bgr = np.zeros((4, 6, 3), np.uint8)
    bgr[..., 0] = 200  # blue in OpenCV order
    assert to_rgb(bgr)[0, 0].tolist() == [0, 0, 200]
    assert to_rgb(bgr, order="RGB")[0, 0].tolist() == [200, 0, 0]
    bgra = np.dstack([bgr, np.full((4, 6), 255, np.uint8)])
    assert to_rgb(bgra).shape == (4, 6, 3) and to_rgb(bgra)[0, 0].tolist() == [0, 0, 200]
    grey = np.full((4, 6), 77, np.uint8)
    assert to_rgb(grey).shape == (4, 6, 3) and set(to_rgb(grey).ravel()) == {77}
    assert to_rgb(grey[..., None]).shape == (4, 6, 3)


def test_centre_crop_keeps_the_middle_and_stretch_keeps_everything():
    frame = np.zeros((100, 300, 3), np.uint8)
    frame[:, 100:200] = 255  # a white square in the middle, black sides
    centre = fit_to_size(frame, 10, 10, "centre")
    stretch = fit_to_size(frame, 10, 10, "stretch")
    assert centre.shape == stretch.shape == (10, 10, 3)
    assert centre.min() == 255  # only the white middle survives the crop
    assert stretch[:, 0].max() == 0 and stretch[:, 5].min() == 255


def test_tall_frames_are_cropped_top_and_bottom():
    frame = np.zeros((300, 100, 3), np.uint8)
    frame[100:200] = 255
    assert fit_to_size(frame, 8, 8, "centre").min() == 255


@pytest.mark.parametrize(
    "dtype,scale,zp,mean,std,expected",
    [
        ("uint8", 0.0078125, 128, 128.0, 128.0, [0, 128, 255]),  # raw pixels fast path
        ("int8", 1.0, -128, 0.0, 1.0, [-128, 0, 127]),  # pixels - 128 fast path
        ("uint8", 0.5, 10, 0.0, 1.0, [10, 255, 255]),  # general affine path, clipped
        ("float32", 0.0, 0, 127.5, 127.5, [-1.0, 0.00392, 1.0]),  # MobileNet [-1, 1]
    ],
)
def test_quantize_pixels(dtype, scale, zp, mean, std, expected):
    contract = InputContract(1, 3, dtype, scale, zp, mean, std)
    pixels = np.array([[[0, 0, 0], [128, 128, 128], [255, 255, 255]]], np.uint8)
    out = quantize_pixels(pixels, contract)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out[0, :, 0].astype(float), expected, atol=1e-3)


def test_prepare_adds_batch_axis_for_any_frame_size():
    contract = InputContract(32, 32, "uint8", 1 / 128, 128, 128.0, 128.0)
    for shape in [(480, 640, 3), (720, 1280, 4), (50, 20), (32, 32, 3)]:
        tensor = prepare(np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8), contract)
        assert tensor.shape == (1, 32, 32, 3) and tensor.dtype == np.uint8


@pytest.mark.parametrize("fit", ["centre", "stretch"])
def test_prepare_converts_colour_after_resizing_without_changing_pixels(fit):
    """prepare() swaps channels on the small image; it must equal converting the full frame first."""
    frame = np.random.default_rng(1).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    contract = InputContract(224, 224, "uint8", 1 / 128, 128, 128.0, 128.0, fit)
    expected = fit_to_size(to_rgb(frame), 224, 224, fit)
    np.testing.assert_array_equal(prepare(frame, contract)[0], expected)
    bgra = np.dstack([frame, np.full(frame.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(prepare(bgra, contract)[0], expected)


@pytest.mark.parametrize("dtype,expected", [("uint8", [0, 128, 255]), ("int8", [-128, 0, 127])])
def test_integer_input_without_quantization_takes_pixels(dtype, expected):
    """tf2onnx of a quantized TFLite model gives a uint8 input with no scale: no division by zero."""
    from edgesight.device.classify import contract_for
    from edgesight.device.core.bundle import ModelSpec
    from edgesight.device.runtimes import TensorInfo

    contract = contract_for(ModelSpec(model_path=None, labels=(), contract=None), TensorInfo((1, 1, 3, 3), dtype))
    pixels = np.array([[[0, 0, 0], [128, 128, 128], [255, 255, 255]]], np.uint8)
    assert quantize_pixels(pixels, contract)[0, :, 0].tolist() == expected


def test_with_fit_settles_the_spelling_so_center_never_means_stretch():
    contract = InputContract(2, 2, fit="stretch")
    assert contract.with_fit("center").fit == "centre"
    assert contract.with_fit(None) is contract
    assert contract.with_fit("stretch") is contract
    with pytest.raises(ValueError, match="unknown fit"):
        contract.with_fit("squash")


def test_to_bgr_for_encoding_grey_rgb_and_rgba():
    from edgesight.device.core.preprocess import to_bgr

    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB order
    assert to_bgr(rgb, "RGB")[0, 0].tolist() == [0, 0, 200]
    assert to_bgr(rgb, "BGR") is rgb  # already BGR: no copy
    rgba = np.dstack([rgb, np.full((2, 3), 255, np.uint8)])
    assert to_bgr(rgba, "RGB").shape == (2, 3, 3) and to_bgr(rgba, "RGB")[0, 0].tolist() == [0, 0, 200]
    assert to_bgr(np.full((2, 3), 9, np.uint8)).shape == (2, 3, 3)
    bgra = np.dstack([rgb, np.full((2, 3), 255, np.uint8)])
    assert to_bgr(bgra, "BGR").shape == (2, 3, 3)  # JPEG has no alpha
