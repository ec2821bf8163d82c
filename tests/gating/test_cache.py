"""The gate cache cannot lie: every entry names its key and checks its payload, a damaged one is
recomputed with one warning, a folder others can write is never read, one that cannot be
written costs only speed, and the least recently used entries go when the cap is reached."""

from __future__ import annotations

import errno
import io
import os
import shutil
import warnings

import numpy as np
import pytest

from moe2_cli import cachedir
from moe2_cli.errors import Moe2Warning, UsageError
from moe2_cli.fingerprint import source_fingerprint
from moe2_cli.gating.cache import GateCache, entry_key, pack, unpack
from moe2_cli.gating.pipeline import gate_settings, out_of_fold, scenario_outcomes, train_deployed
from moe2_cli.scenario.scenario import load_scenario

AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="module")
def table():
    return scenario_outcomes(load_scenario(None), queries=300, seed=0)


@pytest.fixture(scope="module")
def truth(table):
    return out_of_fold(table, 2, folds=2, use_cache=False)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(cachedir.CACHE_ENV, str(folder))
    return folder


def fit(table):
    return out_of_fold(table, 2, folds=2)


def same(a, b) -> bool:
    return all(x.tobytes() == y.tobytes() for x, y in ((a.rows, b.rows), (a.logits, b.logits), (a.fold, b.fold)))


def entries(folder):
    return sorted(folder.glob("*.entry"))


def moe2_warnings(run) -> tuple[object, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what the CLI shows: each distinct message once
        result = run()
    return result, [str(w.message) for w in caught if issubclass(w.category, Moe2Warning)]


def planted(key: str, like) -> bytes:
    """A well-formed entry under ``key`` whose logits are all zero: what a planter would write."""
    buffer = io.BytesIO()
    np.savez(buffer, rows=like.rows, logits=np.zeros_like(like.logits), fold=like.fold)
    return pack(key, buffer.getvalue())


def test_an_entry_names_its_key_and_checks_its_payload():
    data = pack("crossfit-a", b"payload")
    assert unpack("crossfit-a", data) == b"payload"
    for key, bad, reason in [("crossfit-b", data, "another key"), ("crossfit-a", data[:-2], "5 of its 7 bytes"),
                             ("crossfit-a", data[:-1] + b"X", "checksum"), ("crossfit-a", b"", "empty"),
                             ("crossfit-a", b"PK\x03\x04 an npz of layout 1", "no header")]:
        with pytest.raises(Exception, match=reason):
            unpack(key, bad)


def test_a_hit_gives_the_same_bits_without_training(table, truth, folder, monkeypatch):
    assert same(fit(table), truth) and len(entries(folder)) == 1
    monkeypatch.setattr("moe2_cli.gating.pipeline.cross_fit", lambda *a, **k: pytest.fail("the cache should answer"))
    hit, shown = moe2_warnings(lambda: fit(table))
    assert same(hit, truth) and shown == []


def test_a_cached_deployed_gate_scores_like_the_trained_one(table, folder, monkeypatch):
    trained = train_deployed(table, 2)
    monkeypatch.setattr("moe2_cli.gating.gate_router.fit_on", lambda *a, **k: pytest.fail("the cache should answer"))
    cached = train_deployed(table, 2)
    x = trained.featurizer.transform(table)
    assert cached.gate.logits(cached.featurizer.transform(table)).tobytes() == trained.gate.logits(x).tobytes()


@pytest.mark.parametrize("damage", ["truncated", "empty", "one byte flipped"])
def test_a_damaged_entry_is_recomputed_and_overwritten_with_one_warning(table, truth, folder, damage):
    fit(table)
    [path] = entries(folder)
    data = path.read_bytes()
    path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"",
                      "one byte flipped": data[:-1] + bytes([data[-1] ^ 1])}[damage])
    again, shown = moe2_warnings(lambda: fit(table))
    assert same(again, truth)
    assert len(shown) == 1 and path.name in shown[0] and "damaged" in shown[0]
    assert unpack(path.stem, path.read_bytes())  # overwritten whole: the next read is a quiet hit
    assert moe2_warnings(lambda: fit(table))[1] == []


def test_an_entry_copied_under_another_key_is_a_miss(table, truth, folder):
    key = entry_key("crossfit", table, {**gate_settings(table, 2), "folds": 2})  # what fit() asks for
    out_of_fold(table, 2, folds=3)
    [other] = entries(folder)
    shutil.copyfile(other, folder / f"{key}.entry")
    again, shown = moe2_warnings(lambda: fit(table))
    assert same(again, truth) and len(shown) == 1 and "another key" in shown[0]


def test_a_folder_others_can_write_is_never_read(table, truth, folder):
    fit(table)
    [path] = entries(folder)
    path.write_bytes(planted(path.stem, truth))
    folder.chmod(0o777)
    again, shown = moe2_warnings(lambda: fit(table))
    assert same(again, truth)
    assert len(shown) == 1 and "can be written by other users" in shown[0] and "without the cache" in shown[0]
    folder.chmod(0o700)  # the same planted entry in a private folder is read: the check is what refused it
    assert not np.any(fit(table).logits)


def test_a_folder_owned_by_another_user_is_never_read(table, truth, folder, monkeypatch):
    fit(table)
    [path] = entries(folder)
    path.write_bytes(planted(path.stem, truth))
    monkeypatch.setattr(cachedir.os, "getuid", lambda: os.stat(folder).st_uid + 1)
    again, shown = moe2_warnings(lambda: fit(table))
    assert same(again, truth) and len(shown) == 1 and "owned by another user" in shown[0]


def test_a_read_only_folder_costs_a_warning_not_the_answer(table, truth, folder, monkeypatch):
    folder.mkdir(mode=0o500)
    if AS_ROOT:  # root writes into a read-only folder anyway: the write fails as it would for a user

        def refused(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

        monkeypatch.setattr("moe2_cli.gating.cache.replacing", refused)
    again, shown = moe2_warnings(lambda: fit(table))
    assert same(again, truth) and len(shown) == 1 and "cannot be written" in shown[0]


def test_a_full_disk_costs_one_warning_not_the_answer(table, truth, folder, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("moe2_cli.gating.cache.replacing", full)
    (again, _), shown = moe2_warnings(lambda: (fit(table), train_deployed(table, 2)))
    assert same(again, truth) and entries(folder) == []
    assert shown == [f"the cache folder {folder} cannot be written ({os.strerror(errno.ENOSPC)}); "
                     "running without the cache"]


def test_the_least_recently_used_entries_go_first(tmp_path, monkeypatch):
    monkeypatch.setenv(cachedir.MAX_MB_ENV, "0.25")  # room for two of the ~100 kB entries below
    cache = GateCache(root=tmp_path)
    arrays = {"x": np.random.default_rng(0).random(12_500)}
    for age, key in enumerate(["crossfit-a", "crossfit-b"]):
        cache.store_arrays(key, arrays)
        os.utime(tmp_path / f"{key}.entry", ns=(10**9 * (age + 1),) * 2)  # a long time ago, a before b
    assert GateCache(root=tmp_path).load_arrays("crossfit-a") is not None  # a hit makes "a" the most recent
    cache.store_arrays("crossfit-c", arrays)
    assert [p.stem for p in entries(tmp_path)] == ["crossfit-a", "crossfit-c"]


@pytest.mark.parametrize("value", ["-1", "lots", "nan", "inf"])
def test_a_bad_size_cap_is_a_usage_error(monkeypatch, value):
    monkeypatch.setenv(cachedir.MAX_MB_ENV, value)
    with pytest.raises(UsageError, match=f"{cachedir.MAX_MB_ENV} must be"):
        cachedir.max_bytes()


def test_the_key_changes_with_moe2_own_code(table, monkeypatch):
    before = entry_key("crossfit", table, {"folds": 2})
    assert len(source_fingerprint()) == 64
    monkeypatch.setattr("moe2_cli.gating.cache.source_fingerprint", lambda: "0" * 64)
    assert entry_key("crossfit", table, {"folds": 2}) != before
