import csv
import pickle

import numpy as np
import pytest
from _support import require_data, require_module
from PIL import Image

from stainstyle.data import (
    Groups,
    H5Tiles,
    ImageReadError,
    LazyTiles,
    load_amibr,
    load_camelyon17_wilds,
    load_folder,
    load_manifest,
    load_pcam,
    make_tiles,
    read_image,
    split_by_slide,
)


@pytest.fixture
def tiles():
    return make_tiles(6, "radboud", size=32, seed=0)[0]


def write_png(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)
    return path


def write_csv(path, header, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


# ----------------------------------------------------------------- reading single images
def test_read_image_rgb_roundtrip(tmp_path, tiles):
    path = write_png(tmp_path / "a.png", tiles[0])
    out = read_image(path)
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out, tiles[0])


def test_read_image_converts_gray_rgba_and_16_bit(tmp_path):
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    out = read_image(write_png(tmp_path / "g.png", gray))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=-1))

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (200, 100, 50)
    rgba[0, :, 3] = 255  # opaque row keeps its colour
    out = read_image(write_png(tmp_path / "rgba.png", rgba))
    assert out.shape == (4, 4, 3)
    np.testing.assert_array_equal(out[0], [[200, 100, 50]] * 4)
    np.testing.assert_array_equal(out[1:], 255)  # transparent = glass (white)

    deep = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369).astype(np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(deep).save(path)
    out = read_image(path)
    np.testing.assert_array_equal(out[..., 0], np.rint(deep / 257.0).astype(np.uint8))


def test_read_image_errors_name_the_file(tmp_path, tiles):
    with pytest.raises(ImageReadError, match="missing.png: file not found"):
        read_image(tmp_path / "missing.png")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="garbage.png: cannot read image"):
        read_image(garbage)
    good = write_png(tmp_path / "good.png", tiles[0]).read_bytes()
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImageReadError, match="truncated.png") as info:
        read_image(truncated)
    assert info.value.path == str(truncated)


def test_read_image_scales_16_bit_rgb_with_rounding(tmp_path):
    # Pillow alone drops the low byte of 16-bit RGB PNG and TIFF samples (value >> 8).
    import cv2

    deep = np.array([[[257 * 10 + 200, 257 * 20 + 129, 65535]]], dtype=np.uint16)
    for name in ("deep.png", "deep.tif"):
        cv2.imwrite(str(tmp_path / name), deep[..., ::-1])
        np.testing.assert_array_equal(read_image(tmp_path / name), [[[11, 21, 255]]], name)


def test_read_image_scales_float_tiffs_in_unit_range_and_refuses_others(tmp_path):
    ramp = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    Image.fromarray(ramp, mode="F").save(tmp_path / "float.tif")
    out = read_image(tmp_path / "float.tif")
    np.testing.assert_array_equal(out[..., 0], np.rint(ramp * 255).astype(np.uint8))
    Image.fromarray(ramp * 1000, mode="F").save(tmp_path / "wide.tif")
    with pytest.raises(ImageReadError, match="wide.tif: float image with values from 0 to 1000"):
        read_image(tmp_path / "wide.tif")


def test_read_image_refuses_multi_page_files_naming_the_page_count(tmp_path, tiles):
    pages = [Image.fromarray(tile) for tile in tiles[:3]]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    with pytest.raises(ImageReadError, match="pages.tif: TIFF file with 3 pages"):
        read_image(tmp_path / "pages.tif")
    pages[0].save(tmp_path / "anim.gif", save_all=True, append_images=pages[1:2])
    with pytest.raises(ImageReadError, match="anim.gif: GIF file with 2 frames"):
        read_image(tmp_path / "anim.gif")


def test_read_image_applies_exif_orientation(tmp_path, tiles):
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    wide = np.concatenate([tiles[0], tiles[1]], axis=1)  # 32 x 64
    Image.fromarray(wide).save(tmp_path / "rotated.png", exif=exif.tobytes())
    np.testing.assert_array_equal(read_image(tmp_path / "rotated.png"), np.rot90(wide, -1))


def test_read_image_refuses_a_decompression_bomb_by_name(tmp_path):
    from _support import png_bytes

    path = tmp_path / "bomb.png"
    path.write_bytes(png_bytes(100_000, 100_000, 8, 2, b"\0" * 16))
    with pytest.raises(ImageReadError, match="bomb.png: 100000 x 100000 = 10,000,000,000 pixels"):
        read_image(path)
    with pytest.raises(ImageReadError, match="bomb.png"):
        load_one_file(tmp_path, path)


def load_one_file(root, path):
    """A manifest listing one file, loaded eagerly."""
    write_csv(root / "one.csv", ["file", "label"], [[path.name, "x"]])
    return load_manifest(root / "one.csv")


# ----------------------------------------------------------------- folder and manifest
def make_folder(root, tiles):
    # root/<domain>/<label>/<slide>_<k>.png
    layout = [("labA", "tumor", "s1"), ("labA", "normal", "s2"), ("labB", "tumor", "s3")]
    for i, tile in enumerate(tiles):
        domain, label, slide = layout[i % 3]
        write_png(root / domain / label / f"{slide}_{i}.png", tile)
    (root / "labA" / "tumor" / "notes.txt").write_text("ignored")


def test_load_folder(tmp_path, tiles):
    make_folder(tmp_path, tiles)
    x, y, groups = load_folder(tmp_path, slide_pattern=r"^(s\d)_")
    assert isinstance(x, np.ndarray) and x.shape == (6, 32, 32, 3)
    assert y.dtype.kind == "U" and set(y) == {"tumor", "normal"}
    assert set(groups.domain) == {"labA", "labB"}
    assert set(groups.slide) == {"s1", "s2", "s3"}
    # Each tile is where its labels say.
    index = list(groups.slide).index("s3")
    assert groups.domain[index] == "labB" and y[index] == "tumor"
    _, y, _ = load_folder(tmp_path, label_map={"normal": 0, "tumor": 1})
    assert y.dtype.kind == "i" and set(y) == {0, 1}


def test_load_folder_lazy(tmp_path, tiles):
    make_folder(tmp_path, tiles)
    eager, y, groups = load_folder(tmp_path)
    lazy, y_lazy, _ = load_folder(tmp_path, lazy=True)
    assert isinstance(lazy, LazyTiles) and len(lazy) == 6
    np.testing.assert_array_equal(lazy[2], eager[2])
    np.testing.assert_array_equal(np.asarray(lazy), eager)
    np.testing.assert_array_equal(lazy[[1, 3]].load_all(), eager[[1, 3]])
    assert len(lazy[2:]) == 4
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(lazy))[0], eager[0])
    np.testing.assert_array_equal(y, y_lazy)
    assert len(groups.slide) == 6  # no slide_pattern: every file its own slide


def test_load_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_folder(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no tiles found"):
        load_folder(tmp_path)


def test_load_manifest_and_skip(tmp_path, tiles):
    for i, tile in enumerate(tiles):
        write_png(tmp_path / "img" / f"{i}.png", tile)
    (tmp_path / "img" / "bad.png").write_bytes(b"broken")
    rows = [[f"img/{i}.png", i % 2, "lab", f"slide{i // 2}"] for i in range(6)]
    rows.insert(2, ["img/bad.png", 1, "lab", "slide9"])
    rows.append(["img/missing.png", 0, "lab", "slide8"])
    write_csv(tmp_path / "m.csv", ["file", "label", "domain", "slide"], rows)

    with pytest.raises(ImageReadError, match="bad.png"):
        load_manifest(tmp_path / "m.csv")
    with pytest.warns(UserWarning, match="skipped 2 of 8 unreadable"):
        x, y, groups = load_manifest(tmp_path / "m.csv", on_error="skip")
    assert x.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(x, tiles)
    np.testing.assert_array_equal(y, [0, 1, 0, 1, 0, 1])
    assert y.dtype == np.int64
    assert list(groups.slide) == ["slide0", "slide0", "slide1", "slide1", "slide2", "slide2"]

    # Lazy: missing files are found up front; with "skip", unreadable headers too.
    with pytest.raises(ImageReadError, match="missing.png: file not found"):
        load_manifest(tmp_path / "m.csv", lazy=True)
    with pytest.warns(UserWarning, match="skipped 2 of 8"):
        lazy, y_lazy, _ = load_manifest(tmp_path / "m.csv", lazy=True, on_error="skip")
    assert len(lazy) == 6 and len(y_lazy) == 6


def test_load_manifest_optional_columns_and_errors(tmp_path, tiles):
    write_png(tmp_path / "a.png", tiles[0])
    write_csv(tmp_path / "m.csv", ["file", "label"], [["a.png", "x"]])
    _, y, groups = load_manifest(tmp_path / "m.csv")
    assert list(y) == ["x"] and list(groups.slide) == ["a.png"] and list(groups.domain) == [""]
    write_csv(tmp_path / "bad.csv", ["path", "label"], [["a.png", "x"]])
    with pytest.raises(ValueError, match=r"missing columns \['file'\]"):
        load_manifest(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        load_manifest(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="on_error"):
        load_manifest(tmp_path / "m.csv", on_error="ignore")
    with pytest.raises(ValueError, match="label_map: no entry for labels"):
        load_manifest(tmp_path / "m.csv", label_map={"y": 1})


# ----------------------------------------------------------------- PatchCamelyon
def write_pcam(root, split, tiles, labels, wsi=None):
    h5py = require_module("h5py", extra="h5")
    stem = root / f"camelyonpatch_level_2_split_{split}"
    with h5py.File(f"{stem}_x.h5", "w") as f:
        f.create_dataset("x", data=tiles, chunks=(1, *tiles.shape[1:]), compression="gzip")
    with h5py.File(f"{stem}_y.h5", "w") as f:
        f.create_dataset("y", data=np.asarray(labels, np.uint8).reshape(-1, 1, 1, 1))
    if wsi is not None:
        rows = [
            [i, 10 * i, 20 * i, bool(lab), bool(lab), w]
            for i, (lab, w) in enumerate(zip(labels, wsi, strict=True))
        ]
        header = ["", "coord_y", "coord_x", "tumor_patch", "center_tumor_patch", "wsi"]
        write_csv(f"{stem}_meta.csv", header, rows)


def test_load_pcam(tmp_path):
    tiles, labels = make_tiles(8, "radboud", size=96, seed=1)
    wsi = [f"camelyon16_train_tumor_{i // 3:03d}" for i in range(8)]
    write_pcam(tmp_path, "valid", tiles, labels, wsi)
    x, y, groups = load_pcam(tmp_path, "valid")
    assert isinstance(x, H5Tiles) and len(x) == 8
    np.testing.assert_array_equal(y, labels)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x[3], tiles[3])
    np.testing.assert_array_equal(np.asarray(x), tiles)
    np.testing.assert_array_equal(x[[5, 1]].load_all(), tiles[[5, 1]])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(x))[7], tiles[7])
    assert list(groups.slide) == wsi and set(groups.domain) == {"camelyon16"}
    train, test = split_by_slide(groups, (0.5, 0.5))
    assert not set(groups.slide[train]) & set(groups.slide[test])


def test_load_pcam_without_meta_and_errors(tmp_path):
    tiles, labels = make_tiles(3, "radboud", size=96, seed=1)
    write_pcam(tmp_path, "test", tiles, labels)
    with pytest.warns(UserWarning, match="every tile is its own slide"):
        _, y, groups = load_pcam(tmp_path, "test")
    assert len(set(groups.slide)) == 3
    with pytest.raises(FileNotFoundError, match="camelyonpatch_level_2_split_train_x.h5"):
        load_pcam(tmp_path, "train")
    with pytest.raises(ValueError, match="split"):
        load_pcam(tmp_path, "validation")
    (tmp_path / "camelyonpatch_level_2_split_train_x.h5").write_bytes(b"corrupt")
    with pytest.raises(ImageReadError, match="split_train_x.h5: cannot open HDF5"):
        load_pcam(tmp_path, "train")


# ----------------------------------------------------------------- CAMELYON17-WILDS
def test_load_camelyon17_wilds(tmp_path, tiles):
    tiles = make_tiles(5, "utrecht", size=96, seed=2)[0]
    rows = []
    # (patient, node, x, y, tumor, slide, center, split) as in WILDS camelyon17_v1.0.
    spec = [
        (4, 4, 3328, 21792, 1, 0, 0, 0),
        (4, 4, 3200, 22272, 0, 0, 0, 0),
        (10, 4, 7680, 9856, 1, 1, 0, 1),
        (21, 2, 13088, 18432, 0, 10, 1, 0),
        (42, 3, 2432, 9056, 1, 23, 2, 0),
    ]
    for i, (patient, node, x, y, tumor, slide, center, split) in enumerate(spec):
        folder = f"patient_{patient:03d}_node_{node}"
        name = f"patch_{folder}_x_{x}_y_{y}.png"
        write_png(tmp_path / "patches" / folder / name, tiles[i])
        rows.append([i, f"{patient:03d}", node, x, y, tumor, slide, center, split])
    header = ["", "patient", "node", "x_coord", "y_coord", "tumor", "slide", "center", "split"]
    write_csv(tmp_path / "metadata.csv", header, rows)

    x, y, groups = load_camelyon17_wilds(tmp_path)
    np.testing.assert_array_equal(x, tiles)
    np.testing.assert_array_equal(y, [1, 0, 1, 0, 1])
    assert list(groups.domain) == ["center_0"] * 3 + ["center_1", "center_2"]
    assert list(groups.slide) == ["0", "0", "1", "10", "23"]
    x, y, groups = load_camelyon17_wilds(tmp_path, centers=[2], lazy=True)
    assert isinstance(x, LazyTiles) and len(x) == 1
    np.testing.assert_array_equal(x[0], tiles[4])
    # Unpadded patient ids are padded to the published folder names.
    rows[0][1] = "4"
    write_csv(tmp_path / "metadata.csv", header, rows)
    np.testing.assert_array_equal(load_camelyon17_wilds(tmp_path)[0][0], tiles[0])


# ----------------------------------------------------------------- groups
def test_groups():
    groups = Groups(domain=["a", "a", "b"], slide=["1", "2", "1"])
    assert len(groups) == 3
    assert len(set(groups.slide_ids())) == 3  # slide "1" of a and of b are different slides
    assert list(groups[[0, 2]].domain) == ["a", "b"]
    with pytest.raises(ValueError, match="one length"):
        Groups(domain=["a"], slide=["1", "2"])


# ----------------------------------------------------------------- AMi-Br (real data)
def test_load_amibr_reads_all_crops_with_labels_and_scanners():
    root = require_data("amibr")
    with open(root / "labels.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    x, y, groups = load_amibr(root)
    assert len(rows) == 3720
    assert x.shape == (3720, 128, 128, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [int(r["label"]) for r in rows])
    np.testing.assert_array_equal(groups.domain, [r["scanner"] for r in rows])
    counts = {
        s: (int(np.sum(y[groups.domain == s] == 1)), int(np.sum(y[groups.domain == s] == 0)))
        for s in set(groups.domain)
    }
    assert counts == {
        "AperioCS2": (172, 516),
        "HamamatsuS360": (127, 455),
        "HamamatsuXR": (105, 346),
        "TUPAC16": (428, 1571),
    }
    # Spot check pixels against an independent reader.
    for i in (0, 1234, 3719):
        with Image.open(root / rows[i]["file"]) as image:
            np.testing.assert_array_equal(x[i], np.asarray(image.convert("RGB")))

    parts = split_by_slide(groups, (0.7, 0.15, 0.15), seed=0)
    assert sum(len(p) for p in parts) == 3720
    assert len(np.unique(np.concatenate(parts))) == 3720
    keys = groups.slide_ids()
    for a in range(3):
        for b in range(a + 1, 3):
            assert not set(keys[parts[a]]) & set(keys[parts[b]])
    sizes = np.array([len(p) for p in parts]) / 3720
    np.testing.assert_allclose(sizes, [0.7, 0.15, 0.15], atol=0.05)
