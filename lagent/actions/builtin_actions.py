"""The actions lagent 0.2's ``ActionExecutor`` fell back to: an unknown tool
(:class:`InvalidAction`), a reply without a tool call (:class:`NoAction`) and
the end of a run (:class:`FinishAction`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lagent.actions.base_action import BaseAction
from lagent.actions.parser import BaseParser
from lagent.schema import ActionReturn, ActionStatusCode, ActionValidCode

__all__ = ['FinishAction', 'InvalidAction', 'NoAction']


class _ReportsAnError:
    """The tool method of the actions that stand for a call that could not be made
    (a mixin of :class:`InvalidAction` and :class:`NoAction`; they set ``_err_msg``)."""

    tool_methods = ('run',)  # a method of a mixin is not found on its own
    _err_msg: str
    name: str

    def run(self, err_msg: str | None = None) -> ActionReturn:
        """Return the error message.

        Args:
            err_msg: The message to return instead of the default one.
        """
        return ActionReturn(
            args={'text': err_msg},
            type=self.name,
            errmsg=err_msg or self._err_msg,
            state=ActionStatusCode.API_ERROR,
            valid=ActionValidCode.INVALID,
        )


class InvalidAction(_ReportsAnError, BaseAction):
    """Reports a call of a tool that does not exist (disabled: never offered to a model).

    Args:
        err_msg: The message when the call gives none.
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a call's input is read (default: the whole input is ``err_msg``).
    """

    def __init__(
        self,
        err_msg: str = 'The action is invalid, please check the action name.',
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] = BaseParser,
    ):
        super().__init__(description, parser, enable=False)
        self._err_msg = err_msg


class NoAction(_ReportsAnError, BaseAction):
    """Reports a reply that does not follow the agent's format (disabled: never offered to a model).

    Args:
        err_msg: The message when the call gives none.
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a call's input is read (default: the whole input is ``err_msg``).
    """

    def __init__(
        self,
        err_msg: str = 'Please follow the format',
        description: Mapping[str, Any] | None = None,
        parser: type[BaseParser] = BaseParser,
    ):
        super().__init__(description, parser, enable=False)
        self._err_msg = err_msg


class FinishAction(BaseAction):
    """Gives the final answer, ending the run.

    Args:
        description: A lagent 0.2 description to report instead of the derived one.
        parser: How a call's input is read (default: the whole input is ``response``).
    """

    def __init__(self, description: Mapping[str, Any] | None = None, parser: type[BaseParser] = BaseParser):
        super().__init__(description, parser, enable=True)

    def run(self, response: str) -> ActionReturn:
        """Give the final answer.

        Args:
            response: The final answer.
        """
        return ActionReturn(
            args={'text': response},
            type=self.name,
            result=[{'type': 'text', 'content': response}],
            state=ActionStatusCode.SUCCESS,
            valid=ActionValidCode.FINISH,
        )
