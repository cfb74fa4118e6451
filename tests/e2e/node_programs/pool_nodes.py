"""A Pool of 4 workers over the nodes (round robin): its results, and the node of each worker."""

import json
import multiprocessing as mp

from pool_over_nodes import pool_over_nodes  # node_programs/pool_over_nodes.py

if __name__ == "__main__":
    mp.set_start_method("dragon")
    results, workers = pool_over_nodes(40)
    print(json.dumps({"squares": results, "workers": workers}))
