"""The data-scaling sweep's own logic: its grid, its training schedules and its records.

    cells = plan_cells(grid, strategies=["p", "random"], subset_seeds=[0, 1], sizes=subset_sizes(summary),
                       config=ScheduleConfig(policy="iterations", epochs=600, batch=256))
    record_cell(model_dir, evaluation_dir, "s3://detpipe/sweeps/yolo12", cells[0])

Modules: :mod:`~detpipe.sweep.schedule` (fixed and iteration-matched epochs),
:mod:`~detpipe.sweep.plan` (the cells a sweep trains), :mod:`~detpipe.sweep.record` (filing a
trained cell where the report reads it). The Kubeflow pipeline ``small_data_sweep`` calls
them through its plan and record steps.
"""

from detpipe.sweep.plan import plan_cells, subset_sizes
from detpipe.sweep.record import cell_name, record_cell
from detpipe.sweep.schedule import POLICIES, ScheduleConfig, schedule

__all__ = ["POLICIES", "ScheduleConfig", "cell_name", "plan_cells", "record_cell", "schedule", "subset_sizes"]
