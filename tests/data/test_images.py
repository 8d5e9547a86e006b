"""The one image reader and writer, ``stainstyle.data.images``: formats, depths, round trips."""

from __future__ import annotations

import os
import pickle

import cv2
import numpy as np
import pytest
from _support import he_tiles, png_bytes
from PIL import Image, ImageCms, ImageOps

from stainstyle._atomic import TEMPORARY_SUFFIX
from stainstyle.data import loaders
from stainstyle.data.images import (
    IMAGE_SUFFIXES,
    ImageData,
    ImageReadError,
    read_image,
    read_image_data,
    read_image_header,
    write_image,
)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.fixture
def tile() -> np.ndarray:
    return he_tiles(1, 32, seed=5)[0]


# ------------------------------------------------------------------------------ one reader
def test_one_reader_for_the_library():
    assert loaders.read_image is read_image
    assert loaders.ImageReadError is ImageReadError
    assert set(loaders.IMAGE_EXTENSIONS) == IMAGE_SUFFIXES
    assert issubclass(ImageReadError, OSError)


def test_read_image_data_describes_the_file(tmp_path, tile):
    path = tmp_path / "a.png"
    Image.fromarray(tile).save(path, dpi=(300, 300))
    data = read_image_data(path)
    assert isinstance(data, ImageData)
    np.testing.assert_array_equal(data.rgb, tile)
    assert data.format == "PNG" and data.alpha is None and data.notes == ()
    assert data.save_options["dpi"] == pytest.approx((300, 300), abs=0.05)


@pytest.mark.parametrize("suffix", [".png", ".tif", ".bmp"])
def test_lossless_formats_round_trip(tmp_path, tile, suffix):
    source = tmp_path / f"in{suffix}"
    Image.fromarray(tile).save(source)
    data = read_image_data(source)
    out = tmp_path / f"out{suffix}"
    write_image(out, data.rgb, like=data)
    np.testing.assert_array_equal(read_image(out), tile)
    with Image.open(out) as written:
        assert written.format == data.format


# ------------------------------------------------------------------------- depths and modes
def test_16_bit_gray_and_rgb_are_scaled_with_rounding(tmp_path):
    values = np.array([[0, 128, 129, 385, 65535, 257 * 200 + 200]], dtype=np.uint16)
    expected = np.array([[0, 0, 1, 1, 255, 201]], dtype=np.uint8)  # round(value / 257)
    cv2.imwrite(str(tmp_path / "gray.png"), values)
    data = read_image_data(tmp_path / "gray.png")
    np.testing.assert_array_equal(data.rgb, np.repeat(expected[..., None], 3, axis=-1))
    assert any("16-bit" in note for note in data.notes)

    rgb = np.stack([values, values[:, ::-1], np.full_like(values, 514)], axis=-1)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / "rgb.tif"), rgb[..., ::-1])
    want = np.stack([expected, expected[:, ::-1], np.full_like(expected, 2)], axis=-1)
    for name in ("rgb.png", "rgb.tif"):
        np.testing.assert_array_equal(read_image(tmp_path / name), want, err_msg=name)


def test_16_bit_rgba_keeps_its_alpha_and_composites_onto_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint16)
    rgba[..., :3] = 257 * 100
    rgba[0, :, 3] = 65535
    rgba[1, 0, 3] = 0
    rgba[1, 1, 3] = 257 * 51  # 20 % opaque
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba[..., [2, 1, 0, 3]])
    data = read_image_data(tmp_path / "rgba.png")
    np.testing.assert_array_equal(data.alpha, [[255, 255], [0, 51]])
    np.testing.assert_array_equal(data.rgb[0], [[100] * 3] * 2)
    np.testing.assert_array_equal(data.rgb[1, 0], [255] * 3)
    np.testing.assert_array_equal(data.rgb[1, 1], [round(100 * 0.2 + 255 * 0.8)] * 3)


def test_16_bit_gray_with_alpha(tmp_path):
    rows = b"".join(b"\0" + bytes.fromhex("c8c8ffff0000ffff") for _ in range(2))
    (tmp_path / "la.png").write_bytes(png_bytes(2, 2, 16, 4, rows))
    data = read_image_data(tmp_path / "la.png")
    np.testing.assert_array_equal(data.rgb[..., 0], [[200, 0], [200, 0]])
    np.testing.assert_array_equal(data.alpha, 255)


def test_float_images_in_unit_range_are_scaled_others_refused(tmp_path):
    values = np.array([[0.0, 0.5, 1.0, 0.2]], np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "unit.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "unit.tif")[..., 1], [[0, 128, 255, 51]])
    Image.fromarray(values * 255, mode="F").save(tmp_path / "wide.tif")
    with pytest.raises(ImageReadError, match=r"wide.tif: float image with values from 0 to 255"):
        read_image(tmp_path / "wide.tif")
    values[0, 1] = np.inf
    Image.fromarray(values, mode="F").save(tmp_path / "inf.tif")
    with pytest.raises(ImageReadError, match="inf.tif: float image with NaN or infinite"):
        read_image(tmp_path / "inf.tif")


def test_32_bit_integer_images_are_refused(tmp_path):
    Image.fromarray(np.full((2, 2), 70000, np.int32), mode="I").save(tmp_path / "i.tif")
    with pytest.raises(ImageReadError, match="i.tif: 32-bit integer samples are not supported"):
        read_image(tmp_path / "i.tif")


@pytest.mark.parametrize("mode", ["1", "L", "P", "LA", "PA", "RGBA", "CMYK", "YCbCr"])
def test_every_8_bit_mode_becomes_rgb(tmp_path, tile, mode):
    image = Image.fromarray(tile).convert(mode)
    path = tmp_path / ("x.jpg" if mode in ("CMYK", "YCbCr") else "x.tif")
    image.save(path)
    out = read_image(path)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_a_viewer_shows_it(tmp_path, orientation):
    stored = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    exif = Image.Exif()
    exif[0x0112] = orientation
    for suffix in (".png", ".tif"):
        path = tmp_path / f"o{suffix}"
        Image.fromarray(stored).save(path, exif=exif.tobytes())
        with Image.open(tmp_path / "o.png") as image:
            upright = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
        np.testing.assert_array_equal(read_image(path), upright, err_msg=f"{suffix}")


def test_written_outputs_display_upright_without_the_orientation_tag(tmp_path, tile):
    exif = Image.Exif()
    exif[0x0112] = 8
    wide = np.concatenate([tile, tile[:, ::-1]], axis=1)  # 32 x 64
    Image.fromarray(wide).save(tmp_path / "in.png", exif=exif.tobytes())
    data = read_image_data(tmp_path / "in.png")
    assert data.rgb.shape == (64, 32, 3)
    write_image(tmp_path / "out.png", data.rgb, like=data)
    with Image.open(tmp_path / "out.png") as written:
        assert written.size == (32, 64)
        assert written.getexif().get(0x0112, 1) == 1
        np.testing.assert_array_equal(np.asarray(written.convert("RGB")), np.rot90(wide, 1))


def test_only_rgb_icc_profiles_are_written_back(tmp_path, tile):
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(tile).save(tmp_path / "rgb.png", icc_profile=srgb)
    assert read_image_data(tmp_path / "rgb.png").save_options["icc_profile"] == srgb
    gray = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(tile).save(tmp_path / "other.png", icc_profile=gray)
    assert "icc_profile" not in read_image_data(tmp_path / "other.png").save_options


# ------------------------------------------------------------------------------ size limit
def test_header_claiming_a_huge_image_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(100_000, 100_000, 8, 2, b"\0" * 16))
    with pytest.raises(ImageReadError, match=r"100000 x 100000 = 10,000,000,000 pixels") as info:
        read_image(path)
    assert "--max-pixels" in str(info.value) and info.value.path == str(path)
    with pytest.raises(ImageReadError, match="above the limit"):
        read_image_header(path)


def test_max_pixels_lowers_and_raises_the_limit_without_changing_pillows(
    tmp_path, tile, monkeypatch
):
    path = tmp_path / "a.tif"
    Image.fromarray(tile).save(path)  # 1024 pixels
    with pytest.raises(ImageReadError, match="1,024 pixels is above the limit of 1,000"):
        read_image(path, max_pixels=1000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse it
    with pytest.raises(ImageReadError, match="above the limit of 100 pixels"):
        read_image(path)
    np.testing.assert_array_equal(read_image(path, max_pixels=1024), tile)
    assert read_image_header(path, max_pixels=1024) == (32, 32)
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(ValueError, match="max_pixels: expected a positive integer"):
        read_image(path, max_pixels=0)


# ---------------------------------------------------------------------------------- errors
def test_errors_name_the_file_and_pickle(tmp_path):
    with pytest.raises(ImageReadError, match="missing.png: file not found") as info:
        read_image(tmp_path / "missing.png")
    copy = pickle.loads(pickle.dumps(info.value))
    assert (copy.path, copy.reason, str(copy)) == (
        info.value.path,
        info.value.reason,
        str(info.value),
    )
    with pytest.raises(ImageReadError, match=r"is a folder, not an image file"):
        read_image(tmp_path)


# ----------------------------------------------------------------------------------- writer
def test_write_image_keeps_alpha_dpi_and_gives_umask_mode(tmp_path, tile):
    rgba = np.dstack([tile, np.linspace(0, 255, 32 * 32).astype(np.uint8).reshape(32, 32)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "in.png", dpi=(96, 96))
    data = read_image_data(tmp_path / "in.png")
    out = tmp_path / "deep" / "out.png"
    write_image(out, 255 - data.rgb, like=data)
    with Image.open(out) as written:
        assert written.mode == "RGBA"
        np.testing.assert_array_equal(np.asarray(written)[..., 3], rgba[..., 3])
        assert written.info["dpi"] == pytest.approx((96, 96), abs=0.05)
    assert out.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert sorted(os.listdir(out.parent)) == ["out.png"]


def test_write_image_16_bit_input_gives_an_8_bit_output(tmp_path):
    cv2.imwrite(str(tmp_path / "in.png"), np.full((4, 4, 3), 40000, np.uint16))
    data = read_image_data(tmp_path / "in.png")
    write_image(tmp_path / "out.png", data.rgb, like=data)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "RGB"
    assert cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint8


@pytest.mark.parametrize("quality", [0, -5, 101, 1000, 9.5, True])
def test_write_image_refuses_jpeg_quality_outside_1_to_100(tmp_path, tile, quality):
    with pytest.raises(ValueError, match="jpeg_quality: expected an integer from 1 to 100"):
        write_image(tmp_path / "x.jpg", tile, jpeg_quality=quality)
    assert not (tmp_path / "x.jpg").exists()


def test_write_image_validates_its_arguments_and_leaves_no_temporary(tmp_path, tile):
    with pytest.raises(ValueError, match=r"rgb: expected an ndarray of shape \(H, W, 3\)"):
        write_image(tmp_path / "x.png", tile.astype(np.float32))
    with pytest.raises(ValueError, match="no image format for the suffix '.xyz'"):
        write_image(tmp_path / "x.xyz", tile)
    data = ImageData(tile, "PNG", alpha=np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match=r"like.alpha: shape \(3, 3\)"):
        write_image(tmp_path / "x.png", tile, like=data)
    with pytest.raises(OSError, match="x.tif: cannot write as TIFF"):
        write_image(tmp_path / "x.tif", tile, like=ImageData(tile, "TIFF", None, {"dpi": "x"}))
    leftovers = [p for p in os.listdir(tmp_path) if p.endswith(TEMPORARY_SUFFIX)]
    assert leftovers == [] and not (tmp_path / "x.png").exists()


def test_jpeg_quality_is_used(tmp_path, tile):
    big = np.tile(tile, (4, 4, 1))
    write_image(tmp_path / "low.jpg", big, jpeg_quality=5)
    write_image(tmp_path / "high.jpg", big, jpeg_quality=100)
    assert (tmp_path / "low.jpg").stat().st_size < (tmp_path / "high.jpg").stat().st_size / 3
