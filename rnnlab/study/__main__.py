"""``python -m rnnlab.study [run|report] [KEY=VALUE ...]``: run (or resume, or join) a study, or write its report.

The overrides are Hydra's, on ``conf/study.yaml``: ``search=adding``, ``search.trials=10``,
``search.cells=[lstm,gru]``, ``study.storage=postgresql://...``, ``report.seeds=[1,2,3]``. A bad key or value prints
``error: ...`` on one line and exits with status 2. docs/studies.md.
"""
from __future__ import annotations

import logging
import sys

from rnnlab.envdefaults import set_defaults

set_defaults()  # before torch loads, as rnnlab.train

from rnnlab.utils import user_errors  # noqa: E402

COMMANDS = ("run", "report")


@user_errors()
def main(argv: list[str] | None = None) -> None:
    from rnnlab.study.search import run_from_config, study_config

    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv.pop(0) if argv and "=" not in argv[0] else "run"
    if command not in COMMANDS:
        raise ValueError(f"the command must be one of {', '.join(COMMANDS)}: expected e.g. `python -m rnnlab.study "
                         f"report search=adding`, got {command!r}")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    cfg = study_config(argv)
    if command == "run":
        run_from_config(cfg, argv)
    else:
        from rnnlab.study.report import report

        report(cfg)


if __name__ == "__main__":
    main()
