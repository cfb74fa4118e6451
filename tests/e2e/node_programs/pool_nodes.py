"""A Pool of 4 workers over the nodes (round robin): results, and the nodes its tasks ran on."""

import json
import multiprocessing as mp
import os


def square(x: int) -> tuple[int, str]:
    return x * x, os.environ["DRAGON_INDEX"]


if __name__ == "__main__":
    mp.set_start_method("dragon")
    with mp.Pool(4) as pool:
        results = pool.map(square, range(40), chunksize=1)
    print(json.dumps({"squares": [r for r, _ in results], "nodes": sorted({n for _, n in results})}))
