"""The folder record of ``datp features``: a folder's settings are known, or it is not resumed."""

import numpy as np
import pytest

from datp.errors import InputError
from datp.features.storage import folder_settings, record_folder, write_features

SETTINGS = {"backbone": {"name": "b"}, "grid": {"stride": 1}}


def test_feature_files_without_the_folder_record_are_not_resumed(tmp_path):
    out = tmp_path / "features"
    record_folder(out, SETTINGS)
    write_features(out / "Class" / "v_1.npy", np.ones((3, 4), np.float32),
                   {"settings": SETTINGS, "times": [0, 1, 2], "duration": 3}, dtype="float32")
    record_folder(out, SETTINGS)  # resuming with the same settings
    with pytest.raises(InputError, match="other settings|settings"):
        record_folder(out, {**SETTINGS, "grid": {"stride": 2}})
    (out / "datp_features.json").unlink()  # the record lost: what made v_1 is unknown now
    with pytest.raises(InputError, match=r"features: holds feature files \(Class/v_1.npy, "
                                         r"\.\.\.\) but not the folder's record"):
        record_folder(out, {**SETTINGS, "grid": {"stride": 2}})
    assert folder_settings(out) is None
    record_folder(tmp_path / "new", SETTINGS)  # a new or empty folder is recorded
    assert folder_settings(tmp_path / "new") == SETTINGS
