"""tests/ci_strict.py: under CI=true every way of not running a test fails the run."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

SAMPLE = """
import pytest

def test_runs():
    pass

def test_skips():
    pytest.skip("no such tool")

@pytest.mark.skipif(True, reason="not here")
def test_skipif():
    pass

@pytest.fixture
def server():
    pytest.skip("the server would not start")

def test_fixture_skips(server):
    pass

@pytest.mark.xfail(reason="known")
def test_xfails():
    assert False

@pytest.mark.xfail(reason="known")
def test_xpasses():
    pass
"""
MODULE_SKIP = "import pytest\npytest.importorskip('car_dream_no_such_extra')\n"


@pytest.fixture
def sample(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_sample=SAMPLE, test_extra=MODULE_SKIP)
    return pytester


def test_without_ci_skips_and_xfails_stay_what_they_are(
    sample: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CI", raising=False)
    result = sample.runpytest("-p", "tests.ci_strict")
    result.assert_outcomes(passed=1, skipped=4, xfailed=1, xpassed=1)


def test_under_ci_a_test_that_does_not_run_fails(
    sample: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    result = sample.runpytest("-p", "tests.ci_strict", "--continue-on-collection-errors")
    # A skip in the body, an xfail and an xpass fail; a skip at set-up (skipif, a fixture)
    # is an error, and so is a module that skips at import; only the test that ran passes.
    result.assert_outcomes(passed=1, failed=3, errors=3)
    result.stdout.fnmatch_lines(["*CI=true: a test that does not run cannot pass*"])
    assert result.ret != 0
