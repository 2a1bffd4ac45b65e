"""The metric families keel's /metrics promises; rules, dashboard and server are held to it."""

from __future__ import annotations

# The contract with keel's GET /metrics: every keel metric family, by the name a
# histogram has before its _bucket/_sum/_count suffix.
DECLARED_METRICS = frozenset(
    {
        # Golden signals
        "keel_requests_total",
        "keel_request_duration_seconds",
        "keel_queue_duration_seconds",
        "keel_inference_duration_seconds",
        "keel_batch_size",
        "keel_queue_depth",
        "keel_in_flight_requests",
        "keel_requests_rejected_total",
        # Lifecycle
        "keel_model_loaded",
        "keel_model_ready",
        "keel_model_load_duration_seconds",
        "keel_model_warmup_duration_seconds",
        "keel_warmup_requests_total",
        "keel_golden_check_passed",
        "keel_environment_mismatch",
        "keel_process_resident_memory_bytes",
        "keel_build_info",
        "keel_inline_demotions_total",
        # ML signals
        "keel_prediction_value",
        "keel_prediction_entropy",
        "keel_feature_value",
        "keel_feature_null_total",
        "keel_feature_null_rate",
        "keel_feature_null_rate_spike",
        "keel_validation_failures_total",
        "keel_feature_drift_psi",
        "keel_feature_drift_statistic",
        "keel_feature_drift_status",
        "keel_prediction_drift_psi",
        "keel_prediction_drift_status",
        "keel_prediction_collapse",
        "keel_drift_window_rows",
        "keel_feature_age_seconds",
        "keel_feature_stale_total",
    }
)

# What /metrics adds when a shadow candidate is configured: the mirrors' families, and
# the prediction log's while a log is open. Named as in DECLARED_METRICS.
SHADOW_METRICS = frozenset(
    {
        # Mirrored requests and the candidate
        "keel_shadow_requests_total",
        "keel_shadow_candidate_ready",
        "keel_shadow_queue_depth",
        "keel_shadow_candidate_duration_seconds",
        # Live comparison with the primary
        "keel_shadow_rows_compared_total",
        "keel_shadow_rows_agreeing_total",
        "keel_shadow_agreement",
        "keel_shadow_agreement_rows",
        "keel_shadow_mean_abs_difference",
        "keel_shadow_difference_values",
        # Prediction log
        "keel_prediction_log_written_total",
        "keel_prediction_log_dropped_total",
        "keel_prediction_log_pending",
        "keel_prediction_log_pending_limit",
        "keel_prediction_log_up",
    }
)

# The standard process series (prometheus_client's process collector) beside keel's own:
# what every Prometheus user's process dashboards expect of a Linux server.
PROCESS_METRICS = frozenset(
    {
        "process_start_time_seconds",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_max_fds",
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
    }
)

# What /metrics adds when the server runs several workers (keel serve --workers N).
WORKER_METRICS = frozenset(
    {
        "keel_workers",
        "keel_workers_reporting",
        "keel_workers_ready",
        "keel_worker_restarts_total",
    }
)

# What /metrics adds while traces are sent (an OTLP endpoint is set): the span queue's counts.
TRACE_METRICS = frozenset(
    {
        "keel_trace_spans_exported_total",
        "keel_trace_spans_dropped_total",
    }
)
