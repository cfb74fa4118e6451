"""Pools with map, imap, imap_unordered, starmap and apply_async (with callbacks and an error); prints
the results."""

import multiprocessing as mp
import os
from typing import Any

import where


def square(x: int) -> int:
    return x * x


def power(x: int, y: int) -> int:
    return x**y


def fail(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad {x}")
    return x


def announce(nodes: Any) -> None:
    nodes.put(where.node())


def init(base: int) -> None:
    os.environ["STYLE_BASE"] = str(base)


def with_base(x: int) -> int:
    return x + int(os.environ["STYLE_BASE"])


if __name__ == "__main__":
    mp.set_start_method("dragon")
    nodes = mp.Queue()
    with mp.Pool(4, initializer=announce, initargs=(nodes,)) as pool:
        print("map", sum(pool.map(square, range(1000))), pool.map(square, range(10)))
        print("map chunks", pool.map(square, range(100), chunksize=7)[-3:])
        print("imap", list(pool.imap(square, range(8), chunksize=3)))
        print("imap_unordered", sorted(pool.imap_unordered(square, range(8))))
        print("starmap", pool.starmap(power, [(2, 3), (3, 2), (10, 0)]))
        got: list[int] = []
        results = [pool.apply_async(square, (i,), callback=got.append) for i in range(10)]
        print("apply_async", [r.get(timeout=60) for r in results], sorted(got))
        errors: list[str] = []
        failing = pool.apply_async(fail, (3,), error_callback=lambda e: errors.append(repr(e)))
        try:
            failing.get(timeout=60)
        except ValueError as exc:
            print("error", repr(exc), errors)
        used = [where.node(), *(nodes.get(timeout=60) for _ in range(4))]  # while the workers live
    with mp.Pool(3, initializer=init, initargs=(100,)) as pool:
        print("initializer", pool.map(with_base, range(5)))
    where.report(used)
