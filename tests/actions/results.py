"""Assertions on a tool's :class:`~lagent.schema.ActionReturn`, shared by the sandbox tests."""

from __future__ import annotations

from lagent.schema import ActionReturn, ActionStatusCode


def ok(result: ActionReturn) -> str:
    """Assert the call succeeded; return its result text."""
    assert result.state == ActionStatusCode.SUCCESS, result.errmsg
    return result.format_result()


def failed(result: ActionReturn) -> str:
    """Assert the call failed inside the tool (API_ERROR); return its error message."""
    assert result.state == ActionStatusCode.API_ERROR, result.result
    return result.errmsg
