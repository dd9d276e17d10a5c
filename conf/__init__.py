"""rnnlab's Hydra configs: the YAML files beside this module, installed as the package ``rnnlab.conf``.

Importing it registers the typed schemas the files start from (:mod:`rnnlab.schema`).
"""
from rnnlab.schema import register

register()
