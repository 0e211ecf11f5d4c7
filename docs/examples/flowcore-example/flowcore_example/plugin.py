"""The hooks flowcore calls; the entry point in pyproject.toml names this module."""

from __future__ import annotations

import os
from fractions import Fraction

import flowcore
from flowcore_example import FallbackHandler, SlowTaskTracer, open_named_memory


@flowcore.hookimpl
def flowcore_register_storage(register):
    register("example", open_named_memory)


@flowcore.hookimpl
def flowcore_register_tracers(register):
    # Only when asked for: a tracer is called on every task of every runner.
    threshold_ms = os.environ.get("FLOWCORE_EXAMPLE_SLOW_MS")
    if threshold_ms:
        register(SlowTaskTracer(float(threshold_ms)))


@flowcore.hookimpl
def flowcore_register_error_handlers(register):
    register(FallbackHandler())


@flowcore.hookimpl
def flowcore_register_codec_types(register):
    register(
        Fraction,
        lambda f: [f.numerator, f.denominator],
        lambda pair: Fraction(*pair),
        name="fractions.Fraction",
    )
