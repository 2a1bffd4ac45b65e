"""The prediction log: what the primary and the shadow candidate answered, request by request."""

from keel.logstore.records import CandidateInfo, CandidateStatus, PredictionRecord, input_digest
from keel.logstore.store import LogStore

__all__ = ["CandidateInfo", "CandidateStatus", "LogStore", "PredictionRecord", "input_digest"]
