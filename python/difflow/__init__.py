"""difflow from Python: a pipeline's results and its lock file.

    import difflow
    fit = difflow.results("pipelines/quickstart.diff", "fit")   # one stage instance
    fit.numbers, fit.params, fit.tensors["ema"], fit.files
    difflow.lock("pipelines/quickstart.diff")                   # difflow.lock as a dict

Run the pipeline with the `difflow` command first (`difflow run FILE`); see docs/python.md.
"""

from ._results import DifflowError, StageResult, TensorFile, cache_folder, lock, results

__all__ = ["DifflowError", "StageResult", "TensorFile", "cache_folder", "lock", "results"]
