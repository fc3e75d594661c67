"""Make the small sample ROOT files the tests read: one per process, by our own simulate code.

Run from the repository root: ``.venv/bin/python tests/data/make_samples.py``. Deterministic: the
same code and seeds give the same events.
"""

from pathlib import Path

from hep_tasks.processes import PROCESSES
from hep_tasks.simulate import SimulationSettings, simulate_file

EVENTS = 60
HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    for i, process in enumerate(PROCESSES):
        # isolated leptons only: every sample event survives ingest, so each class has EVENTS events
        settings = SimulationSettings(isolated_leptons_only=True)
        stats = simulate_file(process, EVENTS, 4242 + i, str(HERE / f"{process}.root"), settings)
        print(process, stats.to_dict())
