"""The `fastmotion` command line: one module per command group (data, train, lift, eval, sample, render,
bench), each a thin layer over the library (`fastmotion.pipelines`, `fastmotion.data`, ...) and the training
runs (`fastmotion.train`). Heavy imports happen inside the commands so that `--help` stays fast."""
from __future__ import annotations

import click

from .bench import bench
from .data import data
from .eval import evaluate
from .lift import lift
from .render import render
from .sample import sample
from .train import train


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="fastmotion")
def main():
    """fastmotion: train 3D human-motion generators from 2D keypoints alone.

    \b
    Check what this machine can run:
      fastmotion backends
    """


@main.command("backends")
def backends_cmd():
    """List the op backends (torch, cpp, triton, cuda) and why any is unavailable."""
    from fastmotion.ops import backends

    for name, status in backends().items():
        click.echo(f"{name:>7}  {'yes' if status.available else 'no ':3}  {status.reason}")


for command in (data, train, lift, evaluate, sample, render, bench):
    main.add_command(command)
