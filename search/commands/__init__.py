"""The ``frontier`` commands, apart from the argument parser (:mod:`search.cli`).

Each command is a function of plain, typed arguments that prints what it did and returns the
exit code; a bad study file, study name or budget raises
:class:`~search.spec.StudyFileError` (or :class:`~evaluators.budgets.BudgetError`), which the
command line turns into one line on stderr and exit code :data:`EXIT_USAGE`. For example::

    from evaluators import Budget
    from search.commands import select_command

    code = select_command("studies/digits_cnn.toml", budget=Budget(max_size_bytes=20_000))
"""

from __future__ import annotations

from search.commands._common import EXIT_INTERRUPTED, EXIT_NOTHING_SELECTED, EXIT_USAGE
from search.commands.export import export_command
from search.commands.report import report_command
from search.commands.run import run_command
from search.commands.select import select_command
from search.commands.sensitivity import sensitivity_command
from search.commands.status import status_command

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_NOTHING_SELECTED",
    "EXIT_USAGE",
    "export_command",
    "report_command",
    "run_command",
    "select_command",
    "sensitivity_command",
    "status_command",
]
