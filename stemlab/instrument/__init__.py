"""Instrumentation: wrap any broker so that every call leaves a flat, timed record."""

from stemlab.instrument.broker import InstrumentedBroker, InstrumentedConsumer, instrument
from stemlab.instrument.records import OP_COLUMNS, OpRecord, Recorder, op_stats, ops_to_frame

__all__ = [
    "OP_COLUMNS",
    "InstrumentedBroker",
    "InstrumentedConsumer",
    "OpRecord",
    "Recorder",
    "instrument",
    "op_stats",
    "ops_to_frame",
]
