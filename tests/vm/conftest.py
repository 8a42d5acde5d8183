"""Fixtures of the tests that run inside the VM (make vmcheck): the integration tests'
conftest (the `lab` factory, run, wait_for, ...), loaded under its own module name so both
folders can run in one pytest session."""
import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "twill_integration_conftest", Path(__file__).resolve().parents[1] / "integration" / "conftest.py")
_itest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_itest)

ROOT = _itest.ROOT
TWILL = _itest.TWILL
Lab = _itest.Lab
run = _itest.run
netns_list = _itest.netns_list
wait_for = _itest.wait_for
has_tool = _itest.has_tool
lab = _itest.lab
pytest_runtest_makereport = _itest.pytest_runtest_makereport
