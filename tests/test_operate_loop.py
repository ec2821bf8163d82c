"""The operation loop end to end, as examples/operate_loop.py runs it: measure, select, serve
with a request log and shadow traffic, score, a drift check before (exit 0) and after (exit 1)
an expert breaks, a re-plan to another selection, and a live reload under 25 requests a second
with no failed request."""

from __future__ import annotations

import importlib.util
import sys

from tests.conftest import ROOT


def _loop_module():
    spec = importlib.util.spec_from_file_location("operate_loop", ROOT / "examples" / "operate_loop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_loop_notices_drift_replans_and_reloads_without_a_failed_request(tmp_path, capsys):
    loop = _loop_module()
    code = loop.main(["--work", str(tmp_path)])
    out = capsys.readouterr()
    assert code == 0, out.err
    lines = out.out.splitlines()
    assert [line.split(".", 1)[0] for line in lines[:6]] == ["1", "2", "3", "4", "5", "6"], out.out
    assert "exit 0 (no drift)" in lines[2] and "exit 1 (drift)" in lines[3]
    assert "0 failed" in lines[5]
    first = loop.selection(tmp_path / "first-plan.json")
    second = loop.selection(tmp_path / "second-plan.json")
    broken = next(e for e in first if e.endswith("/" + loop.BROKEN[0]))
    assert broken in first and broken not in second
    # The log holds the shadow answers that let the re-plan see the experts outside the route.
    log = (tmp_path / "log" / "requests.jsonl").read_text(encoding="utf-8")
    assert '"shadow": true' in log
