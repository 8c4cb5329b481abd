"""Under ``CI=true`` a test that did not run fails the run instead of hiding in a skip.

A skip (a missing tool, a server that would not start, an extra not installed) or an
xfail/xpass would let CI go green without the behaviour having been tried; on a
developer's machine they stay what they are. Loaded by conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Generator

import pytest


def _strict() -> bool:
    return os.environ.get("CI") == "true"


def _fail_if_hidden(report: pytest.CollectReport | pytest.TestReport) -> None:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None:
        why = f"{'xpassed' if report.passed else 'xfailed'} {wasxfail}".strip()
        del report.wasxfail  # type: ignore[union-attr]  # else still counted as xfail/xpass
    elif report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        why = f"skipped: {str(reason).removeprefix('Skipped: ')}"
    else:
        return
    report.outcome = "failed"
    report.longrepr = f"CI=true: a test that does not run cannot pass ({why})"


# tryfirst: the outermost wrapper, so it sees the report after the skipping plugin's.
@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if _strict():
        _fail_if_hidden(report)
    return report


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if _strict():
        _fail_if_hidden(report)
    return report
