"""Trainings through the queue beyond one process: ``resources: {gpus_per_node, nodes}`` runs under
PyTorch's elastic agent (`launch`), each rank running `rank`; the job's nodes are scheduled as a gang by
`segpipe.jobs.distributed`."""
