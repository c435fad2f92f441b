"""Where a study's cells run: in this process, in a pool of local worker processes, or as Ray
tasks (:func:`execute`); each cell through ``moon.run`` or by executing the ``ood_eval`` template
with papermill (kept beside its ``result.json``). A cell runs under its folder's lock, a failure is
recorded in its result file and never raised, and workers end with the study that started them."""

from __future__ import annotations

from pathlib import Path

from moon.config import RunConfig
from moon.errors import FolderLocked

ENGINES = ("local", "ray")
VIA = ("notebook", "run")
TEMPLATE = Path(__file__).resolve().parents[2] / "notebooks" / "ood_eval.ipynb"
NOTEBOOK = "ood_eval.ipynb"


def check_engine(engine: str, via: str, workers: int) -> None:
    """Refuse an unknown engine or way to run a cell, or fewer than one worker (before anything
    runs)."""
    if engine not in ENGINES or via not in VIA:
        raise ValueError(f"engine={engine!r}, via={via!r}: choose engine from {ENGINES}, via from {VIA}")
    if workers < 1:
        raise ValueError(f"workers={workers}: use at least 1 worker process")


def execute(jobs: list, workers: int, via: str, engine: str, bar) -> list[tuple[str, str | None]]:
    """``(status, error)`` of every job ``(config, folder)``, in order, on ``engine`` (local:
    ``workers`` processes, each with ``cores // workers`` torch threads; ray: a task per job),
    each run ``via`` moon.run or the notebook; ``bar`` moves as each one finishes."""
    return (_execute_ray if engine == "ray" else _execute_local)(jobs, workers, via, bar)


def _run_cell(job: tuple[RunConfig, str], threads: int | None = None,
              via: str = "run") -> tuple[str, str | None]:
    """One cell in this process (or, for notebooks, in a kernel it starts), under the cell
    folder's lock; failures are recorded, not raised. A cell locked by another process is
    ``busy``."""
    import os

    import torch

    from moon.errors import MoonError
    from moon.locks import TOKEN_ENV, FolderLock
    from moon.rundir import corrupt_reason, set_aside
    from moon.runner import run

    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)   # the notebook kernel inherits it
    cfg, out = job
    lock = FolderLock(out, shared_token="")
    try:
        lock.acquire()
    except FolderLocked as err:
        return "busy", str(err)
    except MoonError as err:
        return "failed", str(err)
    previous = os.environ.get(TOKEN_ENV)
    os.environ[TOKEN_ENV] = lock.token        # the run (or its kernel) works under this lock
    try:
        reason = corrupt_reason(out)
        if reason:                            # kept beside the rerun, never over it
            set_aside(out, reason)
        if via == "notebook":
            return _run_notebook(cfg, Path(out))
        result = run(cfg, out, raise_on_failure=False, progress=False)
        return result.status, result.error
    except MoonError as err:
        return "failed", str(err)
    finally:
        if previous is None:
            os.environ.pop(TOKEN_ENV, None)
        else:
            os.environ[TOKEN_ENV] = previous
        lock.release()


def _run_notebook(cfg: RunConfig, out: Path) -> tuple[str, str | None]:
    """Execute the ``ood_eval`` template for ``cfg`` into ``out``: written under a temporary name
    and renamed when complete, so a killed cell never leaves a finished-looking notebook."""
    import os

    import papermill as pm

    from moon.results import FAILED_FILE, RESULT_FILE, load_result
    from moon.locks import check_lock

    final = out / NOTEBOOK
    if final.exists() and _finished(out, cfg):
        return "complete", None
    out.mkdir(parents=True, exist_ok=True)
    partial = out / ".ood_eval.partial.ipynb"
    params = {**cfg.to_dict(), "preset": None, "out_dir": str(out)}
    try:
        pm.execute_notebook(TEMPLATE, partial, parameters=params, progress_bar=False,
                            kernel_name="python3", cwd=str(TEMPLATE.parent.parent))
    except pm.PapermillExecutionError as err:
        check_lock(out)
        os.replace(partial, out / "ood_eval.failed.ipynb")
        return "failed", f"{err.ename}: {err.evalue}"
    check_lock(out)                     # the cell is still this worker's before its notebook lands
    os.replace(partial, final)
    failed = out / FAILED_FILE
    result = load_result(failed if failed.exists() and not (out / RESULT_FILE).exists() else out)
    return result.status, result.error


def _finished(out: Path, cfg: RunConfig) -> bool:
    from moon.runner import finished_result

    return finished_result(out, cfg) is not None


def _execute_local(jobs: list, workers: int, via: str, bar) -> list[tuple[str, str | None]]:
    """Results of ``_run_cell`` for every job, in order; sequential or in a process pool."""
    if workers <= 1:
        out = []
        for job in jobs:
            out.append(_run_cell(job, via=via))
            bar.update(1)
        return out
    import multiprocessing as mp
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, (os.cpu_count() or 1) // workers)
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_exit_with_parent, initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(_run_cell, job, threads, via) for job in jobs]
        for future in futures:   # in submission order; the bar moves as each one finishes
            future.add_done_callback(lambda _: bar.update(1))
        return [future.result() for future in futures]


def _exit_with_parent(parent: int, poll_seconds: float = 0.5) -> None:
    """Worker initializer: a daemon thread that ends this worker, and the notebook kernels it
    started, once the study process ``parent`` is gone. A study killed with SIGKILL gets no chance
    to stop its pool, and without this its workers would finish (or hang in) their cells as
    orphans, still writing into the study's folder while a restarted study runs the same cells."""
    import os
    import threading
    import time

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_seconds)
        try:
            import psutil

            for child in psutil.Process().children(recursive=True):
                child.kill()
        except Exception:                         # psutil missing or a child already gone
            pass
        os._exit(1)

    threading.Thread(target=watch, name="moon-parent-watch", daemon=True).start()


def _execute_ray(jobs: list, workers: int, via: str, bar) -> list[tuple[str, str | None]]:
    """Every job as a Ray task (``ray.init()`` joins ``RAY_ADDRESS`` when set, else starts a local
    instance); one GPU per task where the cluster has GPUs, else one CPU. ``workers`` is ignored:
    Ray schedules by resources."""
    import ray

    if not ray.is_initialized():
        ray.init(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    task = ray.remote(num_cpus=1, num_gpus=gpus)(_run_cell)
    pending = {task.remote(job, None if gpus else 1, via): i for i, job in enumerate(jobs)}
    out: list = [None] * len(jobs)
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        out[pending.pop(done[0])] = ray.get(done[0])
        bar.update(1)
    return out
