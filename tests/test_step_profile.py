"""benchmarks/step_profile.py: operator shares of a profiled training step."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from step_profile import operator_shares  # noqa: E402


def event(key: str, microseconds: float, count: int = 1) -> SimpleNamespace:
    return SimpleNamespace(key=key, self_cpu_time_total=microseconds, count=count)


def test_operator_shares_by_hand():
    events = [event("aten::mm", 2e6, 40), event("aten::_scaled_dot_product_flash_attention"
                                                 "_for_cpu_backward", 5e6, 3),
              event("aten::_scaled_dot_product_flash_attention_for_cpu", 2e6, 3),
              event("aten::add", 1e6, 90)]
    table, attention = operator_shares(events, top=2)
    assert attention == pytest.approx(0.7)
    assert [row["operator"] for row in table] == [
        "aten::_scaled_dot_product_flash_attention_for_cpu_backward", "aten::mm"]
    assert table[0] == {"operator": table[0]["operator"], "self_cpu_s": 5.0, "share": 0.5,
                        "calls": 3}
    assert table[1]["share"] == pytest.approx(0.2)
