"""What every log store must do, run against SQLite and a real PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from logstore_support import assert_same_record, make_record

from keel.errors import LogStoreUnavailable
from keel.logstore import CandidateInfo, CandidateStatus, LogStore, PredictionRecord, input_digest


def test_records_round_trip_with_their_tensors_and_missing_fields(store: LogStore) -> None:
    with_candidate = make_record(1)
    primary_only = make_record(2, candidate_version=None)
    failed = dataclasses.replace(
        make_record(3),
        status=CandidateStatus.ERROR,
        candidate_ms=None,
        candidate_output=None,
        error="candidate answered 500: boom",
        input_hash="given-hash",
    )
    store.write([with_candidate, primary_only, failed])

    read = store.read("iris")

    assert [r.request_id for r in read] == ["request-1", "request-2", "request-3"]
    for got, written in zip(read, [with_candidate, primary_only, failed], strict=True):
        assert_same_record(got, written)
    assert read[1].candidate_version is None
    assert read[1].candidate_output is None
    assert read[2].input_hash == "given-hash"  # a hash that came with the record is kept


def test_tensor_dtypes_and_shapes_survive_including_nan_and_empty(store: LogStore) -> None:
    record = dataclasses.replace(
        make_record(1),
        primary_output={
            "float32": np.array([[0.1, np.nan], [1e-30, -2.5]], dtype=np.float32),
            "float64": np.array([1 / 3, 1e300]),
            "uint8": np.array([0, 255], dtype=np.uint8),
            "bool": np.array([True, False]),
            "unicode": np.array(["ü", "日本"]),
            "object": np.array(["a", None], dtype=object),
            "empty": np.zeros((0, 3), dtype=np.float32),
            "scalar": np.array(7, dtype=np.int32),
            "strided": np.arange(12, dtype=np.int16).reshape(3, 4)[:, ::2],
        },
    )
    store.write([record])

    [read] = store.read("iris")

    assert_same_record(read, record)


def test_inputs_are_left_out_when_not_stored_but_their_hash_is_kept(store: LogStore) -> None:
    record = make_record(1)
    assert record.input_hash is None
    assert record.inputs is not None
    store.write([record], store_inputs=False)

    [read] = store.read("iris")

    assert read.inputs is None
    assert read.input_hash == input_digest(record.inputs)


def test_reads_filter_by_model_time_range_and_candidate(store: LogStore) -> None:
    records = [make_record(i, at=100.0 + i) for i in range(6)]
    records.append(make_record(6, at=103.5, candidate_version="v3"))
    records.append(make_record(7, at=103.0, model="digits"))
    store.write(records)

    def ids(found: list[PredictionRecord]) -> list[str]:
        return [r.request_id for r in found]

    assert len(store.read("iris")) == 7
    assert ids(store.read("iris", since=102.0, until=104.0)) == [
        "request-2",
        "request-3",
        "request-6",
    ]
    assert ids(store.read("iris", since=105.0)) == ["request-5"]
    assert ids(store.read("iris", until=101.0)) == ["request-0"]
    assert ids(store.read("iris", candidate_version="v3")) == ["request-6"]
    assert ids(store.read("iris", since=103.0, candidate_version="v2")) == [
        "request-3",
        "request-4",
        "request-5",
    ]
    assert ids(store.read("digits")) == ["request-7"]
    assert store.read("unknown") == []


def test_records_come_back_oldest_first_whatever_the_write_order(store: LogStore) -> None:
    store.write([make_record(2, at=20.0), make_record(1, at=10.0)])
    store.write([make_record(3, at=15.0)])

    assert [r.at for r in store.read("iris")] == [10.0, 15.0, 20.0]


def test_candidates_are_listed_per_model_oldest_first(store: LogStore) -> None:
    later = CandidateInfo("iris", "v3", "remote", 200.0, source="http://shadow:8080", host="a:1")
    earlier = CandidateInfo(
        "iris", "v2", "in-process", 100.0, rss_bytes=52_428_800, source="iris@v2"
    )
    other = CandidateInfo("digits", "v9", "in-process", 150.0)
    for info in (later, earlier, other):
        store.record_candidate(info)

    assert store.candidates("iris") == [earlier, later]
    assert store.candidates("digits") == [other]
    assert store.candidates("unknown") == []


def test_a_write_is_all_or_nothing(store: LogStore) -> None:
    # A row the database itself refuses (NOT NULL), after one it accepted.
    refused = dataclasses.replace(make_record(2), model=None)
    with pytest.raises(LogStoreUnavailable, match="could not write records"):
        store.write([make_record(1), refused])

    assert store.read("iris") == []
    store.write([make_record(3)])
    assert [r.request_id for r in store.read("iris")] == ["request-3"]


def test_a_tensor_json_cannot_hold_is_refused_before_anything_is_written(store: LogStore) -> None:
    unstorable = dataclasses.replace(make_record(2), primary_output={"c": np.array([1j])})
    with pytest.raises(TypeError, match="complex"):
        store.write([make_record(1), unstorable])

    assert store.read("iris") == []


def test_threads_share_one_store(store: LogStore) -> None:
    def write(offset: int) -> None:
        for i in range(offset, offset + 20):
            store.write([make_record(i, rows=1)])

    threads = [threading.Thread(target=write, args=(n * 100,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert len({r.request_id for r in store.read("iris")}) == 80
