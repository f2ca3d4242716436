"""The user's labelled data folder: read with or without headers, NaN kept, bad data refused
with a message that says what is wrong; a recorded topic file read as histories."""

import numpy as np
import orjson
import pytest

from omnistream.offline.datasets import DataError, LeftOut, load_dataset, load_folder


def write_entity(root, name, train="a,b\n1,2\n", test="1,2\n", labels="0\n", rows=120):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "train.csv").write_text(train if rows is None else train + "3,4\n" * rows)
    (folder / "test.csv").write_text(test)
    (folder / "test_label.csv").write_text(labels)
    return folder


def test_folder_with_header_and_missing_values(tmp_path):
    write_entity(tmp_path, "web-1", test="1,\nnan,2\n", labels="label\n0\n1\n")
    (series,) = load_dataset(str(tmp_path))
    assert series.entity == "web-1" and series.train.shape == (121, 2)
    assert np.isnan(series.test[0, 1]) and np.isnan(series.test[1, 0])
    assert series.labels.tolist() == [0, 1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(test="1,2,3\n"), "train has 2 metrics, test has 3"),
    (dict(labels="0\n1\n"), "test_label.csv must be one column of 1 rows"),
    (dict(labels="2\n"), "labels must be 0 or 1"),
    (dict(test="1,2\n1,x\n"), "line 2 is not a CSV of numbers"),
    (dict(test="1,2\n1\n"), "different numbers of columns"),
])
def test_bad_data_is_refused_clearly(tmp_path, kwargs, message):
    write_entity(tmp_path, "web-1", **kwargs)
    with pytest.raises(ValueError, match=message):
        load_folder(tmp_path)


def test_one_unreadable_entity_is_left_out_with_its_reason(tmp_path):
    write_entity(tmp_path, "web-1")
    write_entity(tmp_path, "web-2", test="1,2,3\n")
    write_entity(tmp_path, "web-3", labels="7\n")
    with pytest.raises(DataError, match="web-2: train has 2 metrics, test has 3"):
        load_folder(tmp_path)  # strict unless asked to collect
    left_out: list[LeftOut] = []
    (series,) = load_dataset(str(tmp_path), left_out=left_out)
    assert series.entity == "web-1"
    assert [(e.entity, e.kind) for e in left_out] == [("web-2", "data"), ("web-3", "data")]
    assert "test has 3" in left_out[0].reason and "labels must be 0 or 1" in left_out[1].reason
    with pytest.raises(DataError, match="no entity folder could be read"):
        load_folder(tmp_path, ["web-2", "web-3"], [])


def test_missing_split_and_unknown_dataset(tmp_path):
    folder = write_entity(tmp_path, "web-1")
    (folder / "train.csv").unlink()
    with pytest.raises(ValueError, match="missing train.csv"):
        load_folder(tmp_path)
    with pytest.raises(ValueError, match="give asd, smd, nezha, a folder of entity folders or a recorded topic file"):
        load_dataset("no-such-dataset")


def test_the_small_sets_travel_with_the_repository(tmp_path, monkeypatch):
    """ASD and nezha-ob are read from the clone's data/ alone, byte-identical to what
    data/SHA256SUMS records; a set that is not shipped names the variable to set."""
    import hashlib
    from pathlib import Path

    from omnistream.offline.datasets import DatasetMissing, archive_path, load_asd

    monkeypatch.delenv("OMNISTREAM_DATA", raising=False)
    monkeypatch.setenv("OMNISTREAM_CACHE", str(tmp_path / "cache"))  # unpacked afresh, not from an old cache
    sums = dict(line.split()[::-1] for line in Path("data/SHA256SUMS").read_text().splitlines())
    assert set(sums) == {"asd.tar.xz", "nezha-ob.tar.xz"}
    for name, digest in sums.items():
        path = archive_path(name.removesuffix(".tar.xz"))
        assert path == Path.cwd() / "data" / name and hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert {p.name for p in Path("data").iterdir()} >= {"LICENSE.asd", "LICENSE.nezha-ob", "README.md"}
    (omi,) = load_asd(["omi-1"])
    assert omi.train.shape[1] == 19 and len(omi.labels) == len(omi.test) > 0
    monkeypatch.setenv("OMNISTREAM_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DatasetMissing, match="smd.tar.xz not found .* not shipped with the repository.*DATA"):
        archive_path("smd")


def test_nezha_pods_have_their_fault_windows_as_labels():
    from omnistream.offline.datasets import load_nezha

    data = load_nezha()
    assert len(data) == 10 and {s.train.shape[1] for s in data} == {19}
    assert sum(int(s.labels.sum()) for s in data) == 127  # 32 faults of the second day, about 4 rows each
    assert all(len(s.labels) == len(s.test) == 721 for s in data)


def test_recorded_topic_file_is_a_dataset(tmp_path):
    lines = [orjson.dumps({"entity": e, "ts": 1000.0 + i, "metrics": {"cpu": float(i), "mem": None if i == 2 else 1.0}})
             for i in range(5) for e in ("b", "a")]
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"\n".join(reversed(lines)) + b"\n")
    data = load_dataset(str(path))
    assert [s.entity for s in data] == ["a", "b"]
    assert data[0].metrics == ["cpu", "mem"]
    np.testing.assert_array_equal(data[0].train[:, 0], np.arange(5))  # back in time order
    assert np.isnan(data[0].train[2, 1])
    path.write_bytes(b'{"entity": "a"}\n')
    with pytest.raises(ValueError, match="line 1 is not a metric record"):
        load_dataset(str(path))
