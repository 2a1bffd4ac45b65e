"""The issue's targets, checked against one run's results: measured value and PASS or FAIL.

Each target says how it is read here; nothing is adjusted after the fact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from measure import ratio_of_rounds
from models import SMALL, WIDE
from shadow_isolation import HANGING, SLOW

MIB = 2**20
# What "within 2x" and the other thresholds of the issue become as numbers.
SATURATION_RATIO = 3.0
BATCHING_RATIO = 3.0
LONE_P50_MARGIN_US = 1000.0
HALF_SATURATION_P99_US = 10_000.0
FIRST_REQUEST_RATIO = 2.0
# Issue 4: monitoring may cost at most this share of throughput at saturation.
MONITORING_OVERHEAD = 0.05
# Issue 5: the primary's p99 at a fixed rate with a bad candidate, against no shadow.
SHADOW_P99_MARGIN = 0.10
# Memory: what the large model may add beyond its file size (allocator pages, ORT's
# arena and its per-session structures), and how much load may add over idle before it
# looks like a copy of the model.
MODEL_SIZE_SLACK = 1.25


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    passed: bool


def evaluate(results: dict[str, Any]) -> list[dict[str, Any]]:
    http = results["small_model_http"]
    naive = http["naive records"]["saturation"]
    verdicts = []
    for protocol in ("records", "v2-json", "v2-binary"):
        keel = http[f"keel {protocol}"]["saturation"]
        ratio = ratio_of_rounds(keel, naive)
        verdicts.append(
            Verdict(
                f"saturation, {SMALL}, keel {protocol} >= {SATURATION_RATIO:g}x naive records",
                f"{ratio}x ({keel['throughput']:,.0f} vs {naive['throughput']:,.0f} req/s)",
                ratio is not None and ratio >= SATURATION_RATIO,
            )
        )
    monitored = http["keel records"]["saturation"]
    unmonitored = http["keel-nodrift records"]["saturation"]
    kept = ratio_of_rounds(monitored, unmonitored)
    verdicts.append(
        Verdict(
            f"monitoring overhead at saturation, {SMALL}, keel records: drift windows on "
            f">= {1 - MONITORING_OVERHEAD:g}x off",
            f"{kept}x ({monitored['throughput']:,.0f} vs {unmonitored['throughput']:,.0f} req/s)",
            kept is not None and kept >= 1 - MONITORING_OVERHEAD,
        )
    )
    batching = results["wide_model_batching"]
    verdicts.append(
        Verdict(
            f"{WIDE}, 64 single-row clients: batching on >= {BATCHING_RATIO:g}x off",
            f"{batching['ratio']}x ({batching['on']['throughput']:,.0f} vs "
            f"{batching['off']['throughput']:,.0f} req/s)",
            batching["ratio"] is not None and batching["ratio"] >= BATCHING_RATIO,
        )
    )
    naive_p50 = http["naive records"]["lone"]["latency_us"]["p50"]
    for protocol in ("records", "v2-json", "v2-binary"):
        p50 = http[f"keel {protocol}"]["lone"]["latency_us"]["p50"]
        verdicts.append(
            Verdict(
                f"lone request p50, keel {protocol} within {LONE_P50_MARGIN_US / 1000:g} ms "
                "of naive records",
                f"{p50:,.0f} µs vs {naive_p50:,.0f} µs ({p50 - naive_p50:+,.0f} µs)",
                p50 - naive_p50 <= LONE_P50_MARGIN_US,
            )
        )
    for protocol in ("records", "v2-json", "v2-binary"):
        entry = http[f"keel {protocol}"]
        p99 = entry["open"]["latency_us"]["p99"]
        verdicts.append(
            Verdict(
                f"p99 at half saturation (open loop), keel {protocol} < "
                f"{HALF_SATURATION_P99_US / 1000:g} ms",
                f"{p99 / 1000:.2f} ms at {entry['open_rate']:,.0f} req/s",
                p99 < HALF_SATURATION_P99_US and entry["open"]["unanswered"] == 0,
            )
        )
    verdicts.extend(_memory(results))
    verdicts.extend(_shadow(results))
    startup = results["startup"]
    for path, row in startup["first_vs_hundredth"].items():
        verdicts.append(
            Verdict(
                f"first request after ready within {FIRST_REQUEST_RATIO:g}x the 100th ({path})",
                f"{row['ratio']}x ({row['first_us']:,.0f} vs {row['hundredth_us']:,.0f} µs)",
                row["ratio"] <= FIRST_REQUEST_RATIO,
            )
        )
    return [asdict(v) for v in verdicts]


def memory_figures(results: dict[str, Any]) -> dict[str, float]:
    """The fixed overhead (keel with only the 1 KB model) and what the large model adds."""
    base = results["small_model_http"]["keel records"]["ready_rss"]
    startup = results["startup"]
    sizes = startup["models"]
    return {
        "fixed_overhead": base - sizes[SMALL],
        "two_models_ready": startup["rss_ready"],
        "models_size": sum(sizes.values()),
        "large_model_size": sizes[WIDE],
        "large_model_added": startup["rss_ready"] - base,
        "load_added": startup["rss_peak_under_load"] - startup["rss_ready"],
    }


def _memory(results: dict[str, Any]) -> list[Verdict]:
    m = memory_figures(results)
    allowed = m["fixed_overhead"] + MODEL_SIZE_SLACK * m["models_size"]
    return [
        Verdict(
            f"RSS with two models <= fixed overhead ({m['fixed_overhead'] / MIB:.0f} MiB, keel "
            f"with the 1 KB model) + {MODEL_SIZE_SLACK:g}x the models' size",
            f"{m['two_models_ready'] / MIB:.1f} MiB vs {allowed / MIB:.1f} MiB allowed "
            f"(the {m['large_model_size'] / MIB:.1f} MiB model added "
            f"{m['large_model_added'] / MIB:.1f} MiB)",
            m["two_models_ready"] <= allowed,
        ),
        Verdict(
            "64 requests in flight on two inference threads add less than one model copy",
            f"+{m['load_added'] / MIB:.1f} MiB at peak vs a "
            f"{m['large_model_size'] / MIB:.1f} MiB model",
            m["load_added"] < m["large_model_size"],
        ),
    ]


def _shadow(results: dict[str, Any]) -> list[Verdict]:
    shadow = results.get("shadow")
    if shadow is None:
        return []
    verdicts = []
    for name in (SLOW, HANGING):
        entry = shadow["configs"][name]
        base = entry["no_shadow_beside_p99_us"]
        # The median of the cycles' paired ratios: one burst of the machine's noise can
        # make a single window's p99 100 ms, and it then sets the pooled p99 by itself.
        ratio = entry["p99_ratio_cycle_median"]
        verdicts.append(
            Verdict(
                f"shadow, {SMALL} at {shadow['rate']:,.0f} req/s: primary p99 with a {name} "
                f"within {SHADOW_P99_MARGIN:.0%} of no shadow",
                f"{ratio}x (median of {shadow['windows']['repeats']} cycles' ratios, 95% "
                f"interval {'–'.join(map(str, entry.get('p99_ratio_cycle_median_95') or []))}; "
                "pooled "
                f"{entry['latency_us']['p99']:,.0f} vs {base:,.0f} µs, "
                f"{entry['p99_ratio_to_no_shadow']}x)",
                ratio is not None
                and ratio <= 1 + SHADOW_P99_MARGIN
                and entry["unanswered"] == 0
                and entry["errors"] == 0,
            )
        )
    return verdicts
