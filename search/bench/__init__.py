"""Benchmarks that print what they measure and update ``BENCHMARKS.md``.

Usage::

    python -m search.bench study [STUDY.toml] [--repeats 3]
    python -m search.bench predictor [STUDY.toml ...] [--candidates 40]
    python -m search.bench report [STUDY.toml]
    python -m search.bench minilm [STUDY.toml]
    python -m search.bench compression [--out FOLDER]
    python -m search.bench samplers [STUDY.toml] [--trials 60] [--seeds 5]
    python -m search.bench early-stopping [STUDY.toml] [--trials 120] [--seeds 5]
    python -m search.bench ray [STUDY.toml] [--trials 40] [--workers 1 2]
    python -m search.bench teachers [STUDY.toml ...] [--seeds 3]

Each benchmark runs fresh studies in a temporary folder (so caches do not flatter it),
prints its figures and rewrites its own section of ``BENCHMARKS.md`` (between
``<!-- bench:NAME -->`` markers), recording the command, the machine and the date.
``--output PATH`` writes the section to another file, ``--no-write`` prints it only.

``--smoke-test`` runs a benchmark's real code path in seconds on a tiny budget (a few
trials, one seed, the fewest timed passes, one epoch of distillation), writes its section to
a temporary file (never to the repository's ``BENCHMARKS.md``) and checks that the section
holds the expected table rows. One module per benchmark; :mod:`search.bench.registry` lists
them.
"""
