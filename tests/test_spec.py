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


# Profile-based specs, resolved against a hand-made profile of d = 20: dims 7 and 13 are the outliers
# (means +-100, the others 0: std of the means sqrt(1000) = 31.6, so 3 std = 94.9 < 100).
MEAN = [0.0] * 20
MEAN[7], MEAN[13] = 100.0, -100.0
# mean |activation|; descending: 50(7) 50(13) 9(4) 8(15) 7(14) 6(12) 5(17) 4(8) 4(9) 3(0) 3(2) 2(5) ...
MEAN_ABS = [3, 1, 3, 0, 9, 2, 2, 50, 4, 4, 1, 0, 6, 50, 7, 8, 1, 5, 2, 0]


@pytest.fixture
def profile():
    from llmtrunc.profile import Profile

    return Profile(MEAN, MEAN_ABS, {"source": "hand"})


@pytest.mark.parametrize("text,name", [("outliers", "outliers"), ("top:40%", "top:40%"), ("bottom:0.25", "bottom:25%"),
                                       ("random:50%!outliers", "random:50%!outliers@0"),
                                       ("random:50%!outliers@3", "random:50%!outliers@3"),
                                       ("random:outliers", "random:outliers@0"), ("random:outliers@2", "random:outliers@2"),
                                       ("random:outliers!outliers@1", "random:outliers!outliers@1")])
def test_profile_spec_names(text, name):
    spec = parse_drop(text)
    assert spec.name == name and spec.needs_profile
    assert parse_drop(spec.name) == spec  # the canonical name parses back to the same spec


def test_families_and_record_kinds_keep_the_new_variants_apart():
    assert parse_drop("random:50%!outliers@3").family == "random:50%!outliers"
    assert [parse_drop(t).variant for t in ("random:50%@3", "random:50%!outliers@3", "random:outliers@3",
                                            "outliers", "top:10%", "first:10%")] == [
        "random", "random!outliers", "random:outliers", "outliers", "top", "first"]
    assert not any(parse_drop(t).needs_profile for t in ("none", "first:10%", "random:10%@1", "pca:10%"))


@pytest.mark.parametrize("text,message", [
    ("outliers:3", "takes no argument"), ("top:50%@2", "only random takes"), ("bottom:50%!outliers", "only random takes"),
    ("random:50%!first", "avoid only the outliers"), ("random:50%@1!outliers", "random:K!outliers@SEED"),
    ("top", "needs an argument"), ("top:150%", "outside 0-100%"), ("random:outlier", "malformed ratio"),
    ("outlier", "malformed drop spec")])
def test_malformed_profile_specs(text, message):
    with pytest.raises(LLMTruncError, match=message):
        parse_drop(text)


def test_exact_indices_of_each_profile_spec(profile):
    assert parse_drop("outliers").mask(20, profile).dropped == (7, 13)
    assert parse_drop("top:40%").mask(20, profile).dropped == (4, 7, 8, 12, 13, 14, 15, 17)  # 4(8) before 4(9)
    assert parse_drop("top:10%").mask(20, profile).dropped == (7, 13)
    assert parse_drop("bottom:25%").mask(20, profile).dropped == (1, 3, 10, 11, 19)  # 0(3) 0(11) 0(19) 1(1) 1(10)
    assert parse_drop("bottom:0").mask(20, profile).dropped == ()
    # as many random dims as outliers: the same draw as random:K@S with floor(K*d) = 2
    assert parse_drop("random:outliers@5").mask(20, profile).dropped == parse_drop("random:10%@5").mask(20).dropped


def test_random_avoiding_outliers_is_the_same_draw_with_the_outliers_skipped(profile):
    import numpy as np

    for seed in range(20):
        avoiding = parse_drop(f"random:50%!outliers@{seed}").mask(20, profile).dropped
        assert not set(avoiding) & {7, 13} and len(avoiding) == 10
        order = [int(i) for i in np.random.default_rng(seed).permutation(20) if i not in (7, 13)]
        assert avoiding == tuple(sorted(order[:10]))
        assert set(parse_drop(f"random:50%@{seed}").mask(20).dropped) - {7, 13} <= set(avoiding)
        assert avoiding == parse_drop(f"random:50%!outliers@{seed}").mask(20, profile).dropped  # deterministic
    assert parse_drop("random:50%!outliers@0").mask(20, profile) != parse_drop("random:50%!outliers@1").mask(20, profile)
    control = parse_drop("random:outliers!outliers@4").mask(20, profile).dropped
    assert len(control) == 2 and not set(control) & {7, 13}


def test_profile_specs_refuse_without_a_matching_profile(profile):
    with pytest.raises(LLMTruncError, match="needs an activation profile"):
        parse_drop("outliers").mask(20)
    with pytest.raises(LLMTruncError, match="needs an activation profile"):
        parse_drop("random:outliers").n_drop(20)  # counted by the profile
    with pytest.raises(LLMTruncError, match="profile has 20 dimensions"):
        parse_drop("top:10%").mask(24, profile)
    with pytest.raises(LLMTruncError, match="needs 19 dimensions but only 18 of 20"):
        parse_drop("random:95%!outliers").mask(20, profile)
    assert parse_drop("top:10%").n_drop(20) == parse_drop("random:10%!outliers").n_drop(20) == 2  # a ratio counts alone
    assert parse_drop("random:outliers").n_drop(20, profile) == 2


def test_bare_top_bottom_and_random_avoiding_outliers_cross_the_k_grid():
    from llmtrunc.spec import expand_grid

    names = [s.name for s in expand_grid(["top,bottom", "random!outliers", "outliers"], ["10%", "50%"], [0, 1])]
    assert names == ["none", "top:10%", "top:50%", "bottom:10%", "bottom:50%", "random:10%!outliers@0",
                     "random:10%!outliers@1", "random:50%!outliers@0", "random:50%!outliers@1", "outliers"]
    with pytest.raises(LLMTruncError, match="needs a K grid"):
        expand_grid(["top"])


def test_one_k_grammar_for_grids_and_attribution_selections():
    import argparse

    from llmtrunc.commands.options import add_selection_options, selection_options
    from llmtrunc.selection import n_drop
    from llmtrunc.spec import k_percent, parse_k_list

    parser = argparse.ArgumentParser()
    add_selection_options(parser)
    for text, ks in (("10,20,...,90", list(range(10, 100, 10))), ("10-12", [10, 11, 12]), ("25%,50%", [25, 50]),
                     ("12.5,25", [12.5, 25])):
        assert selection_options(parser.parse_args(["--k", text]))[0] == ks
        assert [k_percent(k) for k in parse_k_list(text)] == ks  # the grid's parser, read as percents
    assert isinstance(k_percent("25%"), int)  # keys and records hold 25, as before
    assert n_drop(384, 12.5) == parse_drop("random:12.5%").n_drop(384) == 48
    for bad in ("0,50", "100", "150"):
        with pytest.raises(LLMTruncError):
            selection_options(parser.parse_args(["--k", bad]))
