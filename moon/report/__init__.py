"""The reporting layer: result files -> tidy frame -> statistics -> tables | figures -> headline ->
claims -> conclusions.

============================  ==========================================================  =================
module                        its one job                                                 imports (moon.report)
============================  ==========================================================  =================
:mod:`~moon.report.frame`     result files -> one frame; the vocabulary (names, units)    -
:mod:`~moon.report.stats`     comparisons and statistics (intervals: moon.statistics)     frame
:mod:`~moon.report.regime`    is this the paper's regime? the regime contrast             frame, stats
:mod:`~moon.report.regime_map` the regime map: premise and MOON per n, MOON's parts     frame, stats
:mod:`~moon.report.tables`    page tables, formatted to the precision they carry          frame, stats
:mod:`~moon.report.plotting`  what every figure shares: palette, saving, axes             frame
:mod:`~moon.report.figures`   comparison figures                                          frame, stats, plotting
:mod:`~moon.report.regime_figures` the regime map and its per-n curves                frame, plotting, regime_map
:mod:`~moon.report.run_figures` figures of one run and of the benchmark images           frame, plotting
:mod:`~moon.report.benchmark` the benchmark page's files                                  plotting, run_figures
:mod:`~moon.report.headline`  MOON - baseline per setting, the verdict bullets              frame, stats, tables
:mod:`~moon.report.claims`    paper vs. this study (verdict per claim), limitations        frame, stats, tables, headline
:mod:`~moon.report.conclusions` each chapter's closing paragraph                     frame, stats, tables, headline, claims
============================  ==========================================================  =================

Each module imports only those before it in its column: no cycles, no private names across
modules (a test checks both). Chapters call one function per table or figure.
"""
