"""Per-timestep gradient norm figure as a PNG, from a run's ``grad_t.pt`` or its TensorBoard event file.

    python scripts/plot_grad_norms.py outputs/.../grad_t.pt -o docs/grad_t.png            # last recorded step
    python scripts/plot_grad_norms.py outputs/.../grad_t.pt --step 500 -o grad_t_500.png
    python scripts/plot_grad_norms.py outputs/.../grad_t.pt --heatmap -o heatmap.png       # over training
    python scripts/plot_grad_norms.py outputs/.../version_0 -o grad_t.png                 # image in the event file

``grad_t.pt`` (written by :class:`rnnlab.diagnostics.TimestepGradNorms` at the end of fit) holds the
curves, so the figure is redrawn; from an event file the logged image (``--tag``, default
``grad_t/profile``) is extracted as it was logged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rnnlab.diagnostics.plots import heatmap_figure, natural_align, profile_figure


def from_records(path: Path, out: Path, step: int | None, heatmap: bool) -> None:
    records = torch.load(path, weights_only=True)  # plain lists, dicts, floats and tensors
    if not records:
        raise SystemExit(f"{path}: no recorded steps")
    if heatmap:
        names = list(dict.fromkeys(n for r in records for n in r["curves"]))
        history = {n: [(r["step"], r["curves"][n][natural_align(n)]) for r in records if n in r["curves"]] for n in names}
        fig = heatmap_figure(history)
    else:
        steps = [r["step"] for r in records]
        if step is None:
            record = records[-1]
        elif step in steps:
            record = records[steps.index(step)]
        else:
            raise SystemExit(f"--step {step} was not recorded: expected one of {steps}")
        fig = profile_figure(record["curves"], record["step"])
    fig.savefig(out, dpi=110)


def from_events(path: Path, out: Path, step: int | None, tag: str) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(path), size_guidance={"images": 0})
    events.Reload()
    if tag not in events.Tags()["images"]:
        raise SystemExit(f"{path}: no image tag {tag!r}; found {events.Tags()['images']}")
    images = events.Images(tag)
    chosen = images[-1] if step is None else next((e for e in images if e.step == step), None)
    if chosen is None:
        raise SystemExit(f"--step {step} not in {tag!r}: expected one of {[e.step for e in images]}")
    out.write_bytes(chosen.encoded_image_string)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="grad_t.pt, a TensorBoard log dir, or an events file")
    parser.add_argument("-o", "--out", type=Path, default=Path("grad_t.png"))
    parser.add_argument("--step", type=int, default=None, help="training step (default: the last recorded)")
    parser.add_argument("--heatmap", action="store_true", help="(grad_t.pt) norm over (t, training step)")
    parser.add_argument("--tag", default="grad_t/profile", help="(event file) image tag, or grad_t/heatmap")
    args = parser.parse_args(argv)
    if args.source.suffix == ".pt":
        from_records(args.source, args.out, args.step, args.heatmap)
    else:
        from_events(args.source, args.out, args.step, args.tag)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
