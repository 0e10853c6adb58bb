from fractions import Fraction

import pytest

from llmtrunc.errors import LLMTruncError
from llmtrunc.spec import DropSpec, parse_drop, parse_drops, parse_ratio


@pytest.mark.parametrize("text,value", [("50%", Fraction(1, 2)), ("0.5", Fraction(1, 2)), ("0", 0), ("100%", 1),
                                        ("1", 1), ("12.5%", Fraction(1, 8)), ("0.29", Fraction(29, 100))])
def test_ratio_percent_or_fraction(text, value):
    assert parse_ratio(text) == value


@pytest.mark.parametrize("text", ["150%", "1.5", "-10%", "abc", "", "50%%", "1e-1"])
def test_ratio_out_of_range_or_malformed(text):
    with pytest.raises(LLMTruncError):
        parse_ratio(text)


def test_bare_number_above_one_suggests_a_percent():
    with pytest.raises(LLMTruncError, match=r"did you mean 25%\?"):
        parse_ratio("25")


def test_halves_of_even_and_odd_sizes():
    assert parse_drop("first-half").mask(8).dropped == (0, 1, 2, 3)
    assert parse_drop("last-half").mask(8).dropped == (4, 5, 6, 7)
    # odd d: floor(d/2) dropped, so first-half and last-half are mirror images of equal size
    assert parse_drop("first-half").mask(7).dropped == (0, 1, 2)
    assert parse_drop("last-half").mask(7).dropped == (4, 5, 6)
    assert parse_drop("last-half").name == "last:50%"


def test_exact_rational_counts():
    # 0.29 * 100 is 28.999... in floating point; the spec must still drop 29
    assert len(parse_drop("first:0.29").mask(100).dropped) == 29
    assert len(parse_drop("random:0.29@1").mask(100).dropped) == 29
    assert parse_drop("last:10%").mask(384).dropped[0] == 384 - 38


def test_zero_and_full():
    assert parse_drop("first:0").mask(10).dropped == ()
    assert parse_drop("random:0%").mask(10).dropped == ()
    assert parse_drop("last:100%").mask(5).dropped == (0, 1, 2, 3, 4)
    assert parse_drop("random:1").mask(5).dropped == (0, 1, 2, 3, 4)
    assert parse_drop("none").mask(5).dropped == ()


def test_random_is_seeded_sorted_and_distinct():
    a = parse_drop("random:50%@3").mask(576).dropped
    assert a == parse_drop("random:50%", seed=3).mask(576).dropped
    assert a != parse_drop("random:50%@4").mask(576).dropped
    assert list(a) == sorted(set(a)) and len(a) == 288
    assert parse_drop("random:50%").seed == 0
    assert parse_drop("random:50%@3").name == "random:50%@3"
    assert parse_drop("random:50%@3").family == "random:50%"


def test_indices_file(tmp_path):
    f = tmp_path / "dims.txt"
    f.write_text("5, 1\n3 3\n")
    assert parse_drop(f"indices:{f}").mask(8).dropped == (1, 3, 5)
    j = tmp_path / "dims.json"
    j.write_text("[0, 7]")
    assert parse_drop(f"indices:{j}").mask(8).dropped == (0, 7)
    with pytest.raises(LLMTruncError, match="out of range"):
        parse_drop(f"indices:{f}").mask(4).dropped
    with pytest.raises(LLMTruncError, match="not found"):
        parse_drop(f"indices:{tmp_path}/missing.txt").mask(4).dropped
    (tmp_path / "bad.txt").write_text("1 x")
    with pytest.raises(LLMTruncError, match="integers"):
        parse_drop(f"indices:{tmp_path}/bad.txt").mask(4).dropped


@pytest.mark.parametrize("text", ["half", "first", "first:", "last:abc", "first:50%@2", "random:50%@x", "none:3", "random:200%"])
def test_malformed_specs(text):
    with pytest.raises(LLMTruncError):
        parse_drop(text)


def test_pca_is_encoder_only():
    spec = parse_drop("pca:25%")
    assert spec.n_drop(384) == 96
    with pytest.raises(LLMTruncError, match="encoder"):
        spec.mask(384).dropped


def test_parse_drops_comma_repeat_and_seeds():
    specs = parse_drops(["none,first-half", "random:50%", "random:10%@9"], seeds=[0, 1])
    assert [s.name for s in specs] == ["none", "first:50%", "random:50%@0", "random:50%@1", "random:10%@9"]
    assert parse_drops("last-half,last:50%") == [DropSpec("last", Fraction(1, 2))]
