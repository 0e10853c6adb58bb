"""The one registry type: unknown names in one line, no name twice, lazy targets imported on first lookup."""

import subprocess
import sys

import pytest

from llmtrunc.errors import LLMTruncError
from llmtrunc.registry import Registry
from llmtrunc.reports import BUILDERS, READS


def test_a_lazy_target_is_imported_on_its_first_lookup_and_kept():
    registry = Registry("thing")
    registry.register("now", 1)
    registry.register_lazy("later", "json:dumps")
    assert list(registry) == ["now", "later"] and "later" in registry
    import json

    assert registry.get("later") is json.dumps and registry.find("later") is json.dumps
    assert dict(registry.items()) == {"now": 1, "later": json.dumps}


def test_names_are_registered_once_and_unknown_ones_listed():
    registry = Registry("thing")
    registry.register_lazy("a", "json:dumps")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("a", 2)
    with pytest.raises(ValueError, match="module:attribute"):
        registry.register_lazy("b", "json.dumps")
    with pytest.raises(LLMTruncError, match="unknown thing 'c': choose one of a"):
        registry.get("c")
    assert registry.find("c") is None


def test_the_report_builders_are_the_tracks_and_importing_them_loads_no_track():
    code = ("import sys; from llmtrunc.reports import BUILDERS; "
            "print(sorted(m for m in sys.modules if m.startswith(('llmtrunc.llm', 'llmtrunc.encoder'))))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    assert list(BUILDERS) == list(READS)
    assert all(callable(builder) and builder.__name__ == "build_report" for builder in BUILDERS.values())
