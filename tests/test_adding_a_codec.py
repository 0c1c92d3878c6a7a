"""A codec with a parameter is one module: registered, its parameter becomes a validated run-config key,
and a whole run uses it, bytes measured from its arrays. The codec is the one README "Adding a codec" shows."""

from dataclasses import dataclass

import numpy as np
import pytest
from conftest import REPO, tiny_config

from fedras_flwr.codecs import (
    Codec,
    CodecParams,
    ItemUpdate,
    available_codecs,
    parameter,
    unregister_codec,
)
from fedras_flwr.config import ConfigError, RunConfig, flat_defaults
from fedras_flwr.tooling.experiments import read_rounds
from fedras_flwr.tooling.inprocess import run_inprocess


def readme_codec_source() -> str:
    """The python block of the README's "Adding a codec" section: the test runs exactly what it shows."""
    section = (REPO / "README.md").read_text().split("## Adding a codec", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def halves():
    """The README's codec, registered for one test only (the run-config of the other tests must not see it)."""
    namespace = {
        "dataclass": dataclass, "np": np, "Codec": Codec, "CodecParams": CodecParams, "ItemUpdate": ItemUpdate,
        "parameter": parameter,
    }
    exec(compile(readme_codec_source(), "README.md", "exec"), namespace)  # noqa: S102 - our own README
    yield namespace["HalvesCodec"]
    unregister_codec("halves")
    assert "halves" not in available_codecs() and "halves-dtype" not in flat_defaults()


def test_a_registered_codec_brings_its_parameter_as_a_checked_key(halves):
    assert "halves" in available_codecs() and flat_defaults()["halves-dtype"] == "float16"
    cfg = RunConfig.from_flat({"codec": "halves", "halves-dtype": "float32"})
    assert cfg.codec_params().halves_dtype == "float32"
    with pytest.raises(ConfigError, match="halves-dtype must be one of"):
        RunConfig.from_flat({"codec": "halves", "halves-dtype": "float64"})


def test_a_registered_codec_runs_end_to_end(halves, tmp_path):
    summaries = {}
    for dtype in ("float16", "float32"):
        cfg = tiny_config(tmp_path / dtype, codec="halves", halves_dtype=dtype, num_server_rounds=2, eval_every=2)
        summaries[dtype] = run_inprocess(cfg)
    sparse = run_inprocess(tiny_config(tmp_path / "sparse", codec="sparse", num_server_rounds=2, eval_every=2))
    # float32 rows + int32 ids are the sparse reference's layout, byte for byte; float16 halves the rows
    assert summaries["float32"]["total-up-bytes"] == sparse["total-up-bytes"]
    assert summaries["float32"]["final"] == sparse["final"]
    # float16 rows weigh 2 bytes less per value than float32 ones, headers equal: exactly 2 x d per touched row
    rows = sum(r["touched-rows"] * r["uploads"] for r in read_rounds(summaries["float16"]["out-dir"]) if "uploads" in r)
    saved = summaries["float32"]["total-up-bytes"] - summaries["float16"]["total-up-bytes"]
    assert rows > 0 and saved == pytest.approx(2 * 8 * rows)
