"""Normalizing one slide: ``stainstyle.wsi.normalize_slide``.

On the real Aperio SVS with every method, and on slides built from real CAMELYON17 tiles: the
output is a readable pyramid with the right size and resolution, its levels are the downsampled
level 0, and normalizing tile by tile joins without seams.
"""

from __future__ import annotations

import numpy as np
import pytest
from _wsi_support import (
    SLIDE_METHODS,
    fitted_normalizer,
    mosaic,
    plain_tiff,
    real_crops,
    reference_pyramid,
    svs_path,
    write_image_slide,
)

import stainstyle.wsi.normalize as normalize_module
from stainstyle import MacenkoNormalizer
from stainstyle.wsi import (
    NoTissueError,
    SlideReadError,
    SlideRequestError,
    context_margin,
    normalize_slide,
    open_slide,
    pyramid_dimensions,
    tissue_sample,
)

CLASSIC = [m for m in SLIDE_METHODS if m != "sst"]


def read_all(path, level=0, backend=None) -> np.ndarray:
    with open_slide(path, backend=backend) as slide:
        width, height = slide.level_dimensions[level]
        return slide.read_level(level, (0, 0, width, height))


@pytest.fixture(scope="module")
def tissue_slide(tmp_path_factory):
    """A 1024 x 768 lossless slide of real tissue, every 256-px tile holding tissue."""
    image = mosaic(1024, 768, seed=5)
    path = tmp_path_factory.mktemp("tissue") / "tissue.tif"
    return write_image_slide(path, image, compression="deflate", mpp=0.5, magnification=20), image


# ---------------------------------------------------------------------------- the real SVS
@pytest.mark.parametrize("method", SLIDE_METHODS)
def test_real_svs_normalized_by_every_method_reads_back_in_both_readers(tmp_path, method):
    normalizer = fitted_normalizer(method)
    out = tmp_path / "normalized.tiff"
    result = normalize_slide(svs_path(), normalizer, out, sample=32, progress=False)
    assert result.status == "written" and result.output == out and result.error == ""
    assert result.tiles == 9 * 12 and 0 < result.passthrough_tiles < result.tiles
    assert result.statistics.modelled and result.statistics.n_tiles > 0
    levels = pyramid_dimensions((2220, 2967), 256)
    pixels = {}
    for backend in ("tiffslide", "openslide"):
        with open_slide(out, backend=backend) as slide:
            assert slide.level_dimensions == tuple(levels)
            assert slide.mpp == pytest.approx((0.499, 0.499))
            assert slide.objective_power == pytest.approx(20.0)
        pixels[backend] = read_all(out, backend=backend)
    np.testing.assert_array_equal(pixels["tiffslide"], pixels["openslide"])
    original = read_all(svs_path())
    assert np.abs(pixels["tiffslide"].astype(int) - original).mean() > 1.0  # it changed


def test_resampled_output_records_its_resolution(tmp_path):
    out = tmp_path / "half.tiff"
    result = normalize_slide(
        svs_path(), fitted_normalizer("reinhard"), out, mpp=1.0, sample=16, progress=False
    )
    with open_slide(out) as slide:
        assert slide.dimensions == (1108, 1481)  # 2220 x 2967 at 0.499 -> 1.0 um/px, rounded up
        assert slide.mpp == pytest.approx((1.0, 1.0))
        assert slide.objective_power == pytest.approx(20.0 * 0.499)
    assert result.tiles == 5 * 6


# ---------------------------------------------------------------------------- pyramids
def test_pyramid_levels_are_the_downsampled_normalized_level_0(tmp_path):
    source = write_image_slide(
        tmp_path / "source.tif", mosaic(2048, 1536, seed=2, glass=0.2), compression="deflate",
        mpp=0.25, magnification=40,
    )  # fmt: skip
    with open_slide(source) as slide:
        assert slide.level_count == 4  # a multi-level input, read at level 0
    out = tmp_path / "out.tiff"
    normalize_slide(source, fitted_normalizer("macenko"), out, compression="deflate")
    level0 = read_all(out)
    expected = reference_pyramid(level0, 256)
    with open_slide(out) as slide:
        assert slide.level_dimensions == tuple((a.shape[1], a.shape[0]) for a in expected)
        for level, reference in enumerate(expected):
            np.testing.assert_array_equal(read_all(out, level), reference)


# ---------------------------------------------------------------------------- no seams
@pytest.mark.parametrize("method", CLASSIC)
def test_tile_by_tile_equals_the_whole_region_at_once(tmp_path, tissue_slide, method):
    source, image = tissue_slide
    normalizer = fitted_normalizer(method)
    result = normalize_slide(source, normalizer, tmp_path / "out.tif", compression="deflate")
    assert result.passthrough_tiles == 0  # every tile holds tissue: none written unchanged
    whole, status = normalizer.transform_with_status(image, source=result.statistics)
    assert status.tolist() == ["ok"]
    np.testing.assert_array_equal(read_all(tmp_path / "out.tif"), whole)


def border_and_interior(difference: np.ndarray, step: int) -> tuple[float, float]:
    """Mean of ``difference`` on the rows and columns beside tile borders, and elsewhere."""
    rows, cols = np.zeros(difference.shape[0], bool), np.zeros(difference.shape[1], bool)
    for border in range(step, difference.shape[0], step):
        rows[border - 1 : border + 1] = True
    for border in range(step, difference.shape[1], step):
        cols[border - 1 : border + 1] = True
    near = rows[:, None] | cols[None, :]
    return float(difference[near].mean()), float(difference[~near].mean())


def sst_border_and_interior(tmp_path, tissue_slide) -> tuple[float, float]:
    """SST's mean absolute difference to the whole region at once, at tile borders and inside."""
    source, image = tissue_slide
    sst = fitted_normalizer("sst")
    result = normalize_slide(source, sst, tmp_path / "out.tif", compression="deflate")
    whole, _ = sst.transform_with_status(image, source=result.statistics)
    difference = np.abs(read_all(tmp_path / "out.tif").astype(int) - whole).mean(axis=2)
    return border_and_interior(difference, 256)


def test_sst_differs_at_tile_borders_no_more_than_inside_tiles(tmp_path, tissue_slide):
    assert context_margin(fitted_normalizer("sst")) == 32 // 4
    border, interior = sst_border_and_interior(tmp_path, tissue_slide)
    print(f"SST vs the whole region: border {border:.4f}, interior {interior:.4f} (0-255)")
    assert border <= interior + 0.05


def test_sst_without_the_margin_would_show_seams(tmp_path, tissue_slide, monkeypatch):
    monkeypatch.setattr(normalize_module, "context_margin", lambda normalizer: 0)
    border, interior = sst_border_and_interior(tmp_path, tissue_slide)
    print(f"SST without margin: border {border:.4f}, interior {interior:.4f} (0-255)")
    assert border > interior + 0.05


# ---------------------------------------------------------------------------- the pieces
def test_context_margin_is_zero_for_pixelwise_methods():
    assert [context_margin(fitted_normalizer(m)) for m in CLASSIC] == [0] * len(CLASSIC)


def test_tissue_sample_gives_what_the_slide_has_up_to_n(tmp_path):
    source = write_image_slide(tmp_path / "s.tif", mosaic(768, 512, seed=1, glass=0.5), mpp=0.5)
    with open_slide(source) as slide:
        assert tissue_sample(slide, 2, 256).shape == (2, 256, 256, 3)
        every = tissue_sample(slide, 100, 256)
        assert 1 <= len(every) < 6
        assert np.array_equal(every, tissue_sample(slide, 100, 256))  # seeded
        with pytest.raises(ValueError, match="n: expected a positive integer, got 0"):
            tissue_sample(slide, 0)


# ---------------------------------------------------------------------------- runs
def test_existing_output_is_skipped_unless_overwrite(tmp_path, tissue_slide):
    out = tmp_path / "out.tif"
    out.write_bytes(b"an earlier output")
    normalizer = fitted_normalizer("reinhard")
    result = normalize_slide(tissue_slide[0], normalizer, out)
    assert (result.status, result.tiles, result.statistics) == ("skipped", 0, None)
    assert out.read_bytes() == b"an earlier output"
    assert normalize_slide(tissue_slide[0], normalizer, out, overwrite=True).status == "written"
    assert read_all(out).shape == (768, 1024, 3)


def test_output_that_is_the_input_or_a_folder_is_refused(tmp_path, tissue_slide):
    with pytest.raises(ValueError, match="is the input slide"):
        normalize_slide(tissue_slide[0], fitted_normalizer("gray"), tissue_slide[0])
    (tmp_path / "out.tif").mkdir()
    with pytest.raises(ValueError, match="exists and is not a file"):
        normalize_slide(tissue_slide[0], fitted_normalizer("gray"), tmp_path / "out.tif")


def test_slide_the_method_cannot_model_follows_the_background_policy(tmp_path, caplog):
    gray = mosaic(768, 512, seed=4).mean(axis=2, keepdims=True).astype(np.uint8)
    source = write_image_slide(tmp_path / "gray.tif", np.repeat(gray, 3, axis=2), mpp=0.5)
    normalizer = fitted_normalizer("macenko")
    with caplog.at_level("WARNING", logger="stainstyle"):
        result = normalize_slide(source, normalizer, tmp_path / "out.tif", compression="zstd")
    assert not result.statistics.modelled
    assert result.passthrough_tiles == result.tiles == 6
    assert "cannot model" in caplog.text and "written unchanged" in caplog.text
    np.testing.assert_array_equal(read_all(tmp_path / "out.tif"), read_all(source))
    strict = MacenkoNormalizer(background="raise").fit(real_crops()[:8])
    with pytest.raises(ValueError, match=r"gray\.tif: MacenkoNormalizer cannot model"):
        normalize_slide(source, strict, tmp_path / "strict.tif")
    assert not (tmp_path / "strict.tif").exists()


# ---------------------------------------------------------------------------- errors name the file
def test_missing_file(tmp_path):
    missing = tmp_path / "missing.svs"
    with pytest.raises(SlideReadError, match=f"{missing}: file not found"):
        normalize_slide(missing, fitted_normalizer("gray"), tmp_path / "out.tif")


def test_unsupported_format(tmp_path):
    text = tmp_path / "notes.svs"
    text.write_text("not a slide\n" * 100)
    with pytest.raises(SlideReadError, match=f"{text}: not a slide this library can read"):
        normalize_slide(text, fitted_normalizer("gray"), tmp_path / "out.tif")


def test_slide_without_tissue(tmp_path):
    glass = write_image_slide(tmp_path / "glass.tif", np.full((512, 768, 3), 240, np.uint8))
    with pytest.raises(NoTissueError, match=f"{glass}: no tissue"):
        normalize_slide(glass, fitted_normalizer("gray"), tmp_path / "out.tif")
    assert not (tmp_path / "out.tif").exists()


def test_mpp_the_slide_cannot_give(tmp_path, tissue_slide):
    with pytest.raises(SlideRequestError, match=r"tissue\.tif: 0\.1 um/px requested, finer"):
        normalize_slide(tissue_slide[0], fitted_normalizer("gray"), tmp_path / "o.tif", mpp=0.1)
    unknown = plain_tiff(tmp_path / "plain.tif", mosaic(512, 512, seed=3))
    with pytest.raises(SlideRequestError, match=r"plain\.tif: the file records no microns"):
        normalize_slide(unknown, fitted_normalizer("gray"), tmp_path / "o.tif", mpp=0.5)
    assert not (tmp_path / "o.tif").exists()


def test_invalid_options_name_the_option(tmp_path, tissue_slide):
    normalizer = fitted_normalizer("gray")
    with pytest.raises(ValueError, match="sample: expected a positive integer, got 0"):
        normalize_slide(tissue_slide[0], normalizer, tmp_path / "o.tif", sample=0)
    with pytest.raises(ValueError, match="compression: expected one of"):
        normalize_slide(tissue_slide[0], normalizer, tmp_path / "o.tif", compression="lzw")
    assert not list(tmp_path.iterdir())
