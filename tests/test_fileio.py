"""Atomic output files and the up-front output-path check, alone and through the commands."""

from __future__ import annotations

import os
import time

import pytest

from moe2_cli.errors import UsageError
from moe2_cli.fileio import (
    STALE_AFTER_S,
    atomic_output,
    check_writable,
    is_temporary,
    remove_leftovers,
    write_atomic,
)


def leftovers(directory) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_atomic_write_replaces_the_file_whole(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_atomic(target, "new content")
    assert target.read_text() == "new content"
    assert leftovers(tmp_path) == ["out.txt"]


@pytest.mark.parametrize("interrupt", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failure_midway_leaves_the_old_file_and_no_temporary(tmp_path, interrupt):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(type(interrupt)):
        with atomic_output(target, "wb") as stream:
            stream.write(b"partial" * 1000)
            raise interrupt
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["out.bin"]


def test_a_failure_midway_leaves_no_file_when_there_was_none(tmp_path):
    with pytest.raises(UsageError, match="No space left"), atomic_output(tmp_path / "new.txt") as stream:
        stream.write("x")
        raise OSError(28, "No space left on device")
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("make, needle", [
    (lambda d: d, "is a directory"),
    (lambda d: d / "missing" / "x.png", "does not exist"),
    (lambda d: (d / "file").write_text("") or d / "file" / "x.png", "parent that is a file"),
    (lambda d: d / ("x" * 300 + ".png"), "longer than"),
])
def test_unwritable_paths_are_one_clear_line(tmp_path, make, needle):
    with pytest.raises(UsageError) as err:
        check_writable(make(tmp_path), "--plot")
    assert needle in str(err.value) and str(err.value).startswith("--plot ")
    assert "\n" not in str(err.value)


def test_synth_interrupted_midway_leaves_the_old_file(run_cli, tmp_path, monkeypatch):
    from moe2_cli.outcomes import native

    target = tmp_path / "out.jsonl.gz"
    target.write_bytes(b"old")

    def failing_writer(outcomes, stream):
        stream.write("{" * 100_000)
        raise KeyboardInterrupt

    monkeypatch.setattr(native, "_write_jsonl", failing_writer)
    result = run_cli("synth", "--queries", "50", "--out", target)
    assert result.exit_code == 130, result.output
    assert target.read_bytes() == b"old"
    assert leftovers(tmp_path) == ["out.jsonl.gz"]


def test_synth_on_a_full_disk_is_exit_2_and_leaves_nothing(run_cli, tmp_path, monkeypatch):
    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    result = run_cli("synth", "--queries", "50", "--out", tmp_path / "out.csv")
    assert result.exit_code == 2, result.output
    assert "No space left on device" in result.stderr and "Traceback" not in result.stderr
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("args", [
    ("stats", "simulate", "-n", "10", "--out", "{dir}"),
    ("stats", "simulate", "-n", "10", "--out", "{dir}/missing/s.csv"),
    ("gating", "train", "--queries", "200", "--out", "{dir}"),
    ("gating", "train", "--queries", "200", "--out", "{dir}/missing/gate.npz"),
    ("synth", "--queries", "10", "--out", "{dir}/missing/o.jsonl"),
    ("frontier", "--sweep", "energy=100:200:100", "--plot", "{dir}/missing/f.png"),
    ("stats", "rates", "--reps", "1", "--plot", "{dir}/missing/r.png"),
])
def test_unwritable_outputs_are_refused_before_any_work(run_cli, tmp_path, args):
    result = run_cli(*(a.format(dir=tmp_path) for a in args))
    assert result.exit_code == 2, result.output
    assert str(tmp_path) in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert leftovers(tmp_path) == []


def test_stats_simulate_streams_its_output_whole(run_cli, tmp_path):
    from moe2_cli.stats.samples import load_samples

    out = tmp_path / "s.csv"
    result = run_cli("stats", "simulate", "-n", "70000", "--seed", "3", "--out", out)
    assert result.exit_code == 0, result.output
    X, Y = load_samples(out)
    assert X.shape[0] == Y.shape[0] == 70000
    assert leftovers(tmp_path) == ["s.csv"]


def _aged(path, seconds: float):
    stamp = path.stat().st_mtime - seconds
    os.utime(path, (stamp, stamp), follow_symlinks=False)
    return path


def test_a_write_removes_what_a_killed_writer_left_an_hour_ago_and_nothing_else(run_cli, tmp_path):
    left = tmp_path / ".moe2-k1ll3d_x.tmp"
    left.write_bytes(b"half a file")
    _aged(left, STALE_AFTER_S + 60)
    young = tmp_path / ".moe2-runn1ng0.tmp"
    young.write_bytes(b"another process is writing this")
    other = tmp_path / ".moe2-notes-of-mine.tmp"
    other.write_text("not ours")
    _aged(other, STALE_AFTER_S * 5)
    folder = tmp_path / ".moe2-abcdefgh.tmp.d"
    folder.mkdir()
    link = tmp_path / ".moe2-l1nk0000.tmp"
    link.symlink_to(other)
    _aged(link, STALE_AFTER_S * 5)
    result = run_cli("synth", "--queries", "20", "--out", tmp_path / "out.jsonl")
    assert result.exit_code == 0, result.output
    assert leftovers(tmp_path) == sorted([".moe2-abcdefgh.tmp.d", ".moe2-l1nk0000.tmp", ".moe2-notes-of-mine.tmp",
                                          ".moe2-runn1ng0.tmp", "out.jsonl"])


def test_a_leftover_is_what_mkstemp_names_and_only_that(tmp_path):
    with atomic_output(tmp_path / "x.txt") as stream:
        made = [p for p in tmp_path.iterdir() if p.name != "x.txt"]
        stream.write("x")
    assert len(made) == 1 and is_temporary(made[0])
    for name in (".moe2-abc.tmp", ".moe2-abcdefgh.tmp.bak", "moe2-abcdefgh.tmp", made[0].name):
        (tmp_path / name).write_text("x")
        stamp = time.time() - 2 * STALE_AFTER_S
        os.utime(tmp_path / name, (stamp, stamp))
    assert remove_leftovers(tmp_path) == 1
    assert leftovers(tmp_path) == sorted([".moe2-abc.tmp", ".moe2-abcdefgh.tmp.bak", "moe2-abcdefgh.tmp", "x.txt"])
    assert remove_leftovers(tmp_path / "missing") == 0
