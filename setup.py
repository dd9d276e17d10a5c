"""Packaging is declared in pyproject.toml; this file adds what it cannot say: the Hydra configs live in the
top-level conf/ folder and install as the package rnnlab.conf, so an installed rnnlab finds them from any folder."""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["rnnlab", "rnnlab.*"]) + ["rnnlab.conf"], package_dir={"rnnlab.conf": "conf"})
