"""The report: what a pass did not measure stays unknown, in JSON and on screen."""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime

import pytest

from car_dream.cli_env import format_report
from car_dream.config import DreamConfig
from car_dream.consolidate import log_report, run_pass
from car_dream.report import ConsolidationReport
from car_dream.store import MemoryStore

from .test_lock import HookEmbedder

T0 = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)


def test_a_skipped_pass_measures_nothing(fake_store: MemoryStore, config: DreamConfig) -> None:
    fake_store.ingest_fact("f", "s", "fact")
    assert run_pass(fake_store, config).status == "completed"
    skipped = run_pass(fake_store, config)
    assert (skipped.status, skipped.reason) == ("skipped", "coalesced")
    assert skipped.total_nodes is None and skipped.embedding_coverage is None
    stored = json.loads(fake_store.client.lindex(fake_store.keys.reports, 0))
    assert stored["total_nodes"] is None and stored["embedding_coverage"] is None


def test_a_cancelled_pass_prints_its_figures_as_unknown(
    fake_store: MemoryStore, config: DreamConfig
) -> None:
    fake_store.ingest_fact("f", "s", "fact")
    event = threading.Event()
    report = run_pass(fake_store, config, embedder=HookEmbedder(event.set), cancel_event=event)
    assert report.status == "cancelled"
    assert report.total_nodes is None and report.embedding_coverage is None
    line = format_report(report)
    assert "nodes=? coverage=?" in line, line
    assert "nodes=0" not in line and "100.0%" not in line


def test_a_failed_report_logs_null_coverage(caplog: pytest.LogCaptureFixture) -> None:
    report = ConsolidationReport(started_at=T0, status="failed", reason="ConnectionError: x")
    with caplog.at_level(logging.INFO, logger="car_dream"):
        log_report(report)
    assert "total_nodes=null" in caplog.text and "embedding_coverage=null" in caplog.text


def test_a_completed_pass_prints_what_it_measured(
    fake_store: MemoryStore, config: DreamConfig
) -> None:
    fake_store.ingest_fact("f", "s", "fact")
    report = run_pass(fake_store, config)
    assert (report.total_nodes, report.embedding_coverage) == (1, 1.0)
    assert "nodes=1 coverage=100.0%" in format_report(report)


def test_old_reports_with_zero_and_one_still_parse() -> None:
    # Stored before these fields became optional: a cancelled pass with the old defaults.
    old = (
        '{"expired_pruned": 0, "superseded_gc": 0, "nodes_embedded": 0, '
        '"trajectory_insights": 0, "model_insights": 0, "total_nodes": 0, '
        '"embedding_coverage": 1.0, "conclusions_invalidated": 0, "skipped_records": 0, '
        '"warnings": [], "namespace": "default", "status": "cancelled", '
        '"reason": "cancelled by an operator", "trailing": false, '
        '"lock_ttl_remaining": null, "started_at": "2026-11-26T08:00:00Z", '
        '"finished_at": "2026-11-26T08:00:01Z", "duration_ms": 3.5}'
    )
    report = ConsolidationReport.model_validate_json(old)
    assert (report.total_nodes, report.embedding_coverage) == (0, 1.0)
    assert "nodes=0 coverage=100.0%" in format_report(report)
