"""Where a run is in its rule: a cursor over the (nested) action lists.

A cursor is `[i]` at the top level, `[i, b, j]` inside branch `b` of the `choose` at `i`
(the options in order, then the default), and so on: it is stored with the run, so a
run resumes exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Sequence

from .model import Action, ChooseAction


def branch(choose: ChooseAction, index: int) -> tuple[Action, ...]:
    """Branch `index` of a choose: its options, then `default`."""
    if index < len(choose.options):
        return choose.options[index].actions
    return choose.default


def _sequence(actions: Sequence[Action], cursor: Sequence[int]) -> Sequence[Action] | None:
    """The action list the cursor's last position indexes."""
    seq: Sequence[Action] = actions
    for depth in range(0, len(cursor) - 1, 2):
        if not 0 <= cursor[depth] < len(seq):
            return None
        choose = seq[cursor[depth]]
        if not isinstance(choose, ChooseAction):
            return None
        seq = branch(choose, cursor[depth + 1])
    return seq


def step_at(actions: Sequence[Action], cursor: Sequence[int]) -> Action | None:
    """The action the cursor points at; None when the run is done."""
    seq = _sequence(actions, cursor)
    if seq is None or not cursor or not 0 <= cursor[-1] < len(seq):
        return None
    return seq[cursor[-1]]


def advance(actions: Sequence[Action], cursor: Sequence[int]) -> list[int]:
    """The cursor after the current step, leaving finished branches."""
    moved = [*cursor[:-1], cursor[-1] + 1]
    while len(moved) > 1:
        seq = _sequence(actions, moved)
        if seq is not None and moved[-1] < len(seq):
            break
        moved = [*moved[:-3], moved[-3] + 1]
    return moved


def step_name(actions: Sequence[Action], cursor: Sequence[int]) -> str:
    """`actions[2].choose[0][1]`: where the step is, for traces and idempotency keys."""
    name = f"actions[{cursor[0]}]"
    for depth in range(1, len(cursor) - 1, 2):
        name += f".choose[{cursor[depth]}][{cursor[depth + 1]}]"
    return name
