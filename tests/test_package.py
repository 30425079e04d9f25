"""Package-level contracts: layering (the core needs no torch), lazy sbi names, registry, version."""

from __future__ import annotations

import subprocess
import sys

import pytest

import dic_sbi


def test_core_imports_without_torch():
    code = ("import sys, dic_sbi, dic_sbi.core, dic_sbi.spiketrains, dic_sbi.io; "
            "print(*(m in sys.modules for m in ('torch', 'sbi', 'zarr', 'dask')))")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False"] * 4


def test_sbi_names_are_reachable_from_the_top_level():
    from dic_sbi import sbi

    from dic_sbi import campaign

    for name in dic_sbi._SBI_NAMES:
        assert getattr(dic_sbi, name) is getattr(sbi, name)
    for name in dic_sbi._CAMPAIGN_NAMES:
        assert getattr(dic_sbi, name) is getattr(campaign, name)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        dic_sbi.nope  # noqa: B018


def test_registry():
    assert dic_sbi.available_models() == ("da", "stg")
    assert dic_sbi.get_model("STG") is dic_sbi.get_model("stg")
    with pytest.raises(dic_sbi.InvalidInputError, match="already registered"):
        dic_sbi.register_model(dic_sbi.get_model("stg"))
    assert isinstance(dic_sbi.__version__, str)
