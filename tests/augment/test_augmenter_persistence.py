"""Augmenters as first-class models: the registry, save_pretrained / from_pretrained, the card."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError

sys.path.insert(0, str(Path(__file__).parent))
from _augmenters import FIT_TILES, NAMES, make  # noqa: E402

import stainstyle  # noqa: E402
from stainstyle.augment import HEDJitter, RandStainNA, StainAugmenter  # noqa: E402
from stainstyle.augment._common import Augmenter  # noqa: E402
from stainstyle.hub import CARD_NAME, CONFIG_NAME, load  # noqa: E402
from stainstyle.registry import (  # noqa: E402
    BUILTIN_AUGMENTERS,
    augmenter_class,
    make_augmenter,
    method_name,
    normalizer_class,
    register_augmenter,
)

TILES = FIT_TILES[:3]


def fitted_state(augmenter: Augmenter) -> dict:
    return {name: getattr(augmenter, name) for name in type(augmenter)._fitted_attributes}


def assert_same_state(a: Augmenter, b: Augmenter) -> None:
    assert type(a) is type(b)
    expected, found = fitted_state(a), fitted_state(b)
    assert expected.keys() == found.keys()
    for name, value in expected.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(found[name], value)
            assert found[name].dtype == value.dtype
        else:
            assert found[name] == value and type(found[name]) is type(value)


# ------------------------------------------------------------------------------ registry
def test_builtin_augmenters_are_registered_by_name():
    assert {name: augmenter_class(name) for name in BUILTIN_AUGMENTERS} == {
        "hed": HEDJitter,
        "stain": StainAugmenter,
        "randstainna": RandStainNA,
    }
    for name, cls in (("hed", HEDJitter), ("randstainna", RandStainNA)):
        assert normalizer_class(cls.__name__) is cls and method_name(cls) == name
    made = make_augmenter("randstainna", spaces="lab", p=0.5)
    assert isinstance(made, RandStainNA) and made.get_params()["spaces"] == "lab"
    with pytest.raises(ValueError, match=r"params: \['sigmaa'\] not parameters of HEDJitter"):
        make_augmenter("hed", sigmaa=0.1)
    with pytest.raises(ValueError, match="augmenter: expected one of"):
        augmenter_class("macenko")


def test_a_custom_augmenter_registers_and_round_trips(tmp_path):
    class ChannelShift(Augmenter):
        def __init__(self, shift=10.0, *, random_state=None):
            super().__init__(random_state)
            self.shift = shift

        def _validate_params(self):
            if not isinstance(self.shift, (int, float)):
                raise ValueError(f"shift: expected a number, got {self.shift!r}")

        def _is_identity(self):
            return self.shift == 0

        def _draw(self, rng, n):
            return {"sign": rng.choice([-1.0, 1.0], n)}

        def _apply(self, xp, x, params):
            return x + self.shift * params["sign"].reshape(-1, 1, 1, 1)

    ChannelShift().save_pretrained(tmp_path)  # saving needs no registry; loading does
    with pytest.raises(ValueError, match="unknown normalizer class 'ChannelShift'"):
        load(tmp_path)
    register_augmenter(ChannelShift)
    loaded = load(tmp_path)
    assert isinstance(loaded, ChannelShift) and loaded.shift == 10.0
    with pytest.raises(TypeError, match="expected a Augmenter subclass"):
        register_augmenter(int)


# ------------------------------------------------------------------------------ round trip
@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_the_same_augmenter(name, tmp_path):
    augmenter = make(name, 0.3, random_state=11)
    augmenter.save_pretrained(tmp_path)
    loaded = load(tmp_path)
    assert_same_state(augmenter, loaded)
    params = augmenter.get_params()
    if isinstance(augmenter, StainAugmenter):
        params["normalizer"] = None  # an object: saved as null, its stain matrix as fitted
    assert loaded.get_params() == params
    # The same seed draws the same augmentation, from numpy and from torch input.
    np.testing.assert_array_equal(loaded(TILES, random_state=3), augmenter(TILES, random_state=3))
    batch = torch.from_numpy(TILES).permute(0, 3, 1, 2)
    assert torch.equal(loaded(batch, random_state=4), augmenter(batch, random_state=4))
    # The saved random_state seeds a loaded augmenter's own stream.
    np.testing.assert_array_equal(type(augmenter).from_pretrained(tmp_path)(TILES), loaded(TILES))


def test_a_stain_augmenter_of_a_method_name_saves_the_name(tmp_path):
    augmenter = StainAugmenter("vahadane", sigma1=0.1, random_state=0).fit(TILES)
    assert augmenter.lambda1_ > 0  # Vahadane's penalty, not Macenko's 0
    augmenter.save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["params"]["normalizer"] == "vahadane" and not config["unsaved"]
    loaded = StainAugmenter.from_pretrained(tmp_path)
    assert loaded.normalizer == "vahadane"
    assert_same_state(augmenter, loaded)
    with pytest.raises(ValueError, match="normalizer: expected one of"):
        StainAugmenter("reinhard").fit(TILES)


def test_an_object_normalizer_is_saved_as_null_with_a_note(tmp_path):
    augmenter = make("stains-macenko")
    augmenter.save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert config["params"]["normalizer"] is None
    assert "MacenkoNormalizer" in config["unsaved"]["normalizer"]


def test_overrides_apply_except_the_fitted_spaces(tmp_path):
    augmenter = RandStainNA(spaces=("lab", "hed"), random_state=0).fit(TILES)
    augmenter.save_pretrained(tmp_path)
    loaded = RandStainNA.from_pretrained(tmp_path, p=0.5, random_state=9)
    assert loaded.p == 0.5 and loaded.random_state == 9 and loaded.spaces_ == ("lab", "hed")
    with pytest.raises(ValueError, match="spaces: the RandStainNA .* was fitted with"):
        RandStainNA.from_pretrained(tmp_path, spaces="lab")


def test_loading_as_the_wrong_kind_is_refused(tmp_path):
    HEDJitter().save_pretrained(tmp_path / "hed")
    stainstyle.GrayNormalizer().fit(TILES).save_pretrained(tmp_path / "gray")
    with pytest.raises(TypeError, match="holds a HEDJitter, not a StainNormalizer"):
        stainstyle.StainNormalizer.from_pretrained(tmp_path / "hed")
    with pytest.raises(TypeError, match="holds a GrayNormalizer, not an Augmenter"):
        Augmenter.from_pretrained(tmp_path / "gray")
    with pytest.raises(TypeError, match="holds a HEDJitter, not a RandStainNA"):
        RandStainNA.from_pretrained(tmp_path / "hed")


def test_unfitted_augmenters_are_not_saved(tmp_path):
    with pytest.raises(NotFittedError, match="RandStainNA is not fitted"):
        RandStainNA().save_pretrained(tmp_path / "r")
    with pytest.raises(NotFittedError, match="StainAugmenter is not fitted"):
        StainAugmenter().save_pretrained(tmp_path / "s")
    HEDJitter().save_pretrained(tmp_path / "h")  # nothing to fit
    assert isinstance(load(tmp_path / "h"), HEDJitter)


def test_the_model_card_shows_how_to_augment(tmp_path):
    make("randstainna").save_pretrained(
        tmp_path, model_card_kwargs={"training_data": "6 synthetic tiles"}
    )
    card = (tmp_path / CARD_NAME).read_text()
    assert "stainstyle augment --model" in card and "augmenter(tiles)" in card
    assert "transform(tiles)" not in card and "6 synthetic tiles" in card
    assert "- randstainna" in card  # the Hub tag
