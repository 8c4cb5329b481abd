"""Start-up of the Celery programs and the CLI: bad settings stop them, misspelt names are named.

Real ``celery -A car_dream worker|beat|flower`` processes: a bad ``CAR_DREAM_*`` value
must end them with one line naming the variable, not leave them running on Celery's
defaults (amqp, no tasks, beat's schedule files in the working directory).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from car_dream.config import unknown_settings

from .celery_env import process_env, start_up_failure

pytestmark = pytest.mark.timeout(120)

BAD_SETTINGS = [
    ("CAR_DREAM_INTERVAL_SECS", "1"),
    ("CAR_DREAM_INTERVAL_SECS", "abc"),
    ("CAR_DREAM_REDIS_URL", "http://x"),
]


@pytest.mark.parametrize(("var", "value"), BAD_SETTINGS)
@pytest.mark.parametrize("role", ["worker", "beat", "flower"])
def test_a_bad_setting_stops_worker_beat_and_flower(
    redis_url: str, tmp_path: Path, role: str, var: str, value: str
) -> None:
    if role == "flower":
        pytest.importorskip("flower")
    url = value if var == "CAR_DREAM_REDIS_URL" else redis_url
    settings = {} if var == "CAR_DREAM_REDIS_URL" else {"interval_secs": value}
    # Before the fix these ran on forever (on amqp://localhost): the deadline fails them.
    text = start_up_failure(role, url, tmp_path, timeout=60, **settings)
    lines = text.strip().splitlines()
    assert lines == [lines[-1]] and lines[-1].startswith("car-dream: invalid settings:"), text
    assert var in lines[-1] and "Traceback" not in text
    assert not list(tmp_path.glob("celerybeat-schedule*"))


def test_exit_status_of_a_bad_setting_is_2(tmp_path: Path) -> None:
    env = process_env(None, tmp_path / "data", interval_secs="abc")
    cmd = [sys.executable, "-m", "celery", "-A", "car_dream", "worker"]
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr


def test_unknown_settings_suggest_the_closest_name() -> None:
    env = {
        "CAR_DREAM_INTERVALSECS": "60",
        "car_dream_namespce": "x",
        "CAR_DREAM_INTERVAL_SECS": "60",
        "car_dream_batch_size": "5",  # read case-insensitively: a setting
        "CAR_DREAM_TEST_REDIS_PORT": "6379",  # the tests' own
        "CAR_DREAM_ZZZ": "1",
        "PATH": "/bin",
    }
    assert unknown_settings(env) == [
        "unknown setting CAR_DREAM_INTERVALSECS ignored; did you mean CAR_DREAM_INTERVAL_SECS?",
        "unknown setting CAR_DREAM_ZZZ ignored",
        "unknown setting car_dream_namespce ignored; did you mean CAR_DREAM_NAMESPACE?",
    ]


WARNING = (
    "car-dream: warning: unknown setting CAR_DREAM_INTERVALSECS ignored; "
    "did you mean CAR_DREAM_INTERVAL_SECS?"
)


@pytest.mark.parametrize("role", ["worker", "beat"])
def test_worker_and_beat_name_a_misspelt_variable_once(tmp_path: Path, role: str) -> None:
    # An invalid interval as well, so the program stops right after the warning.
    text = start_up_failure(
        role, "redis://127.0.0.1:1/0", tmp_path, intervalsecs="60", interval_secs="abc"
    )
    assert text.count(WARNING) == 1, text


def test_the_cli_names_a_misspelt_variable_once(redis_url: str, tmp_path: Path) -> None:
    env = process_env(redis_url, tmp_path / "data", intervalsecs="60")
    cmd = [sys.executable, "-c", "from car_dream.cli import main; main()", "reports"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [WARNING]
