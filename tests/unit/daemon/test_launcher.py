"""The launcher's bounded waits on the store (no broker, no store)."""

from __future__ import annotations

import asyncio
import concurrent.futures

import pytest

from daemon.launcher import _bounded


def test_a_request_not_started_in_time_is_withdrawn() -> None:
    async def main() -> None:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        with pytest.raises(asyncio.TimeoutError, match="did not commit the claims"):
            await _bounded(asyncio.wrap_future(future), future, 0.01, "claims")
        assert future.cancelled()

    asyncio.run(main())


def test_a_request_already_in_a_transaction_is_still_awaited() -> None:
    # Claims that commit after the timeout must not be dropped.
    async def main() -> int:
        future: concurrent.futures.Future[int] = concurrent.futures.Future()
        assert future.set_running_or_notify_cancel()  # the writer has taken it
        asyncio.get_running_loop().call_later(0.05, future.set_result, 7)
        return await _bounded(asyncio.wrap_future(future), future, 0.01, "claims")

    assert asyncio.run(main()) == 7
