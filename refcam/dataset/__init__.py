"""Golden files for a whole dataset: batched, resumable runs in one process or on a Dask cluster.

>>> summary = refcam.dataset.run("net.h5", "photos/", "photos.store")            # doctest: +SKIP
>>> with refcam.dataset.local_client(workers=2) as client:                      # doctest: +SKIP
...     summary = refcam.dataset.run("net.h5", "photos/", "photos.store", client=client)
>>> report = refcam.dataset.compare_store("photos.store", "my_maps/")           # doctest: +SKIP

Where each input comes from: :mod:`refcam.dataset.items`; the store folder and
its crash safety: :mod:`refcam.dataset.store`; computing and distributing:
:mod:`refcam.dataset.run`; scoring another implementation: :mod:`refcam.dataset.compare`.
docs/dataset.md walks through a run.
"""
from .compare import ItemScore, StoreComparison, compare_store
from .items import Item, collect
from .run import ItemOutcome, Summary, local_client, run
from .store import Store, StoreError

__all__ = ["Item", "ItemOutcome", "ItemScore", "Store", "StoreComparison", "StoreError", "Summary", "collect",
           "compare_store", "local_client", "run"]
