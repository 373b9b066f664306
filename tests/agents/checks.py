"""Checks shared by the agent tests."""

from __future__ import annotations

from collections.abc import Sequence

from lagent.agents import AgentEvent, FinalAnswer, ModelReply, TextDelta, ToolCallStep, ToolResultStep
from lagent.schema import AgentStatusCode

CALL_STATUSES = {AgentStatusCode.PLUGIN_START, AgentStatusCode.CODING}
RESULT_STATUSES = {AgentStatusCode.PLUGIN_RETURN, AgentStatusCode.CODE_RETURN}
REPLY_STATUSES = {AgentStatusCode.STREAM_ING, AgentStatusCode.PLUGIN_END, AgentStatusCode.CODE_END}
FINAL_STATUSES = {AgentStatusCode.END, AgentStatusCode.SESSION_OUT_OF_LIMIT}


def assert_well_formed(events: Sequence[AgentEvent], max_turn: int) -> None:
    """The event stream of one run obeys the documented protocol."""
    assert events, 'no events'
    assert isinstance(events[-1], FinalAnswer), f'the last event is {events[-1].kind}, not final_answer'
    assert sum(isinstance(event, FinalAnswer) for event in events) == 1
    final = events[-1]
    assert final.status in FINAL_STATUSES
    turns = [event.turn for event in events]
    assert turns == sorted(turns), 'turn numbers go backwards'
    assert turns[0] >= 1 and turns[-1] <= max_turn
    deltas: dict[int, str] = {}
    replies: dict[int, ModelReply] = {}
    open_calls: list[str] = []
    for event in events:
        if isinstance(event, TextDelta):
            assert event.status == AgentStatusCode.STREAM_ING and event.text
            assert event.turn not in replies, 'text arrived after the reply was complete'
            deltas[event.turn] = deltas.get(event.turn, '') + event.text
        elif isinstance(event, ModelReply):
            assert event.status in REPLY_STATUSES
            assert event.turn not in replies, 'two replies in one turn'
            assert event.text == event.response.text
            assert deltas.get(event.turn, '') == event.text, 'the deltas do not add up to the reply'
            replies[event.turn] = event
        elif isinstance(event, ToolCallStep):
            assert event.status in CALL_STATUSES
            assert event.turn in replies, 'a tool call before its reply'
            assert replies[event.turn].status in {AgentStatusCode.PLUGIN_END, AgentStatusCode.CODE_END}
            open_calls.append(event.call.id)
        elif isinstance(event, ToolResultStep):
            assert event.status in RESULT_STATUSES
            assert event.turn in replies
            if event.call_id is not None:
                assert open_calls and open_calls.pop() == event.call_id, 'a result without its call'
            assert isinstance(event.observation, str)
    assert not open_calls, f'calls without results: {open_calls}'
    if final.status == AgentStatusCode.END:
        assert replies[final.turn].status == AgentStatusCode.STREAM_ING
    else:
        assert len(replies) == max_turn
