"""The ``dic-sbi`` options' help, completed in one place: every option states its default and its unit.

:func:`document_options` walks a built parser and finishes each option's help: a description where the option has
none, the unit of a physical quantity, and the default (argparse's value, or what an unset option means).
"""

from __future__ import annotations

import argparse

__all__ = ["document_options", "UNITS"]

#: Unit of every option carrying a physical quantity (by argparse ``dest``).
UNITS = {
    "g_s": "per gleak",
    "g_u": "per gleak",
    "duration": "ms",
    "transient": "ms",
    "dt": "ms",
    "noise_std": "µA/cm²",
    "threshold": "mV",
    "t_start": "ms",
    "t_stop": "ms",
}

#: Help of options defined without one.
_DESCRIPTIONS = {
    "duration": "simulated time per cell, transient included",
    "transient": "initial simulated time discarded before spikes are kept",
    "dt": "integration time step",
    "noise_std": "σ of the noisy current of the simulations",
    "hidden_features": "width of the flow's hidden layers",
    "num_transforms": "number of flow transforms",
    "torch_threads": "torch threads while training",
    "seed": "random seed",
    "quiet": "no progress bars",
}

#: What an option left unset means, where argparse's default is None and the help does not say it.
_UNSET = {
    "out": "none",
    "nix": "no NIX file",
    "duration": "the model's protocol: STG 6000 ms, DA 12000 ms",
    "transient": "the model's protocol, 3000 ms",
    "dt": "0.1 ms, the simulator's",
    "store": "none: simulate the CSV's cells",
    "prior": "none",
    "num": "none",
    "threads": "all cores",
    "max_chunks": "every pending chunk",
    "segments": "all",
    "channels": "all voltage channels",
    "t_start": "the spikes' span widened by half a mean ISI",
    "t_stop": "the spikes' span widened by half a mean ISI",
    "checkpoint": "none: nothing kept between runs",
    "conductances": "none",
}


def document_options(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Complete the help of every option of ``parser`` and of its subcommands (in place; returns ``parser``)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):  # aliases share one parser
                document_options(sub)
        elif action.option_strings and not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            action.help = _completed(action)
    return parser


def _completed(action: argparse.Action) -> str:
    text = action.help or _DESCRIPTIONS.get(action.dest) or action.dest.replace("_", " ")
    unit = UNITS.get(action.dest)
    if unit is not None and unit not in text:
        text += f", in {unit}"
    if "default" in text.lower() or "required" in text.lower():
        return text
    if action.required:
        return f"{text}; required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return f"{text} (default: off)" if isinstance(action, argparse._StoreTrueAction) else f"{text} (default: on)"
    if isinstance(action, argparse.BooleanOptionalAction):
        return f"{text} (default: {'on' if action.default else 'off'})"
    if action.default is None:
        return f"{text} (default: {_UNSET.get(action.dest, 'none')})"
    shown = f"{action.default:g}" if isinstance(action.default, float) else "%(default)s"
    return f"{text} (default: {shown}{' ' + unit if unit else ''})"
