"""Names of the study user attributes that several parts of frontier read or write.

One place for each name, imported by the writer (:mod:`search.warm_starts`) and the readers
(the report, the benchmarks); this module imports nothing, so every layer of ``search`` may
use it.
"""

#: Study attribute: the sensitivity tables, ``{model name: SensitivityTable.to_dict()}``.
SENSITIVITY_ATTR = "sensitivity"
