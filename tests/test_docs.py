"""The README's lists of config options are the options conf/ has."""

from __future__ import annotations

import re

import pytest
from conftest import CONF, ROOT


def readme_groups() -> dict[str, set[str]]:
    """Each config group's options as the README's "config groups" sentence lists them."""
    text = " ".join((ROOT / "README.md").read_text().split())
    sentence = text[text.index("The config groups are") :].split(". ")[0]
    groups = {}
    for group, options in re.findall(r"`(\w+)` \(([^)]*)\)", sentence):
        groups[group] = set(re.findall(r"\b[a-z][a-z0-9_]*\b", options))
    return groups


@pytest.mark.parametrize("group", ["cell", "task", "optimizer", "hardware", "logger", "sweep"])
def test_readme_lists_every_option_of_each_config_group(group):
    options = {p.stem for p in (CONF / group).glob("*.yaml")}
    assert options, group
    assert options <= readme_groups()[group], options - readme_groups()[group]
