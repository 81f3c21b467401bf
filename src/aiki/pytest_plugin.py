"""The Aiki pytest plugin (entry point ``pytest11: aiki``): a ready environment for trio
tests.

Installed with the package; pytest loads it on its own. Its fixtures are async (trio),
so the tests that use them run under pytest-trio (``trio_mode = true`` in the pytest
configuration, or ``@pytest.mark.trio`` on the test)::

    @pytest.mark.aiki_workflows(order_processing)
    async def test_order(aiki_env):
        handle = await order_processing_v1.start(aiki_env.client, {...})
        assert (await handle.wait_for_completion(timeout=10))["success"]

Fixtures:

* ``aiki_env``: an :func:`aiki.testing.open_test_environment` (private embedded Redis,
  daemons, one worker) serving ``aiki_workflows``, with ``aiki_env_options``;
* ``aiki_workflows``: the workflows the worker serves: the arguments of the test's
  ``@pytest.mark.aiki_workflows(...)`` marker; override the fixture (e.g. in a
  ``conftest.py``) to give a whole module or project the same ones;
* ``aiki_env_options``: keyword arguments for ``open_test_environment`` (``{}``):
  override it, or use ``@pytest.mark.aiki_env_options(time_skipping=True, ...)``.

Why a plugin and not a snippet to copy: an environment must be stopped even when the
test fails, in the right order (worker, daemons, client, Redis); the fixture does that.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .testing import TestEnvironment, open_test_environment


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "aiki_workflows(*workflows): the workflows (or versions) aiki_env's worker serves",
    )
    config.addinivalue_line(
        "markers", "aiki_env_options(**options): keyword arguments for aiki_env's environment"
    )


@pytest.fixture
def aiki_workflows(request: pytest.FixtureRequest) -> list[Any]:
    """The workflows ``aiki_env`` serves: the test's ``aiki_workflows`` markers' arguments."""
    found: list[Any] = []
    for marker in request.node.iter_markers("aiki_workflows"):
        found.extend(marker.args)
    return found


@pytest.fixture
def aiki_env_options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Keyword arguments for ``open_test_environment``: the ``aiki_env_options`` marker's."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("aiki_env_options"))):
        options.update(marker.kwargs)  # the closest marker wins
    return options


@pytest.fixture
async def aiki_env(
    aiki_workflows: list[Any], aiki_env_options: dict[str, Any]
) -> AsyncIterator[TestEnvironment]:
    """A running Aiki environment (embedded Redis, daemons, a worker), stopped after."""
    async with open_test_environment(*aiki_workflows, **aiki_env_options) as env:
        yield env
