"""The demo reuses its benchmark only when it is the one asked for."""

import json

import pytest

from datp.data.synthetic import recorded
from datp.engine.demo import TINY, run_demo
from datp.engine.synthetic_runs import synth_config
from datp.errors import InputError


def test_a_benchmark_of_another_size_or_seed_is_refused_not_reused(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "synth.json").write_text(json.dumps(recorded(synth_config(TINY, seed=1))))
    with pytest.raises(InputError, match=r"data holds a synthetic benchmark made with other "
                                         r"settings \(seed\)"):
        run_demo(tmp_path, size=TINY, seed=0)
    assert not (tmp_path / "average").exists()  # refused before any training
