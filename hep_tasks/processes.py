"""The physics processes the pipeline knows, and their class labels (ARCHITECTURE §3).

>>> LABELS["ttbar"]
1
"""

from __future__ import annotations

#: process name -> class label; 0 = QCD, 1 = tt̄, 2 = W+jets.
LABELS: dict[str, int] = {"qcd": 0, "ttbar": 1, "wjets": 2}

#: class label -> process name.
PROCESS_OF_LABEL: dict[int, str] = {label: name for name, label in LABELS.items()}

PROCESSES: tuple[str, ...] = tuple(LABELS)
