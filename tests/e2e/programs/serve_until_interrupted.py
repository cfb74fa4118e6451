"""Keep a runtime (dragon.serve) until Ctrl-C; print its run id and "up" once it takes requests."""

import trio

import dragon


async def main() -> None:
    async with trio.open_nursery() as nursery:
        handle = await nursery.start(dragon.serve)
        print(handle.run_id, "up", flush=True)
        await trio.sleep_forever()


trio.run(main)
