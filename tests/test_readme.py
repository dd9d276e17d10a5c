"""The README's commands are a new user's first contact: every ``python -m rnnlab.<job>`` line in its shell blocks
composes to a valid config (each sweep at its first value), and every file it links to exists."""
import re
import shlex
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module
from hydra.core.override_parser.overrides_parser import OverridesParser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[list[str]]:
    """``python -m rnnlab.X ...`` lines of the README's ```bash blocks, as argument lists (continuations joined)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            args = shlex.split(line, comments=True)
            if args[:2] == ["python", "-m"] and args[2].startswith("rnnlab."):
                commands.append(args[2:])
    return commands


def first_values(overrides: list[str]) -> list[str]:
    """A multirun's overrides with each sweep at its first value: one of the jobs it launches."""
    out = []
    for override in OverridesParser.create().parse_overrides(overrides):
        text = override.input_line
        if override.is_sweep_override():
            text = f"{override.get_key_element()}={next(override.sweep_string_iterator())}"
        out.append(text)
    return out


def test_the_readme_shows_the_main_job_a_sweep_evaluate_and_predict():
    jobs = [c[0] for c in readme_commands()]
    assert {"rnnlab.train", "rnnlab.evaluate", "rnnlab.predict"} <= set(jobs)
    assert ["rnnlab.train", "+experiment=bilstm"] in readme_commands()
    assert any("-m" in c for c in readme_commands())


@pytest.mark.parametrize("command", readme_commands(), ids=" ".join)
def test_every_readme_command_composes(command):
    module, *args = command
    args = [a for a in args if a not in ("-m", "--cfg", "job")]
    with initialize_config_module("rnnlab.conf", version_base="1.3"):
        cfg = compose(module.split(".")[1], overrides=first_values(args), return_hydra_config=True)
    assert cfg.hydra.job.name is not None


def test_every_file_the_readme_links_to_exists():
    links = [link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", README) if "://" not in link]
    assert links and [link for link in links if not (ROOT / link).exists()] == []
