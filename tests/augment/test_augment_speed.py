"""The augmenter rows of benchmarks/speed.py, on a tiny batch."""

import numpy as np
from _support import ROOT, he_tiles, load_script


def test_augment_rows_time_every_kind_and_its_peers():
    speed = load_script(ROOT / "benchmarks" / "speed.py")
    target, source = he_tiles(4, 32, seed=1), he_tiles(4, 32, seed=2)
    rows = speed.augment_rows(("hed", "stains", "randstainna"), target, source, repeats=1)
    ours = [row for row in rows if row["implementation"].startswith("stainstyle")]
    assert {row["augmenter"] for row in ours} == {"hed", "stains", "randstainna"}
    assert len(ours) == 6 and all(row["augment_batch"] > 0 for row in ours)
    peers = [row for row in rows if not row["implementation"].startswith("stainstyle")]
    for row in peers:  # torchstain is in the test extra: its row is there and timed
        assert "error" in row or row["augment_batch"] > 0
    if any("error" not in row for row in peers if row["augmenter"] == "stains"):
        assert all("augment_batch_ratio" in r for r in ours if r["augmenter"] == "stains")
    table = speed._augment_markdown(rows, 4, 32)
    assert "randstainna" in table and "MP" not in table.split("\n")[0]
    args = speed.parse_args(["--augmenters", ""])
    assert args.augmenters == ()
    assert np.isfinite([row["augment_batch"] for row in ours]).all()
