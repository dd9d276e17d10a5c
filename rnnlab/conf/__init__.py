"""rnnlab's Hydra configs (YAML files beside this module) and the typed schema they extend."""
from rnnlab.conf.schema import register

register()
