import numpy as np
import pytest
from sklearn.model_selection import GroupKFold

from stainstyle.data import Groups, leave_domain_out, make_tiles, split_by_slide


def random_groups(n_slides=40, seed=0):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 60, n_slides)
    slide = np.repeat(np.arange(n_slides), sizes).astype(str)
    domain = np.where(np.repeat(np.arange(n_slides), sizes) % 2, "labA", "labB")
    order = rng.permutation(len(slide))
    return Groups(domain=domain[order], slide=slide[order])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_slide_in_two_parts_and_sizes_close(seed):
    groups = random_groups(seed=seed)
    parts = split_by_slide(groups, (0.7, 0.15, 0.15), seed=seed)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(groups)))
    keys = groups.slide_ids()
    seen = [set(keys[p]) for p in parts]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    sizes = np.array([len(p) for p in parts]) / len(groups)
    np.testing.assert_allclose(sizes, [0.7, 0.15, 0.15], atol=0.06)
    assert all(np.all(np.diff(p) > 0) for p in parts)


def test_deterministic_and_seed_dependent():
    groups = random_groups()
    a = split_by_slide(groups, seed=3)
    b = split_by_slide(groups, seed=3)
    c = split_by_slide(groups, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_plain_slide_array_and_synthetic_slides():
    *_, slides = make_tiles(100, "radboud", size=32, seed=0, return_slides=True)
    train, test = split_by_slide(slides, (0.75, 0.25))
    assert not set(slides[train]) & set(slides[test])
    assert len(train) + len(test) == 100


def test_same_slide_name_in_two_domains_is_two_slides():
    groups = Groups(domain=["a", "a", "b", "b"], slide=["1", "1", "1", "1"])
    train, test = split_by_slide(groups, (0.5, 0.5))
    assert sorted(map(len, (train, test))) == [2, 2]


def test_errors():
    groups = Groups(domain=["a", "a"], slide=["1", "1"])
    with pytest.raises(ValueError, match="1 slides cannot fill 2 parts"):
        split_by_slide(groups, (0.5, 0.5))
    with pytest.raises(ValueError, match="fractions"):
        split_by_slide(groups, (1.0, 0.0))
    with pytest.raises(ValueError, match="groups"):
        split_by_slide([])


def test_leave_domain_out():
    groups = random_groups()
    train, test = leave_domain_out(groups, "labA")
    assert set(groups.domain[test]) == {"labA"} and "labA" not in set(groups.domain[train])
    assert len(train) + len(test) == len(groups)
    with pytest.raises(ValueError, match="'labC' not found"):
        leave_domain_out(groups, "labC")


def test_slide_ids_work_with_sklearn_group_splitters():
    groups = random_groups()
    keys = groups.slide_ids()
    for train, test in GroupKFold(n_splits=4).split(np.zeros(len(keys)), groups=keys):
        assert not set(keys[train]) & set(keys[test])
