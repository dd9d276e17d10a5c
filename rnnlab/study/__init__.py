"""An equal hyperparameter search for every cell, on Optuna: ``python -m rnnlab.study search=adding``.

The study's config is ``conf/study.yaml`` with a search space from ``conf/search/<name>.yaml``: the task
(``experiment``, fixed ``overrides`` with the budget in steps), the ``cells``, the number of ``trials`` per cell, the
``metric`` and ``direction``, and the ``params`` in Hydra's sweep syntax (``tag(log, interval(1e-4, 1e-1))``,
``choice(16, 32)``, ``range(1, 3)``), as Hydra's Optuna sweeper reads them.

* Every cell has its own Optuna study, ``<name>/<cell>``, in one storage (``study.storage``, an SQLite file by
  default): its own sampler history, so no cell's results steer another's search, and the same number of trials.
* Every trial is an ordinary ``rnnlab.train`` run, composed from rnnlab's Hydra config and run in-process by
  :func:`rnnlab.train.train`: its folder ``<study.dir>/<cell>/trial_<n>`` holds its config (tagged ``study_trial``:
  study, cell, trial number), checkpoints, TensorBoard (with its HParams entry) and ``metrics.json``.
* The storage is the study's state. Killed (Ctrl+C, ``kill -9``) and started again, a study goes on where it stopped;
  several processes started on one storage share its trials (Optuna's distributed mode). A trial whose process died
  stops writing its heartbeat; the next worker to look marks it failed and runs its parameters again (Optuna's
  ``RDBStorage(heartbeat_interval=..., heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(...))``).
* ``python -m rnnlab.study report ...``: per cell the distribution of all trials, the best configuration rerun over
  ``report.seeds`` with mean and 95 % interval (:mod:`rnnlab.stats`), and fANOVA importances
  (:class:`optuna.importance.FanovaImportanceEvaluator`), in ``<study.dir>/report``.

:mod:`rnnlab.study.search` runs the study, :mod:`rnnlab.study.report` writes the report; docs/studies.md.
"""
