"""Studies: many runs of one design, resumable, and their check.

* :mod:`.sweep`: a study (a base configuration and a grid of overrides) run cell by cell, locally
  or on Ray; :func:`load_study`, :func:`run_study`, :func:`collect` (re-exported here, so
  ``from moon.study import run_study`` works);
* :mod:`.studyfile`: reading and checking a study file (``studies/<name>.yaml``);
* :mod:`.reproduce`: train committed cells again and compare every metric.
"""

from moon.study.sweep import (ENGINES, NOTEBOOK, STUDIES, TEMPLATE, VIA, Cell, Collected, Study,
                              cell_name, collect, load_study, run_study)

__all__ = ["ENGINES", "NOTEBOOK", "STUDIES", "TEMPLATE", "VIA", "Cell", "Collected", "Study",
           "cell_name", "collect", "load_study", "run_study"]
