"""Where `bnnc explore` runs its synthesis jobs: a local process pool, or a Dask distributed
cluster (`--cluster ADDRESS`). Both are a `concurrent.futures.Executor`, so the sweep has one code
path; a job takes everything it needs as arguments (the RTL as text), so a worker on another
machine needs bnnc and Yosys installed, not this machine's files.
"""
from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

from .diagnostics import BnncError, quote
from .processes import stop_tools_on_signals


@contextmanager
def executor(jobs: int, cluster: str | None = None, timeout: float = 10) -> Iterator[tuple[Executor, str]]:
    """(executor, what it is, for the report). `cluster`: a Dask scheduler address
    (tcp://host:8786); connecting gives up after `timeout` seconds."""
    if cluster is None:
        if jobs < 1:
            raise BnncError(f"--jobs: {jobs} is not a positive number of processes")
        pool = ProcessPoolExecutor(max_workers=jobs, initializer=stop_tools_on_signals)
        try:
            yield pool, f"{jobs} local process{'es' if jobs > 1 else ''}"
        except BaseException:
            # Ctrl-C reaches the workers (bnnc's process group), a `kill` of bnnc does not: pass it on,
            # so that each stops its Yosys, instead of waiting here for their jobs to end
            workers = getattr(pool, "_processes", None) or {}  # private: the executor has no public way
            for worker in list(workers.values()):
                worker.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        return
    try:
        from distributed import Client
        from distributed.comm.addressing import get_address_host_port
    except ImportError:
        raise BnncError("--cluster needs Dask's distributed scheduler client: pip install 'bnnc[dask]'") from None
    try:  # parsed first: a Client built on a bad address fails, then hangs 20 s closing itself
        get_address_host_port(cluster)
    except ValueError as exc:
        raise BnncError(f"--cluster {quote(cluster)}: not a Dask scheduler address like tcp://host:8786 "
                        f"({str(exc).splitlines()[0][:120]})") from None
    try:
        client = Client(cluster, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError) as exc:  # refused, unreachable, no scheduler answering in time
        raise BnncError(f"--cluster {quote(cluster)}: no Dask scheduler answered within {timeout:g} s "
                        f"({type(exc).__name__})") from None
    try:
        workers = len(client.scheduler_info().get("workers", {}))
        if workers == 0:
            raise BnncError(f"--cluster {quote(cluster)}: the scheduler has no workers")
        yield client.get_executor(), f"the Dask cluster at {cluster} ({workers} worker{'s' if workers > 1 else ''})"
    finally:
        client.close()
