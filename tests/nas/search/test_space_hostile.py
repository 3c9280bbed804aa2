"""Space files that would burn a budget or a machine: each refused at load with one line naming the file and key.
A fuzz test throws generated malformed spaces at ``nas validate`` (exit 2, one line, no traceback)."""

from __future__ import annotations

import contextlib
import io
import textwrap

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.cli import main
from nas.space import SpaceError, load_space

BASE = """\
name: tiny
model: {ref: compact:ConvOps-S, input: [1, 8, 8]}
data: {name: synthetic, options: {num_samples: 64, num_classes: 3, channels: 1, size: 8}}
train: {epochs: 1}
operators:
  choices:
    conv: {}
    weighted: {density: {low: 0.6, high: 1.4}}
    dcls: {kernel_count: {low: 4, high: 8}}
objectives: [accuracy, {flops: minimize}]
"""


def write(tmp_path, text: str) -> str:
    path = tmp_path / "space.yaml"
    path.write_text(textwrap.dedent(text))
    return str(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("operators.choices.weighted.density={choices: []}", r"density\.choices: an empty list of choices"),
        ("operators.choices.weighted.density={low: 0.5, high: 1.5, step: 0}", r"step must be > 0"),
        ("operators.choices.dcls.kernel_count={low: 4, high: 8, step: 0.5}", r"step must be a whole number"),
        ("scaling={factor: [.nan]}", r"scaling\.factor: expected finite positive numbers"),
        ("scaling={factor: [.inf]}", r"scaling\.factor: expected finite positive numbers"),
        ("train.lr=.nan", r"train\.lr: must be a finite number > 0"),
        ("train.weight_decay=-1", r"train\.weight_decay: must be a finite number >= 0"),
        ("constraints={flops: {min: 1.0e12, max: 10}}", r"min 1e\+12 > max 10, nothing is feasible"),
        ("constraints={flops: {max: .inf}}", r"constraints\.flops\.max: must be a finite number"),
        ("name=..", r"name: use letters"),
        ("name=.", r"name: use letters"),
    ],
)
def test_a_space_that_would_fail_every_trial_is_refused(tmp_path, override, message):
    with pytest.raises(SpaceError, match=message):
        load_space(write(tmp_path, BASE), [override])


def test_duplicate_keys_are_an_error_not_the_last_one_wins(tmp_path):
    text = BASE + "train: {epochs: 5}\n"
    with pytest.raises(SpaceError, match=r"space\.yaml:\d+: invalid YAML: duplicate key 'train'"):
        load_space(write(tmp_path, text))


def test_an_alias_bomb_is_refused_quickly(tmp_path):
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
        f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)
    )
    text = bomb + BASE.replace("input: [1, 8, 8]}", "input: [1, 8, 8], kwargs: {widths: *i}}")
    assert yaml.safe_load(text)["model"]["kwargs"]  # the file is valid YAML: 10^9 values once expanded
    with pytest.raises(SpaceError, match=r"more than 100,000 values once YAML aliases are expanded"):
        load_space(write(tmp_path, text))


def test_a_huge_or_binary_file_is_refused(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(BASE + "# " + "x" * 1_100_000 + "\n")
    with pytest.raises(SpaceError, match=r"over the 1,000,000-byte limit"):
        load_space(str(path))
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 10)
    with pytest.raises(SpaceError, match=r"not a text file"):
        load_space(str(path))


# -- fuzz: nas validate on generated malformed spaces --------------------------------------------------------
def _mutations() -> st.SearchStrategy[str]:
    """The base space with one key set to an arbitrary (mostly wrong) YAML value."""
    keys = st.sampled_from(
        [
            "name",
            "model.ref",
            "model.input",
            "data.val_fraction",
            "train.epochs",
            "train.lr",
            "train.batch_size",
            "operators.granularity",
            "operators.choices.weighted.density",
            "operators.choices.dcls.kernel_count",
            "scaling.factor",
            "scaling.rule",
            "objectives",
            "constraints",
            "search.trials",
            "search.sampler",
            "search.early_stopping",
            "latency",
        ]
    )
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**12), 10**12),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
    )
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
        max_leaves=6,
    )
    return st.tuples(keys, values)


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(mutation=_mutations())
def test_fuzzed_spaces_get_one_line_and_exit_2(tmp_path, mutation):
    key, value = mutation
    data = yaml.safe_load(BASE)
    target = data
    *parents, last = key.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[last] = value
    path = tmp_path / "fuzz.yaml"
    path.write_text(yaml.safe_dump(data))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path), "--no-data"])
    if code == 0:
        return  # some generated values are valid
    lines = [line for line in err.getvalue().splitlines() if line.strip()]
    assert code == 2, (key, value, err.getvalue())
    assert len(lines) == 1 and "Traceback" not in err.getvalue(), (key, value, err.getvalue())
