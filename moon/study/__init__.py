"""Studies: many runs of one design, resumable, and their check.

* :mod:`.studyfile`: reading and checking a study file (``studies/<name>.yaml``);
* :mod:`.design`: a study (a base configuration and a grid of overrides) and its cells,
  :func:`load_study`;
* :mod:`.engines`: where a cell runs (this process, local workers, Ray) and how (moon.run or the
  ``ood_eval`` notebook);
* :mod:`.sweep`: :func:`run_study` (every cell not yet complete, resumable) and :func:`collect`
  (the results back). The public names are re-exported here (``from moon.study import run_study``);
* :mod:`.reproduce`: train committed cells again and compare every metric.
"""

from moon.study.design import STUDIES, Cell, Study, cell_name, load_study
from moon.study.engines import ENGINES, NOTEBOOK, TEMPLATE, VIA
from moon.study.sweep import Collected, collect, run_study

__all__ = ["ENGINES", "NOTEBOOK", "STUDIES", "TEMPLATE", "VIA", "Cell", "Collected", "Study",
           "cell_name", "collect", "load_study", "run_study"]
