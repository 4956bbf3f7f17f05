"""Feature stores read together for training: sizes checked, ids found in any store, padding and masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tasks.features import FeatureLookupError, RegionFeatures

from .conftest import BOXES, DIM, write_synthetic_store


def test_records_come_padded_with_normalized_boxes_from_whichever_store_holds_them(tmp_path):
    first = write_synthetic_store(tmp_path / "a.h5", {"x": 0, "y": 1})
    second = write_synthetic_store(tmp_path / "b.h5", {"y": 2, "z": 3}, seed=5)
    lookup = RegionFeatures([first, second])
    assert len(lookup) == 3 and lookup.duplicates == 1 and "z" in lookup and "w" not in lookup
    assert (lookup.feature_dim, lookup.max_boxes) == (DIM, BOXES)
    from extract.store import FeatureStore

    with FeatureStore(first) as store:
        stored = store["y"]  # "y" is read from the first store that holds it
    regions = lookup["y"]
    assert regions.features.dtype == torch.float32
    np.testing.assert_array_equal(regions.features.numpy(), stored.features.astype(np.float32))
    np.testing.assert_array_equal(regions.boxes.numpy(), stored.boxes / np.float32(320))
    assert regions.mask.tolist() == [1] * BOXES
    with pytest.raises(FeatureLookupError, match=r"image 'w' is in none of the feature stores"):
        lookup["w"]


def test_stores_of_other_feature_or_box_sizes_are_refused_naming_both(tmp_path):
    first = write_synthetic_store(tmp_path / "a.h5", {"x": 0})
    wider = write_synthetic_store(tmp_path / "wide.h5", {"y": 0}, dim=DIM + 8)
    more = write_synthetic_store(tmp_path / "more.h5", {"z": 0}, boxes=BOXES + 2)
    with pytest.raises(FeatureLookupError, match=rf"a\.h5 and .*wide\.h5 hold features of different sizes \({DIM} and"):
        RegionFeatures([first, wider])
    with pytest.raises(FeatureLookupError, match=rf"hold up to {BOXES} and {BOXES + 2} boxes per image"):
        RegionFeatures([first, more])
    with pytest.raises(FeatureLookupError, match="does not exist"):
        RegionFeatures([tmp_path / "missing.h5"])
