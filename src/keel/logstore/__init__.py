"""The prediction log: what the primary and the shadow candidate answered, request by request."""

from keel.logstore.opening import check_log_store_url, open_log_store
from keel.logstore.records import CandidateInfo, CandidateStatus, PredictionRecord, input_digest
from keel.logstore.sqlite_store import SQLiteStore
from keel.logstore.store import LogStore
from keel.logstore.writer import PredictionLog

__all__ = [
    "CandidateInfo",
    "CandidateStatus",
    "LogStore",
    "PredictionLog",
    "PredictionRecord",
    "SQLiteStore",
    "check_log_store_url",
    "input_digest",
    "open_log_store",
]
