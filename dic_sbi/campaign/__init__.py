"""Simulation campaigns (application layer): resumable, chunked, on-disk, optionally on a Dask cluster, and
training straight from the store.

    spec = CampaignSpec("stg", "dic", num=1_000_000, chunk_size=2000, seed=0)
    run_campaign(spec, "stg_dic.zarr")                     # resumable; scheduler="tcp://..." for a cluster
    store = CampaignStore.open("stg_dic.zarr")             # complete chunks only, in order
    run = train_npe_from_store("stg_dic.zarr")             # streams chunks; never loads the store whole
"""

from .runner import CampaignReport, CampaignSpec, compute_chunk, run_campaign
from .store import FIELDS, CampaignStore, CorruptStoreError, StoreChunk
from .training import StoreDataset, StoreTrainingRun, train_npe_from_store

__all__ = [
    "CampaignSpec",
    "CampaignReport",
    "run_campaign",
    "compute_chunk",
    "CampaignStore",
    "StoreChunk",
    "CorruptStoreError",
    "FIELDS",
    "StoreDataset",
    "StoreTrainingRun",
    "train_npe_from_store",
]
