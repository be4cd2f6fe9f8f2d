"""The stage catalogue names real callables, and every stage documents its contract."""

from __future__ import annotations

import importlib

import stages


def test_every_catalogue_entry_resolves_and_states_reads_writes_reasons():
    for name, spec in stages.CATALOGUE.items():
        module, attr = spec.split(":")
        obj = getattr(importlib.import_module(module), attr)
        assert callable(obj), name
        if name not in ("ingest", "frames", "shots"):  # helpers, not table stages
            doc = obj.__doc__ or ""
            assert "Reads" in doc and "Writes" in doc and "Reasons" in doc, f"{spec} lacks its contract"
