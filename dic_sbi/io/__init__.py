"""Reading recordings (and writing NIX files): any Neo format, the Spike2Pop CSV and plain text spike times, as :class:`neo.SpikeTrain`."""

from __future__ import annotations

from .nix import SpikeGroup, read_spike_groups, write_nix_block, write_spike_groups
from .outputs import OutputError, check_output, reserve_output, safe_output
from .recordings import FORMATS, Recording, TrainOrigin, read_recording, read_voltage

__all__ = ["read_recording", "read_voltage", "Recording", "TrainOrigin", "FORMATS", "write_nix_block", "safe_output", "reserve_output",
           "check_output", "OutputError", "SpikeGroup", "write_spike_groups", "read_spike_groups"]
